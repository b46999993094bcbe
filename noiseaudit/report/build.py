"""Per-sample records -> the ranked report DataFrame."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from noiseaudit.errors import UsageError

if TYPE_CHECKING:  # threshold.py imports scikit-learn; reading a report must not
    from noiseaudit.report.threshold import Threshold

REPORT_COLUMNS = (
    "sample_id", "path", "given_label", "predicted_label", "pred_prob", "given_prob",
    "suggested_label", "suggested_prob", "learned_lr", "learned_lr_mean", "loss", "margin",
    "rank", "suspicion", "is_suspect", "status", "duplicate_group", "duplicate_conflict",
)
# Columns whose values rank samples, each with the direction in which it is more suspect.
SIGNAL_COLUMNS = {"rank": -1.0, "learned_lr": -1.0, "learned_lr_mean": -1.0, "loss": 1.0, "margin": -1.0,
                  "suspicion": 1.0, "given_prob": -1.0, "learned_lr_large": -1.0, "learned_lr_small": -1.0,
                  "dba_selected_frac": -1.0}
# Signals that only some runs record (two-regime schedule, dba method); added after the fixed columns.
OPTIONAL_SIGNALS = ("learned_lr_large", "learned_lr_small", "dba_selected_frac")


def build_report(paths: list[str], given: np.ndarray, classes: list, signals: dict[str, np.ndarray],
                 probs: np.ndarray, threshold: Threshold, extra: pd.DataFrame | None = None,
                 sample_ids: np.ndarray | None = None) -> pd.DataFrame:
    """Assemble the report: one row per scored sample, in input order, with status ``ok``.

    ``given`` holds class indices into ``classes``; ``probs`` (N, K) are the
    final model's probabilities. The suggested label is the most probable class
    other than the given one. ``sample_ids`` are the samples' input rows
    (default 0..N-1).
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
        "sample_id": rows if sample_ids is None else np.asarray(sample_ids, dtype=np.int64),
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
        "status": "ok",
        **{name: signals[name] for name in OPTIONAL_SIGNALS if name in signals},
    })
    # the same dtypes whether or not rows are skipped or trusted (add_skipped): rank and the model's labels are
    # missing for a skipped row, so they are nullable always; the given label never is
    report["rank"] = report["rank"].astype("Int64")
    if all(isinstance(c, (int, np.integer)) for c in classes):
        report["given_label"] = report["given_label"].astype(np.int64)
        for col in ("predicted_label", "suggested_label"):
            report[col] = report[col].astype("Int64")
    if extra is not None and len(extra.columns):
        report = pd.concat([report, carried_columns(extra)], axis=1)
    return report


def carried_columns(extra: pd.DataFrame, taken: Iterable[str] = ()) -> pd.DataFrame:
    """Extra input columns as carried into the report: a name that clashes with a report column (or one of
    ``taken``, the caller's own) gets ``input_``."""
    reserved = set(REPORT_COLUMNS) | set(taken)
    return extra.reset_index(drop=True).rename(columns={c: f"input_{c}" for c in extra.columns if c in reserved})


def add_skipped(report: pd.DataFrame, skipped: pd.DataFrame) -> pd.DataFrame:
    """Append the samples kept out of the ranking and restore input order.

    ``skipped`` holds ``sample_id``, ``path``, ``given_label`` and ``status``
    (why the sample was left out: an unreadable image's status, or ``trusted``)
    plus any carried columns and, for trusted samples, their predictions and
    signals; their rank (and any column they lack) is missing and they are
    never suspects.
    """
    if not len(skipped):
        return report
    skipped = skipped.assign(is_suspect=False)
    out = pd.concat([report, skipped], ignore_index=True).sort_values("sample_id", kind="stable")
    out["rank"] = out["rank"].astype("Int64")
    for col in ("predicted_label", "suggested_label"):
        if pd.api.types.is_integer_dtype(report[col]):
            out[col] = out[col].astype("Int64")
    if pd.api.types.is_integer_dtype(report["given_label"]) and out["given_label"].notna().all():
        out["given_label"] = out["given_label"].astype(np.int64)  # known for every row, skipped ones too
    out["is_suspect"] = out["is_suspect"].astype(bool)
    return out.reset_index(drop=True)


def with_duplicates(report: pd.DataFrame, sample_ids: np.ndarray, identical: np.ndarray | None) -> pd.DataFrame:
    """``report`` with ``duplicate_group`` and ``duplicate_conflict`` after ``status``.

    ``identical`` holds, for the samples ``sample_ids`` (the dataset's, in its order), the position of the first
    one with an identical input, or -1 (:func:`noiseaudit.data.duplicates.first_identical`). A sample in a group
    gets the group's first ``sample_id``; ``duplicate_conflict`` is whether its group holds another given label.
    Samples without a copy, skipped ones, and every sample where ``identical`` is None get a missing group.
    """
    group = pd.Series(pd.NA, index=report.index, dtype="Int64")
    if identical is not None and (identical >= 0).any():
        heads = np.where(identical >= 0, sample_ids[np.maximum(identical, 0)], -1)
        found = report["sample_id"].map(pd.Series(heads, index=sample_ids)).fillna(-1).to_numpy(np.int64)
        group = pd.Series(found, index=report.index).where(found >= 0).astype("Int64")
    labels = report["given_label"].astype(str).where(group.notna())
    conflict = (labels.groupby(group).transform("nunique") > 1) if group.notna().any() else group.notna()
    at = report.columns.get_loc("status") + 1
    report = report.copy(deep=False)
    report.insert(at, "duplicate_group", group)
    report.insert(at + 1, "duplicate_conflict", conflict.reindex(report.index, fill_value=False).astype(bool))
    return report


def check_report(report: object, needs: tuple[str, ...] = ()) -> None:
    """Refuse anything but a report DataFrame (a path, say), with how to get one, and a table without the report
    columns in ``needs`` (a hand-made or renamed one), naming them."""
    if not isinstance(report, pd.DataFrame):
        raise UsageError(f"a report DataFrame is needed, not a {type(report).__name__}: noiseaudit.read_report(path) "
                         "reads one from its Parquet file")
    missing = [c for c in needs if c not in report.columns]
    if missing:
        raise UsageError(f"not a report's rows: no column {', '.join(map(repr, missing))} (a report comes from "
                         "noiseaudit.scan or read_report, its rows to review from select_suspects)")


def scored(report: pd.DataFrame) -> pd.DataFrame:
    """The samples that were scored (status ``ok``); reports without a status column are all scored."""
    check_report(report)
    if "status" not in report.columns:
        return report
    ok = report["status"] == "ok"
    return report if bool(ok.all()) else report[ok].reset_index(drop=True)


def signal_scores(report: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every signal column present, oriented so that higher means more suspect."""
    return {name: sign * report[name].to_numpy(dtype=np.float64)
            for name, sign in SIGNAL_COLUMNS.items() if name in report.columns}
