"""Score a report against known wrong labels: flagged set, every signal's ranking, per class."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from noiseaudit.data.pathmatch import PathIndex
from noiseaudit.errors import (InputError, NoiseAuditWarning, UsageError, check_whole_number, header_line, line_word,
                               option, warn)
from noiseaudit.metrics import precision_recall_f1, ranking_metrics
from noiseaudit.report.build import check_report, scored, signal_scores
from noiseaudit.report.truth import known_truth, yes_no

TRUTH_COLUMNS = ("is_noisy", "original_label")  # a truth CSV replaces both of the report's


def attach_truth(report: pd.DataFrame, truth_csv: str | Path | pd.DataFrame) -> pd.DataFrame:
    """The report with its truth columns replaced by a CSV's, joined on ``path``.

    Parameters
    ----------
    report : DataFrame
        A report; its own ``is_noisy`` and ``original_label`` columns are dropped.
    truth_csv : str, Path or DataFrame
        A CSV (or a DataFrame of the same) with a path column and ``is_noisy`` and/or ``original_label``.

    Returns
    -------
    DataFrame
        The report with the CSV's truth columns; report rows the CSV does not list get no truth
        (unknown), but at least one must match. CSV rows that match no report row are counted in a
        warning and ignored.

    Raises
    ------
    InputError
        No path or truth column, a path listed twice with different values, an ``is_noisy`` that is
        not yes/no, or no report path in the CSV.
    """
    truth, lines, truth_csv = _read_truth(truth_csv)
    cols = [c for c in TRUTH_COLUMNS if c in truth.columns]
    index = PathIndex(truth["path"])  # absolute truth paths match the report's relative ones
    index.learn_root(report["path"].astype(str))
    rows = [index.row(p) for p in report["path"].astype(str)]
    if len(rows) and all(i is None for i in rows):
        raise InputError(f"no report path is in the truth CSV (the report's first is {report['path'].iloc[0]!r})",
                         path=truth_csv)
    _warn_unmatched(truth["path"], lines, rows, truth_csv)
    unknown = pd.DataFrame({c: [pd.NA] for c in cols})  # the row of every report path the CSV lacks
    padded = pd.concat([truth[cols].astype(object), unknown], ignore_index=True)
    matched = padded.iloc[[len(truth) if i is None else i for i in rows]].reset_index(drop=True)
    base = report.drop(columns=[c for c in TRUTH_COLUMNS if c in report.columns]).reset_index(drop=True)
    return pd.concat([base, matched], axis=1)


def _read_truth(table: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, list[int], str]:
    """The truth CSV's (or DataFrame's) ``path`` and truth columns, one row per path, the line (0-based row) of
    each row, and the name errors give the table."""
    from noiseaudit.data.csvfile import read_table
    from noiseaudit.data.source import PATH_COLUMN_NAMES

    table, lines, csv = read_table(table, "truth CSV")
    pcol = next((c for c in table.columns if c.strip().lower() in PATH_COLUMN_NAMES), None)
    cols = [c for c in TRUTH_COLUMNS if c in table.columns]
    if pcol is None or not cols:
        raise InputError(f"truth CSV needs a path column and is_noisy or original_label; its columns are "
                         f"{list(table.columns)} (a column of true labels goes by the name original_label)", path=csv,
                         line=header_line(csv))
    raw = table[[pcol, *cols]].rename(columns={pcol: "path"})
    truth = raw.copy()
    if "is_noisy" in cols:
        truth["is_noisy"] = yes_no(raw["is_noisy"], csv, lines=lines)
    keep = _unique_paths(raw, truth, lines, csv)
    return truth.iloc[keep].reset_index(drop=True), [lines[i] for i in keep], csv


def _unique_paths(raw: pd.DataFrame, truth: pd.DataFrame, lines: list[int], csv: str) -> list[int]:
    """The rows to keep, the first of each path (:func:`~noiseaudit.data.source.unique_rows`: a repeat with the
    same truth is ignored with a warning, one with different truth is an InputError naming both lines)."""
    from noiseaudit.data.source import unique_rows

    cols = [c for c in truth.columns if c != "path"]
    values = list(zip(*(truth[c].astype(object).where(truth[c].notna(), None) for c in cols)))
    keys = [PurePosixPath(p.replace("\\", "/")) for p in raw["path"]]  # "./a.png" and "a.png" are one path
    return unique_rows(keys, list(raw["path"]), values, lines, csv, noun=("truth", "truth"),
                       show=lambda i: _cells(raw, i, cols))


def _cells(table: pd.DataFrame, row: int, cols: list[str]) -> str:
    """A row's cells as they read in the file: "is_noisy 'yes', original_label 'cat'"."""
    return ", ".join(f"{c} {table[c].iloc[row]!r}" for c in cols)


def _warn_unmatched(paths: pd.Series, lines: list[int], rows: list[int | None], csv: str) -> None:
    """One warning counting the truth CSV's paths that no report row matched."""
    matched = set(rows)
    missing = [i for i in range(len(paths)) if i not in matched]
    if missing:
        n, first = len(missing), missing[0]
        warn(f"{csv}: {n} path{'s are' if n > 1 else ' is'} not in the report (the first: "
             f"{paths.iloc[first]!r} on {line_word(csv, lines[first])}); ignored",
             NoiseAuditWarning)


def evaluate(report: pd.DataFrame, k: int | None = None,
             truth_csv: str | Path | pd.DataFrame | None = None) -> dict[str, Any]:
    """Score a report against known wrong labels: the flagged set, every signal's ranking, per class.

    Parameters
    ----------
    report : DataFrame
        A report (:func:`noiseaudit.scan` or :func:`noiseaudit.read_report`). The truth comes from its
        ``original_label`` column (compared with ``given_label``) or else ``is_noisy``; rows where it
        is blank are unknown and left out (counted in ``n_unknown``).
    k : int, optional
        The cut-off of precision@k and recall@k; by default the number of known wrong labels. At least
        1; one above the number of scored rows of known truth is lowered to it, with a warning.
    truth_csv : str, Path or DataFrame, optional
        A CSV (or a DataFrame of one) with a path column and ``is_noisy`` and/or ``original_label``, joined on ``path``
        (replacing the report's own truth columns, both of them: :func:`noiseaudit.evaluate.attach_truth`).

    Returns
    -------
    dict
        ``n``, ``n_unknown``, ``n_not_ranked`` (trusted samples and skipped images, left out), ``n_noisy``,
        ``n_flagged``; ``precision``, ``recall`` and ``f1`` of
        ``is_suspect``; ``auroc``, ``average_precision``, ``precision_at_k``, ``recall_at_k`` and ``k``
        of the report's ``rank``; ``estimated_noise_rate`` and ``true_noise_rate``; ``signals`` (the
        ranking metrics of every signal column, by name) and ``per_class`` (by given label).

    Raises
    ------
    UsageError
        ``k`` below 1.
    InputError
        No truth column, no row of known truth, or an ``is_noisy`` value that is not yes/no.
    """
    check_whole_number("k", k)
    if k is not None and k < 1:
        raise UsageError(f"{option('k')} must be at least 1, got {k}")
    check_report(report, needs=("path", "given_label", "rank", "is_suspect"))
    report = report.reset_index(drop=True)  # rows by position below: a sorted or filtered frame keeps its labels
    source = None
    if truth_csv is not None:
        report = attach_truth(report, truth_csv)
        source = None if isinstance(truth_csv, pd.DataFrame) else str(truth_csv)
    n_rows = len(report)
    report = scored(report)  # trusted samples and skipped images are not ranked: left out, and counted
    known = known_truth(report, source=source)
    if known is None:
        raise InputError("no truth: the report has no is_noisy or original_label column; pass "
                         f"{option('truth_csv', flag='--truth')}")
    n_scored = len(report)
    report, truth = known
    if not len(report):
        raise InputError("no truth: is_noisy / original_label is blank on every scored row")
    k = _cut_off(k, len(report))
    flagged = report["is_suspect"].to_numpy(bool)
    precision, recall, f1 = precision_recall_f1(truth, flagged)
    scores = signal_scores(report)
    signals = {name: ranking_metrics(truth, s, k) for name, s in scores.items()}
    top = signals["rank"]
    per_class = []
    for label, rows in report.groupby("given_label", sort=True):
        t, f = truth[rows.index], flagged[rows.index]
        p, r, f1c = precision_recall_f1(t, f)
        per_class.append({"class": label.item() if isinstance(label, np.generic) else label, "n": len(rows),
                          "n_noisy": int(t.sum()), "n_flagged": int(f.sum()), "precision": p, "recall": r,
                          "f1": f1c})
    return {
        "n": len(report), "n_unknown": n_scored - len(report), "n_not_ranked": n_rows - n_scored,
        "n_noisy": int(truth.sum()),
        "n_flagged": int(flagged.sum()),
        "precision": precision, "recall": recall, "f1": f1,
        "auroc": top["auroc"], "average_precision": top["average_precision"],
        "precision_at_k": top["precision_at_k"], "recall_at_k": top["recall_at_k"], "k": top["k"],
        "estimated_noise_rate": float(flagged.mean()), "true_noise_rate": float(truth.mean()),
        "signals": signals, "per_class": per_class,
    }


def _cut_off(k: int | None, n: int) -> int | None:
    """``k``, or ``n`` (with a warning) where it asks for more than the ``n`` rows there are."""
    if k is None or k <= n:
        return k
    warn(f"{option('k', k)} is more than the {n} scored samples of known truth; using k = {n}",
         NoiseAuditWarning)
    return n
