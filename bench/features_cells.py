"""Detection rows on feature vectors (issue: embeddings in), for ``bench/detect.py --datasets cifar10-lite0``.

Each cell runs the product's own path, ``noiseaudit.scan_features`` with its defaults, twice: learned
rates (signal: the rank, i.e. the learned rate) and ``method="plain"`` (its mean loss and AUM margin).
Baselines on the same standardised features: cleanlab 2.9 on 5-fold cross-validated logistic
regression (after PCA 256), the field's standard recipe, and a 20-NN label vote.
"""

from __future__ import annotations

import time

import numpy as np
from baselines import cleanlab_logreg, knn_vote
from common import make_noise

from noiseaudit.metrics import precision_recall_f1, ranking_metrics
from noiseaudit.config import FEATURE_DEFAULTS
from noiseaudit.scan import scan_features


def _metrics(truth: np.ndarray, suspicion: np.ndarray, flags: np.ndarray | None = None) -> dict:
    m = ranking_metrics(truth, suspicion)
    if flags is not None:
        m["f1"] = precision_recall_f1(truth, flags)[2]
        m["estimated_noise_rate"] = float(np.mean(flags))
    return m


def run_features_cell(name: str, x: np.ndarray, y: np.ndarray, noise: str, seed: int, device: str) -> dict:
    noisy = make_noise(x, y, noise, seed, device)
    truth, labels = noisy.is_noisy, noisy.labels
    out: dict = {"dataset": name, "noise": noise, "seed": seed, "n": int(labels.size), "n_noisy": int(truth.sum()),
                 "epochs": FEATURE_DEFAULTS[0], "signals": {}, "seconds": {}}
    for method in ("learned-lr", "plain"):
        t0 = time.perf_counter()
        report = scan_features(x, labels, method=method, seed=seed, device=device)
        out["seconds"]["learned_lr" if method == "learned-lr" else "plain"] = time.perf_counter() - t0
        tag = "learned_run_" if method == "learned-lr" else ""
        out["signals"][f"{tag}loss"] = _metrics(truth, report["loss"].to_numpy())
        out["signals"][f"{tag}margin"] = _metrics(truth, -report["margin"].to_numpy())
        if method == "learned-lr":
            out["signals"]["learned_lr"] = _metrics(truth, -report["rank"].to_numpy(dtype=np.float64),
                                                    report["is_suspect"].to_numpy())
            out["rate_choice"] = report.attrs["noiseaudit"]["threshold"]["rate_choice"]
    cl = cleanlab_logreg(x, labels, seed)
    out["signals"]["cleanlab"] = _metrics(truth, cl["scores"], cl["flags"])
    out["seconds"]["cleanlab_cv"] = cl["seconds"]
    out["signals"]["knn20"] = _metrics(truth, knn_vote(x, labels))
    return out


def summarise_features(cells: list[dict]) -> str:
    """Markdown: AP per cell (mean over seeds) of every signal, and the issue's floor against cleanlab."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["noise"]), []).append(c)
    names = ("learned_lr", "cleanlab", "knn20", "loss", "margin")
    lines = ["| dataset | noise | seeds | " + " | ".join(f"AP {n}" for n in names)
             + " | Δ AP vs cleanlab (min over seeds) | floor | F1 learned_lr / cleanlab | flagged learned_lr / "
             "cleanlab (true) | time learned / cleanlab-CV |", "|---|---|---|" + "---|" * (len(names) + 5)]
    for (ds, noise), cs in sorted(groups.items()):
        def mean(sig: str, key: str = "average_precision") -> float:
            return float(np.mean([c["signals"][sig][key] for c in cs]))

        deltas = [c["signals"]["learned_lr"]["average_precision"] - c["signals"]["cleanlab"]["average_precision"]
                  for c in cs]
        hard = not noise.startswith("sym")
        need = 0.03 if hard else 0.0
        ok = min(deltas) >= need
        t = np.median([c["seconds"]["learned_lr"] / c["seconds"]["cleanlab_cv"] for c in cs])
        lines.append(f"| {ds} | {noise} | {len(cs)} | " + " | ".join(f"{mean(n):.3f}" for n in names)
                     + f" | {np.mean(deltas):+.3f} ({min(deltas):+.3f}) | ≥ {need:+.2f} {'ok' if ok else 'MISSED'} | "
                     f"{mean('learned_lr', 'f1'):.3f} / {mean('cleanlab', 'f1'):.3f} | "
                     f"{mean('learned_lr', 'estimated_noise_rate'):.3f} / "
                     f"{mean('cleanlab', 'estimated_noise_rate'):.3f}"
                     f" ({cs[0]['n_noisy'] / cs[0]['n']:.2f}) | {t:.2f} |")
    return "\n".join(lines) + "\n"
