"""Score a report against known wrong labels: flagged set, every signal's ranking, per class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noiseaudit.data.pathmatch import PathIndex
from noiseaudit.errors import InputError, input_file
from noiseaudit.metrics import precision_recall_f1, ranking_metrics
from noiseaudit.report.build import scored, signal_scores
from noiseaudit.report.truth import known_truth, yes_no


def attach_truth(report: pd.DataFrame, truth_csv: str | Path) -> pd.DataFrame:
    """Join ``is_noisy`` / ``original_label`` from a CSV onto the report by ``path``; report rows the CSV
    does not list get no truth (unknown), but at least one must match."""
    from noiseaudit.data.source import PATH_COLUMN_NAMES

    truth_csv = input_file(truth_csv, "truth CSV")
    truth = pd.read_csv(truth_csv, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    pcol = next((c for c in truth.columns if c.strip().lower() in PATH_COLUMN_NAMES), None)
    cols = [c for c in ("is_noisy", "original_label") if c in truth.columns]
    if pcol is None or not cols:
        raise InputError("truth CSV needs a path column and is_noisy or original_label", path=truth_csv, line=1)
    truth = truth[[pcol, *cols]].rename(columns={pcol: "path"})
    if "is_noisy" in truth.columns:
        truth["is_noisy"] = yes_no(truth["is_noisy"], truth_csv)
    index = PathIndex(truth["path"])  # absolute truth paths match the report's relative ones
    index.learn_root(report["path"].astype(str))
    rows = [index.row(p) for p in report["path"].astype(str)]
    if len(rows) and all(i is None for i in rows):
        raise InputError(f"no report path is in the truth CSV (the report's first is {report['path'].iloc[0]!r})",
                         path=truth_csv)
    unknown = pd.DataFrame({c: [pd.NA] for c in cols})  # the row of every report path the CSV lacks
    padded = pd.concat([truth[cols].astype(object), unknown], ignore_index=True)
    matched = padded.iloc[[len(truth) if i is None else i for i in rows]].reset_index(drop=True)
    base = report.drop(columns=[c for c in cols if c in report.columns]).reset_index(drop=True)
    return pd.concat([base, matched], axis=1)


def evaluate(report: pd.DataFrame, k: int | None = None, truth_csv: str | Path | None = None) -> dict[str, Any]:
    """Score a report against known wrong labels: the flagged set, every signal's ranking, per class.

    Parameters
    ----------
    report : DataFrame
        A report (:func:`noiseaudit.scan` or :func:`noiseaudit.read_report`). The truth comes from its
        ``original_label`` column (compared with ``given_label``) or else ``is_noisy``; rows where it
        is blank are unknown and left out (counted in ``n_unknown``).
    k : int, optional
        The cut-off of precision@k and recall@k; by default the number of known wrong labels.
    truth_csv : str or Path, optional
        A CSV with a path column and ``is_noisy`` and/or ``original_label``, joined on ``path``
        (replacing the report's own truth columns).

    Returns
    -------
    dict
        ``n``, ``n_unknown``, ``n_noisy``, ``n_flagged``; ``precision``, ``recall`` and ``f1`` of
        ``is_suspect``; ``auroc``, ``average_precision``, ``precision_at_k``, ``recall_at_k`` and ``k``
        of the report's ``rank``; ``estimated_noise_rate`` and ``true_noise_rate``; ``signals`` (the
        ranking metrics of every signal column, by name) and ``per_class`` (by given label).

    Raises
    ------
    InputError
        No truth column, no row of known truth, or an ``is_noisy`` value that is not yes/no.
    """
    if truth_csv is not None:
        report = attach_truth(report, truth_csv)
    report = scored(report)
    known = known_truth(report)
    if known is None:
        raise InputError("no truth: the report has no is_noisy or original_label column; pass --truth CSV")
    n_scored = len(report)
    report, truth = known
    if not len(report):
        raise InputError("no truth: is_noisy / original_label is blank on every scored row")
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
        "n": len(report), "n_unknown": n_scored - len(report), "n_noisy": int(truth.sum()),
        "n_flagged": int(flagged.sum()),
        "precision": precision, "recall": recall, "f1": f1,
        "auroc": top["auroc"], "average_precision": top["average_precision"],
        "precision_at_k": top["precision_at_k"], "recall_at_k": top["recall_at_k"], "k": top["k"],
        "estimated_noise_rate": float(flagged.mean()), "true_noise_rate": float(truth.mean()),
        "signals": signals, "per_class": per_class,
    }
