"""Which model a features scan trains by default: the MLP head against a linear one, measured.

    python bench/features_model.py                      # cifar10-lite0 and digits, three noise kinds, seeds 0-1

On the features bench data (``bench/common.py``: the frozen Lite0 embeddings of 10k CIFAR-10
photos, 1280-d; and sklearn digits as 64 raw pixel features) with injected symmetric,
pair-flip and instance noise, ``noiseaudit.scan_features`` runs with each candidate model
(every other option at its default) and the learned rate's AP, AUROC, F1 and flagged fraction
are recorded beside the wall time. Results: bench/results/features_model.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import load, make_noise

from noiseaudit.metrics import precision_recall_f1, ranking_metrics
from noiseaudit.scan import scan_features

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("mlp", "linear")


def digits_features() -> tuple[np.ndarray, np.ndarray]:
    """sklearn digits as 64 float features (the pixels), standardised by the scan itself."""
    x, y = load("digits")
    return x.reshape(len(x), -1).astype(np.float32), y


def cell(name: str, x: np.ndarray, y: np.ndarray, noise: str, seed: int, model: str) -> dict:
    noisy = make_noise(x, y, noise, seed)
    t0 = time.perf_counter()
    report = scan_features(x, noisy.labels, model=model, seed=seed, device="cpu")
    seconds = time.perf_counter() - t0
    truth, flags = noisy.is_noisy, report["is_suspect"].to_numpy()
    m = ranking_metrics(truth, -report["rank"].to_numpy(dtype=np.float64))
    return {"dataset": name, "noise": noise, "seed": seed, "model": model, "seconds": seconds,
            "average_precision": m["average_precision"], "auroc": m["auroc"],
            "f1": precision_recall_f1(truth, flags)[2], "flagged": float(flags.mean()),
            "true_rate": float(truth.mean())}


def markdown(rows: list[dict]) -> str:
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["noise"]), {}).setdefault(r["model"], []).append(r)
    head = "| dataset | noise | " + " | ".join(f"AP {m} | F1 {m} | s {m}" for m in MODELS) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (ds, noise), by_model in sorted(groups.items()):
        cells = []
        for m in MODELS:
            rs = by_model.get(m, [])
            mean = (lambda k: float(np.mean([r[k] for r in rs]))) if rs else (lambda k: float("nan"))
            cells.append(f"{mean('average_precision'):.3f} | {mean('f1'):.3f} | {mean('seconds'):.1f}")
        lines.append(f"| {ds} | {noise} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="cifar10-lite0,digits")
    ap.add_argument("--noise", default="sym20,asym40,inst20")
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args()
    rows = []
    for name in args.datasets.split(","):
        x, y = digits_features() if name == "digits" else load(name)
        for noise in args.noise.split(","):
            for seed in map(int, args.seeds.split(",")):
                for model in MODELS:
                    rows.append(cell(name, x, y, noise, seed, model))
                    print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "features_model.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "features_model.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
