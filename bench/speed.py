"""Time a learned-lr scan against the same training with uniform rates (plain), interleaved.

    python bench/speed.py                # CPU (and CUDA when available); writes bench/results/speed.json
    python bench/speed.py --dataset digits --epochs 20 --cv --out bench/results/speed_cv_digits.json

Same model, data (Fashion-MNIST 10k subset), epochs and seed; the two methods
alternate run by run so that machine noise hits both alike, and the median of
the per-pair ratios is reported. With ``--cv`` every round also times the
training behind cleanlab's 5-fold cross-validation (5 plain trainings on 4/5 of
the data, at the same epochs; bench/detect.py's cleanlab_cv) and reports the
median learned-lr / CV and plain / CV ratios: on small datasets one detect.py
timing per cell is too noisy for that ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
from common import load, run
from detect import cleanlab_cv

from noiseaudit.train import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"


def measure(device: str, dataset: str, epochs: int, pairs: int, cv: bool = False) -> dict:
    x, y = load(dataset)
    run(x, y, TrainConfig(epochs=1, method="plain"), 0, device)  # warm-up: allocator, kernels, caches
    times: dict[str, list[float]] = {"plain": [], "learned-lr": []} | ({"cv": []} if cv else {})
    for i in range(pairs):
        order = ("plain", "learned-lr") if i % 2 == 0 else ("learned-lr", "plain")
        for method in order:
            times[method].append(run(x, y, TrainConfig(epochs=epochs, method=method), 0, device).seconds)
        if cv:
            times["cv"].append(cleanlab_cv(x, y, TrainConfig(epochs=epochs, method="plain"), 0, device)[1])
    ratios = [a / b for a, b in zip(times["learned-lr"], times["plain"])]
    versus_cv = {f"{m}_per_cv_median": float(np.median(np.array(times[m]) / np.array(times["cv"])))
                 for m in ("learned-lr", "plain")} if cv else {}
    return versus_cv | {"device": device, "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else
            platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "dataset": dataset,
            "epochs": epochs, "pairs": pairs, "seconds": times, "ratio_median": float(np.median(ratios)),
            "ratios": ratios, "plain_images_per_s": len(y) * epochs / float(np.median(times["plain"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fmnist10k")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--cv", action="store_true", help="also time 5-fold CV training in every round")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = [measure(d, args.dataset, args.epochs, args.pairs, args.cv) for d in devices]
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "results": results}, indent=1))
    for r in results:
        print(f"{r['device']} ({r['device_name']}, {r['threads']} threads): learned-lr / plain = "
              f"{r['ratio_median']:.3f} (median of {r['pairs']} interleaved pairs; "
              f"plain {r['plain_images_per_s']:.0f} img/s)")
        if args.cv:
            print(f"  learned-lr / 5-fold CV = {r['learned-lr_per_cv_median']:.3f}, "
                  f"plain / 5-fold CV = {r['plain_per_cv_median']:.3f} (medians over rounds)")


if __name__ == "__main__":
    main()
