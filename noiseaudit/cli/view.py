"""``noiseaudit show`` and ``noiseaudit html``: look at a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from noiseaudit.cli.console import exits_on_errors, stdout
from noiseaudit.report.build import scored
from noiseaudit.report.html import render_html
from noiseaudit.report.io import atomic_write, check_writable, read_report


@exits_on_errors
def show_command(
    report: Annotated[Path, typer.Argument(help="Parquet report from noiseaudit scan.")],
    top: Annotated[int, typer.Option(help="How many rows.")] = 20,
    class_: Annotated[Optional[str], typer.Option("--class", help="Only samples with this given label.")] = None,
) -> None:
    """The most suspect samples as a table."""
    frame, _ = read_report(report)
    frame = scored(frame)
    if class_ is not None:
        frame = frame[frame["given_label"].astype(str) == class_]
    table = Table(title=f"{len(frame)} samples" + (f" labelled {class_}" if class_ else "") +
                  f", {int(frame['is_suspect'].sum())} flagged")
    for col in ("rank", "path", "given", "suggested", "learned rate", "loss", "suspicion", "flagged"):
        table.add_column(col, justify="left" if col in ("path", "given", "suggested") else "right")
    for row in frame.sort_values("rank").head(top).itertuples(index=False):
        table.add_row(str(row.rank), str(row.path), str(row.given_label),
                      f"{row.suggested_label} ({row.suggested_prob:.0%})", f"{row.learned_lr:.3g}",
                      f"{row.loss:.3f}", f"{row.suspicion:.2f}", "yes" if row.is_suspect else "")
    stdout().print(table)


@exits_on_errors
def html_command(
    report: Annotated[Path, typer.Argument(help="Parquet report from noiseaudit scan.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")],
    images_dir: Annotated[Optional[Path], typer.Option(help="Image folder (default: the one scanned).")] = None,
    top: Annotated[int, typer.Option(help="Suspects in the gallery.")] = 48,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """A self-contained HTML page: summary, learned-rate histogram, PR curve, per-class counts, gallery."""
    check_writable(output, overwrite)
    frame, meta = read_report(report)
    page = render_html(frame, meta, images_dir, top)
    atomic_write(output, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    stdout().print(f"Wrote {output}", highlight=False)
