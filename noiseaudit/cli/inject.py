"""``noiseaudit inject``: corrupt labels on purpose, with exact counts, to test detection."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from noiseaudit import formats
from noiseaudit.cli.console import (JsonSummary, Overwrite, Quiet, echo_json, exits_on_errors, output_name,
                                    results_console, text_output)

if TYPE_CHECKING:
    from noiseaudit.inject import InjectionResult


class Kind(str, Enum):
    symmetric = "symmetric"
    asymmetric = "asymmetric"
    instance = "instance"


def print_noise_matrix(result: InjectionResult, out: Console) -> None:
    m = result.noise_matrix
    table = Table(title=f"Realised noise: {int(m.sum() - m.trace())} of {int(m.sum())} labels flipped "
                        "(rows: original, columns: new)")
    table.add_column("original")
    for c in result.classes:
        table.add_column(str(c), justify="right")
    table.add_column("flipped", justify="right")
    for i, c in enumerate(result.classes):
        cells = [("." if i != j and v == 0 else str(v)) for j, v in enumerate(m[i])]
        table.add_row(str(c), *cells, formats.percent(result.per_class_rate[i]))
    out.print(table)


@exits_on_errors
def inject_command(
    labels: Annotated[Path, typer.Argument(help="Labels CSV, or an ImageFolder directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Noisy labels CSV to write.")],
    rate: Annotated[float, typer.Option(help="Fraction of labels to flip (exactly round(rate*N)).")],
    kind: Annotated[Kind, typer.Option(help="symmetric, asymmetric (pair map) or instance (model-guided).")] =
        Kind.symmetric,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same output.")] = 0,
    pairs: Annotated[Optional[Path], typer.Option(help="JSON class->class map for asymmetric "
                                                       "(default: class k -> class k+1).")] = None,
    images_dir: Annotated[Optional[Path], typer.Option(help="Image root of a CSV's paths: needed by --kind "
                                                            "instance on images (the other kinds read no image).")]
    = None,
    features: Annotated[Optional[Path], typer.Option(help="Feature vectors of the CSV's rows (.npy or Parquet, "
                                                          "as for scan --features); what --kind instance trains "
                                                          "on when there are no images.")] = None,
    path_col: Annotated[Optional[str], typer.Option("--path-col", "--key-col",
                                                    help="Path (or key) column name (default: auto-detect).")] = None,
    label_col: Annotated[Optional[str], typer.Option(help="Label column name (default: auto-detect).")] = None,
    device: Annotated[str, typer.Option(help="Device for --kind instance.")] = "auto",
    overwrite: Overwrite = False,
    json_out: JsonSummary = False,
    quiet: Quiet = False,
) -> None:
    """Flip exactly round(rate*N) labels, never to the same class; keep the truth in original_label/is_noisy."""
    from noiseaudit.inject import inject_file
    from noiseaudit.data.csvfile import csv_style, write_csv
    from noiseaudit.report.io import atomic_write, check_writable

    check_writable(text_output(output, json_out), overwrite,
                   [(labels, "labels CSV"), (pairs, "pairs file"), (features, "features file")],
                   image_folder=images_dir, text=True)
    result = inject_file(labels, rate, kind.value, seed, images_dir=images_dir, pairs_file=pairs,
                         path_col=path_col, label_col=label_col, device=device, features=features)
    style = csv_style(labels)  # the input's delimiter, BOM and line ending
    atomic_write(output, lambda tmp: write_csv(result.table, tmp, style), replace=overwrite)
    if json_out:
        echo_json({"n": len(result.table), "n_noisy": int(result.table["is_noisy"].sum()),
                   "classes": [str(c) for c in result.classes], "noise_matrix": result.noise_matrix.tolist(),
                   "per_class_rate": result.per_class_rate.round(6).tolist(), "output": str(output)})
    else:
        out = results_console(output, quiet)
        if out is not None:
            print_noise_matrix(result, out)
            out.print(f"Wrote {output_name(output)}", highlight=False)
