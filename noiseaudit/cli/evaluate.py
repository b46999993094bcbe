"""``noiseaudit evaluate``: how well a report found the known wrong labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from noiseaudit import formats
from noiseaudit.cli.console import Quiet, echo_json, exits_on_errors, stdout
from noiseaudit.errors import InputError

SIGNAL_METRICS = (("AUROC", "auroc"), ("AP", "average_precision"), ("precision@k", "precision_at_k"),
                  ("recall@k", "recall_at_k"))


def print_evaluation(result: dict[str, Any]) -> None:
    out = stdout()
    apart = [f"{result['n_unknown']} of unknown truth"] if result.get("n_unknown") else []
    apart += [f"{result['n_not_ranked']} not ranked: trusted or skipped"] if result.get("n_not_ranked") else []
    unknown = f" (and {'; '.join(apart)}, left out)" if apart else ""
    out.print(f"{result['n']} samples{unknown}, {result['n_noisy']} known wrong "
              f"({formats.percent(result['true_noise_rate'])}); "
              f"{result['n_flagged']} flagged (estimated noise rate {formats.percent(result['estimated_noise_rate'])})",
              highlight=False)
    out.print(f"Flagged set: precision {formats.score(result['precision'])}, recall {formats.score(result['recall'])}, "
              f"F1 {formats.score(result['f1'])}", highlight=False)
    table = Table(title=f"Rankings by signal (report column; k = {result['k']})")
    table.add_column("signal")
    for col, _ in SIGNAL_METRICS:
        table.add_column(col, justify="right")
    for name, m in result["signals"].items():
        table.add_row(name, *(formats.score(m[key]) for _, key in SIGNAL_METRICS))
    out.print(table)
    per_class = Table(title="Per class (by given label)")
    for col in ("class", "n", "wrong", "flagged", "precision", "recall", "F1"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for row in result["per_class"]:
        per_class.add_row(str(row["class"]), str(row["n"]), str(row["n_noisy"]), str(row["n_flagged"]),
                          *(formats.score(row[key]) for key in ("precision", "recall", "f1")))
    out.print(per_class)


@exits_on_errors
def evaluate_command(
    report: Annotated[Path, typer.Argument(help="Parquet report from noiseaudit scan.")],
    k: Annotated[Optional[int], typer.Option("--k", help="k for precision@k (default: the true noisy count).")] =
        None,
    truth: Annotated[Optional[Path], typer.Option(help="CSV with path and is_noisy/original_label columns.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    quiet: Quiet = False,
) -> None:
    """Precision/recall/F1 of the flagged set and AUROC/AP/precision@k of every signal."""
    from noiseaudit.evaluate import evaluate
    from noiseaudit.report.io import read_report

    frame, _ = read_report(report, scan=True)
    try:
        result = evaluate(frame, k=k, truth_csv=truth)
    except InputError as exc:  # "no truth" and the like are about this report: name it, as every input error does
        if exc.path is not None:
            raise
        raise InputError(str(exc), path=report) from None
    if json_out:
        echo_json(result)
    else:
        print_evaluation(result)
