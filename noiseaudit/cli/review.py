"""``noiseaudit export`` and ``noiseaudit apply``: the human review loop around a report."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from noiseaudit import formats
from noiseaudit.cli.console import (JsonSummary, Overwrite, Quiet, echo_json, exits_on_errors, output_name,
                                    results_console, stderr, text_output)


class Format(str, Enum):
    csv = "csv"
    json = "json"
    labelstudio = "labelstudio"


@exits_on_errors
def export_command(
    report: Annotated[Path, typer.Argument(help="Parquet report from noiseaudit scan.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    top: Annotated[Optional[int], typer.Option(help="The N most suspect samples.")] = None,
    min_suspicion: Annotated[Optional[float], typer.Option(help="Samples with suspicion >= X (a ranking score "
                                                                "in [0, 1], not the flag).")] = None,
    flagged: Annotated[bool, typer.Option("--flagged", help="The flagged samples (the default).")] = False,
    class_: Annotated[Optional[str], typer.Option("--class", help="Only samples with this given label, the choice "
                                                                  "above made within it (case-insensitive if "
                                                                  "unambiguous).")] = None,
    fmt: Annotated[Optional[Format], typer.Option("--format", help="csv, json, or labelstudio tasks (default: json "
                                                                    "for a .json output, else csv).")] = None,
    image_prefix: Annotated[str, typer.Option(help="Prefix for image URLs in Label Studio tasks; the paths after "
                                                   "it are percent-encoded.")] = "",
    overwrite: Overwrite = False,
    json_out: JsonSummary = False,
    quiet: Quiet = False,
) -> None:
    """Write a review sheet of suspects with empty verdict (keep/relabel/drop) and new_label columns."""
    from noiseaudit.report.export import (label_studio_config, review_format, review_table, select_suspects,
                                          write_review)
    from noiseaudit.report.io import check_writable, read_report

    check_writable(text_output(output, json_out), overwrite, [(report, "report")], text=True)
    fmt = Format(review_format(output, None if fmt is None else fmt.value))
    frame, meta = read_report(report, scan=True)
    label = None
    if class_ is not None:
        from noiseaudit.cli.view import named_class

        label = named_class(class_, meta, frame["given_label"], report)
    table = review_table(select_suspects(frame, top=top, min_suspicion=min_suspicion, flagged=flagged,
                                         given_label=label))
    write_review(table, output, fmt.value, image_prefix, overwrite=overwrite)
    if json_out:
        echo_json({"rows_written": len(table), "flagged": int(table["flagged"].sum()), "format": fmt.value,
                   "output": str(output)})
    elif (out := results_console(output, quiet)) is not None:
        out.print(f"Wrote {formats.plural(len(table), 'sample')} to {output_name(output)}", highlight=False)
    if fmt == Format.labelstudio and not quiet:
        classes = meta.get("classes") or sorted(set(frame["given_label"]) | set(frame["suggested_label"]), key=str)
        stderr().print(f"Next: a Label Studio project with this labeling interface; import {output}, review, "
                       "export (JSON, JSON-MIN or CSV), then noiseaudit apply LABELS_CSV EXPORT -o FIXED.csv\n"
                       + label_studio_config(classes), highlight=False, markup=False)
        if "features" in meta:  # a scan of vectors: its keys are no pictures unless they name image files
            stderr().print("Note: this report is of feature vectors; each task's image is its key, which Label Studio "
                           "shows only where the keys are image paths or URLs (with --image-prefix).",
                           highlight=False, markup=False)


@exits_on_errors
def apply_command(
    labels_csv: Annotated[Path, typer.Argument(help="The labels CSV that was scanned, or the ImageFolder "
                                                    "directory (which gives a path,label CSV).")],
    reviewed: Annotated[Path, typer.Argument(help="The reviewed export (CSV or JSON), or Label Studio's "
                                                  "export of the labelstudio tasks.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Corrected labels CSV to write.")],
    path_col: Annotated[Optional[str], typer.Option(help="Path column name (default: auto-detect).")] = None,
    label_col: Annotated[Optional[str], typer.Option(help="Label column name (default: auto-detect).")] = None,
    allow_new_labels: Annotated[bool, typer.Option("--allow-new-labels", help="Accept relabels to classes not yet in the CSV.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Apply a sheet that reviewed other labels than the CSV has "
                                                        "now (an older sheet), which would undo those changes.")]
    = False,
    overwrite: Overwrite = False,
    json_out: JsonSummary = False,
    quiet: Quiet = False,
) -> None:
    """Apply verdicts (relabel to new_label or the suggestion, drop, keep); the input is never edited."""
    from noiseaudit.apply import apply_review
    from noiseaudit.data.csvfile import csv_style, edited_csv, write_csv
    from noiseaudit.report.io import atomic_write, check_writable

    check_writable(text_output(output, json_out), overwrite, [(labels_csv, "labels CSV"), (reviewed, "reviewed file")],
                   text=True)  # never in place
    result = apply_review(labels_csv, reviewed, path_col=path_col, label_col=label_col,
                          allow_new_labels=allow_new_labels, force=force)
    style = csv_style(labels_csv)  # the input's delimiter, BOM and line ending
    if result.edits is not None:  # a CSV file: its unreviewed lines as they were, so that a diff shows the review
        text = edited_csv(labels_csv, result.label_col, result.edits, style)
        atomic_write(output, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""), replace=overwrite)
    else:  # an ImageFolder tree: its path,label table
        atomic_write(output, lambda tmp: write_csv(result.table, tmp, style), replace=overwrite)
    summary = {"relabeled": result.relabeled, "dropped": result.dropped, "kept": result.kept,
               "unreviewed": result.unreviewed, "already_relabeled": result.already,
               "already_dropped": result.already_dropped,
               "rows_written": len(result.table), "output": str(output)}
    if json_out:
        echo_json(summary)
    elif (out := results_console(output, quiet)) is not None:
        already = f" ({result.already} relabels applied before)" if result.already else ""
        gone = f" ({result.already_dropped} dropped before)" if result.already_dropped else ""
        out.print(f"{result.relabeled} relabeled{already}, {result.dropped} dropped{gone}, {result.kept} kept, "
                  f"{result.unreviewed} without a verdict; wrote {len(result.table)} rows to {output_name(output)}",
                  highlight=False)
