"""``noiseaudit evaluate``: how well a report found the known wrong labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from noiseaudit.cli.console import echo_json, exits_on_errors, stdout
from noiseaudit.evaluate import evaluate
from noiseaudit.report.io import read_report


def print_evaluation(result: dict[str, Any]) -> None:
    out = stdout()
    out.print(f"{result['n']} samples, {result['n_noisy']} known wrong ({result['true_noise_rate']:.1%}); "
              f"{result['n_flagged']} flagged (estimated noise rate {result['estimated_noise_rate']:.1%})",
              highlight=False)
    out.print(f"Flagged set: precision {result['precision']:.3f}, recall {result['recall']:.3f}, "
              f"F1 {result['f1']:.3f}", highlight=False)
    table = Table(title=f"Rankings by signal (k = {result['k']})")
    for col in ("signal", "AUROC", "AP", "precision@k", "recall@k"):
        table.add_column(col, justify="left" if col == "signal" else "right")
    for name, m in result["signals"].items():
        table.add_row(name, *(f"{m[key]:.4f}" for key in ("auroc", "average_precision", "precision_at_k",
                                                          "recall_at_k")))
    out.print(table)
    per_class = Table(title="Per class (by given label)")
    for col in ("class", "n", "wrong", "flagged", "precision", "recall", "F1"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for row in result["per_class"]:
        per_class.add_row(str(row["class"]), str(row["n"]), str(row["n_noisy"]), str(row["n_flagged"]),
                          f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}")
    out.print(per_class)


@exits_on_errors
def evaluate_command(
    report: Annotated[Path, typer.Argument(help="Parquet report from noiseaudit scan.")],
    k: Annotated[Optional[int], typer.Option("--k", help="k for precision@k (default: the true noisy count).")] =
        None,
    truth: Annotated[Optional[Path], typer.Option(help="CSV with path and is_noisy/original_label columns.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Precision/recall/F1 of the flagged set and AUROC/AP/precision@k of every signal."""
    frame, _ = read_report(report)
    result = evaluate(frame, k=k, truth_csv=truth)
    if json_out:
        echo_json(result)
    else:
        print_evaluation(result)
