"""A short, JSON-ready summary of a report: counts, top suspects and, given truth, detection scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from noiseaudit import formats
from noiseaudit.metrics import detection_metrics
from noiseaudit.report.build import scored
from noiseaudit.report.groups import ENOUGH_PER_CLASS, flags_by_class, unlearned
from noiseaudit.report.truth import known_truth


HEAVY_FLAGGING = 0.3  # above this estimated share of wrong labels, a review of a sample of the flags is asked for


def heavy_flagging(estimated_noise_rate: float, model_agreement: float, threshold_method: str) -> str | None:
    """What to say when a scan flags more than :data:`HEAVY_FLAGGING` of its samples by its own estimate (not a
    ``noise_rate`` asked for): many wrong labels, or a model too weak for the data. None otherwise."""
    if estimated_noise_rate <= HEAVY_FLAGGING or threshold_method == "noise-rate":
        return None
    return (f"That is a lot. Either many labels are wrong, or the model is too weak for this data (it agrees with "
            f"{formats.percent(model_agreement)} of the given labels) and hard samples are flagged beside wrong ones: "
            "review a sample of the flags before acting on the count.")


CHANCE_MARGIN = 0.01  # agreement with the given labels within this of the most common label's share is chance
CHANCE_MIN_PER_CLASS = ENOUGH_PER_CLASS  # below this many samples per class, a weak fit can be the data's size


def at_chance(model_agreement: float, majority_share: float, n_samples: int, n_classes: int) -> str | None:
    """What to say when a model fit to enough samples agrees with their given labels no more than always
    predicting the most common label would (within :data:`CHANCE_MARGIN`): it learned nothing, so its ranking and
    count mean nothing. None otherwise, and for fewer than :data:`CHANCE_MIN_PER_CLASS` samples per class."""
    if n_samples < CHANCE_MIN_PER_CLASS * max(n_classes, 1) or model_agreement > majority_share + CHANCE_MARGIN:
        return None
    return (f"The model learned nothing: it agrees with {formats.percent(model_agreement)} of the given labels, no "
            f"more than always predicting the most common one would ({formats.percent(majority_share)}), so the "
            "ranking and the count mean nothing. Either the labels do not belong to these samples (a shuffled or "
            "misaligned labels file) or training failed: try a lower --lr, a larger --batch-size or more --epochs.")


def unlearned_classes(report: pd.DataFrame) -> list[dict[str, Any]]:
    """The classes the final model barely learned among ``report``'s scored rows (:func:`~noiseaudit.report.groups.
    unlearned`), each as ``given_label``, ``n_samples``, ``n_predicted`` and ``n_flagged``."""
    rows = scored(report)
    groups = flags_by_class(rows["given_label"].tolist(), rows["is_suspect"].astype(bool).tolist(),
                            rows["predicted_label"].tolist())
    barely = unlearned(groups, len(rows), len(groups))
    return [{k: g[k] for k in ("given_label", "n_samples", "n_predicted", "n_flagged")} for g in barely]


def model_choice(metadata: dict[str, Any]) -> str | None:
    """Why ``--backbone auto`` trains what it does on colour images, in words (the metadata's
    ``backbone.evidence``); None where nothing was measured (grayscale images, a backbone named)."""
    evidence = (metadata.get("backbone") or {}).get("evidence") or {}
    chosen = "training from scratch" if evidence.get("chosen") == "from scratch" else "the pretrained backbone"
    if evidence.get("reason") == "measured":
        return (f"Chose {chosen}: on a sample of {evidence['sample']} images, a linear probe of its ImageNet "
                f"features scored {formats.percent(evidence['probe_accuracy'])}, a small CNN trained from scratch "
                f"{formats.percent(evidence['scratch_accuracy'])} (--backbone to choose yourself)")
    if evidence.get("reason") == "too few images to measure":
        if evidence.get("fewest"):  # a sample large enough, one class in it too small
            name, count = evidence["fewest"]
            few = f"too few images of '{name}' ({count} in a sample of {evidence['sample']})"
        else:
            few = f"too few images ({evidence['sample']})"
        return f"Chose {chosen}: {few} to measure it against training from scratch"
    return None


def samples_word(metadata: dict[str, Any]) -> str:
    """What a report's samples are, in words: "images", or "feature vectors" for a scan of vectors."""
    return "feature vectors" if metadata.get("features") else "images"


def duplicate_counts(report: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """Groups of samples with identical inputs, and those whose labels differ (None for a report made before
    noiseaudit looked for them)."""
    if "duplicate_group" not in report.columns:
        return None
    grouped = report["duplicate_group"].notna()
    conflict = report["duplicate_conflict"].astype(bool)
    return {"of": samples_word(metadata),
            "groups": int(report.loc[grouped, "duplicate_group"].nunique()), "samples": int(grouped.sum()),
            "conflicting_groups": int(report.loc[conflict, "duplicate_group"].nunique()),
            "conflicting_samples": int(conflict.sum())}


def summarize(report: pd.DataFrame, metadata: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """Counts over the scored samples (trusted ones apart: they are not ranked), the skipped ones by status, the
    top suspects and truth metrics."""
    status = report["status"] if "status" in report.columns else pd.Series("ok", index=report.index)
    skipped = report[~status.isin(["ok", "trusted"])]
    n_trusted = int((status == "trusted").sum())
    duplicates = duplicate_counts(report, metadata)  # trusted samples included: a copy may contradict one
    report = scored(report)
    suspects = report.sort_values("rank").head(top)
    summary: dict[str, Any] = {
        "n_samples": len(report),
        "n_trusted": n_trusted,
        **formats.skipped_counts([(str(p), str(s)) for p, s in zip(skipped["path"], skipped["status"])]),
        "n_classes": len(metadata.get("classes", [])) or int(report["given_label"].nunique()),
        "n_flagged": int(report["is_suspect"].sum()),
        "estimated_noise_rate": float(report["is_suspect"].mean()) if len(report) else 0.0,
        "model_agreement": float((report["predicted_label"] == report["given_label"]).mean()) if len(report) else 0.0,
        "majority_share": float(report["given_label"].value_counts(normalize=True).max()) if len(report) else 0.0,
        "threshold": metadata.get("threshold", {}),
        "model": metadata.get("model"),
        "device": metadata.get("device"),
        "timings": metadata.get("timings", {}),
        "top_suspects": [
            {k: row[k] for k in ("rank", "path", "given_label", "given_prob", "suggested_label",
                                  "suggested_prob", "learned_lr", "suspicion", "is_suspect")}
            for _, row in suspects.iterrows()
        ],
    }
    summary["model_at_chance"] = at_chance(summary["model_agreement"], summary["majority_share"], len(report),
                                           summary["n_classes"]) is not None
    barely = [] if summary["model_at_chance"] else unlearned_classes(report)
    if barely:
        summary["unlearned_classes"] = barely
    if duplicates is not None:
        summary["duplicates"] = duplicates
    choice = model_choice(metadata)
    if choice:
        summary["model_choice"] = choice
    known = known_truth(report, lenient=True)
    if known is not None and len(known[0]):
        rows, truth = known
        metrics = detection_metrics(truth, -rows["rank"].to_numpy(dtype=np.float64), rows["is_suspect"].to_numpy(bool))
        summary["truth"] = {"n_known": len(rows), "n_noisy": int(truth.sum()), "true_noise_rate": float(truth.mean()),
                            **metrics}
    return summary
