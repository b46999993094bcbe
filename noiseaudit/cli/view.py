"""``noiseaudit show`` and ``noiseaudit html``: look at a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from noiseaudit import formats
from noiseaudit.cli.console import exits_on_errors, stdout
from noiseaudit.errors import InputError


def match_class(wanted: str, classes: list, report: Path) -> object:
    """The class ``wanted`` names: exactly, else case-insensitively when only one class matches that way.

    Anything else is an InputError that lists the report's classes.
    """
    names = {str(c): c for c in classes}
    if wanted in names:
        return names[wanted]
    folded = [name for name in names if name.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return names[folded[0]]
    listed = ", ".join(repr(n) for n in names)
    if folded:
        raise InputError(f"class {wanted!r} matches {' and '.join(map(repr, folded))} but for case; say which "
                         f"(classes: {listed})", path=report)
    raise InputError(f"no class {wanted!r} in this report; its classes are {listed}", path=report)


@exits_on_errors
def show_command(
    report: Annotated[Path, typer.Argument(help="Parquet report from noiseaudit scan.")],
    top: Annotated[int, typer.Option(help="How many rows.")] = 20,
    class_: Annotated[Optional[str], typer.Option("--class", help="Only samples with this given label "
                                                                  "(case-insensitive if unambiguous).")] = None,
) -> None:
    """The most suspect samples as a table, with the ones the scan flagged marked."""
    from noiseaudit.report.build import scored
    from noiseaudit.report.io import read_report

    frame, meta = read_report(report)
    frame = scored(frame)
    label = None
    if class_ is not None:
        classes = meta.get("classes") or sorted(frame["given_label"].unique(), key=str)
        label = match_class(class_, classes, report)
        frame = frame[frame["given_label"].astype(str) == str(label)]
    n_flagged = int(frame["is_suspect"].sum())
    table = Table(title=f"{len(frame)} samples" + (f" labelled {label}" if label is not None else "") +
                  f", {n_flagged or 'none'} flagged" + ("" if n_flagged else " (lowest learned rates first)"))
    for col in ("rank", "path", "given", "suggested", "learned rate", "loss", "flagged"):
        table.add_column(col, justify="left" if col in ("path", "given", "suggested", "flagged") else "right")
    for row in frame.sort_values("rank").head(top).itertuples(index=False):
        table.add_row(str(row.rank), str(row.path), str(row.given_label),
                      f"{row.suggested_label} ({formats.percent(row.suggested_prob)})",
                      formats.learned_rate(row.learned_lr), formats.loss(row.loss), "yes" if row.is_suspect else "")
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
    from noiseaudit.report.html import render_html
    from noiseaudit.report.io import atomic_write, check_writable, read_report

    check_writable(output, overwrite)
    frame, meta = read_report(report)
    page = render_html(frame, meta, images_dir, top)
    atomic_write(output, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    stdout().print(f"Wrote {output}", highlight=False)
