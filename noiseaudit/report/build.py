"""Per-sample records -> the ranked report DataFrame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from noiseaudit.report.threshold import Threshold

REPORT_COLUMNS = (
    "sample_id", "path", "given_label", "predicted_label", "pred_prob", "given_prob",
    "suggested_label", "suggested_prob", "learned_lr", "learned_lr_mean", "loss", "margin",
    "rank", "suspicion", "is_suspect",
)
# Columns whose values rank samples, each with the direction in which it is more suspect.
SIGNAL_COLUMNS = {"rank": -1.0, "learned_lr": -1.0, "learned_lr_mean": -1.0, "loss": 1.0, "margin": -1.0,
                  "suspicion": 1.0, "given_prob": -1.0}


def build_report(paths: list[str], given: np.ndarray, classes: list, signals: dict[str, np.ndarray],
                 probs: np.ndarray, threshold: Threshold, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Assemble the report: one row per sample, in input order.

    ``given`` holds class indices into ``classes``; ``probs`` (N, K) are the
    final model's probabilities. The suggested label is the most probable class
    other than the given one.
    """
    n = len(paths)
    rows = np.arange(n)
    predicted = probs.argmax(axis=1)
    others = probs.copy()
    others[rows, given] = -1.0
    suggested = others.argmax(axis=1)
    rank = np.empty(n, dtype=np.int64)
    rank[threshold.order] = np.arange(1, n + 1)
    names = np.asarray(classes, dtype=object)
    report = pd.DataFrame({
        "sample_id": rows,
        "path": paths,
        "given_label": names[given],
        "predicted_label": names[predicted],
        "pred_prob": probs[rows, predicted].astype(np.float32),
        "given_prob": probs[rows, given].astype(np.float32),
        "suggested_label": names[suggested],
        "suggested_prob": probs[rows, suggested].astype(np.float32),
        "learned_lr": signals["learned_lr"],
        "learned_lr_mean": signals["learned_lr_mean"],
        "loss": signals["loss"],
        "margin": signals["margin"],
        "rank": rank,
        "suspicion": threshold.suspicion.astype(np.float32),
        "is_suspect": rank <= threshold.n_flagged,
    })
    if all(isinstance(c, (int, np.integer)) for c in classes):
        for col in ("given_label", "predicted_label", "suggested_label"):
            report[col] = report[col].astype(np.int64)
    if extra is not None and len(extra.columns):
        carried = extra.reset_index(drop=True).rename(
            columns={c: f"input_{c}" for c in extra.columns if c in report.columns})
        report = pd.concat([report, carried], axis=1)
    return report


def truth_mask(report: pd.DataFrame) -> np.ndarray | None:
    """Known wrong labels: ``original_label`` != ``given_label``, else the ``is_noisy`` column.

    ``original_label`` wins because it stays true after labels are corrected,
    while a carried ``is_noisy`` describes the labels as they were injected.
    """
    if "original_label" in report.columns:
        return (report["original_label"].astype(str) != report["given_label"].astype(str)).to_numpy()
    if "is_noisy" in report.columns:
        return report["is_noisy"].astype(bool).to_numpy()
    return None


def signal_scores(report: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every signal column present, oriented so that higher means more suspect."""
    return {name: sign * report[name].to_numpy(dtype=np.float64)
            for name, sign in SIGNAL_COLUMNS.items() if name in report.columns}
