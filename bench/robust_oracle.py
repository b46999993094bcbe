"""How much could any re-weighting of the noisy samples gain? An oracle for bench/robust.py's missed floor.

    python bench/robust_oracle.py                        # Fashion-MNIST 10k, sym40, seeds 0-2 (about 15 minutes)
    python bench/robust_oracle.py --cells sym40,asym40 --seeds 0

The learned rates can only re-weight the training samples. The best re-weighting there is gives every
wrong label weight 0 and every right one the same weight: plain training on the correctly labelled rows
alone. Per seed and cell, side by side on one machine, at the settings ``bench/robust.py`` chose
(``results/robust.json``):

- ``sgd``: plain SGD on every row, the noisy labels (robust.py's baseline, rerun here);
- ``learned-lr``: the scan's trainer on every row (robust.py's row, rerun here);
- ``sgd-oracle``: plain SGD on the correctly labelled rows only, at SGD's setting and at the learned
  rates' base rate, the better of the two kept (``sgd-oracle`` is an upper bound, so it may pick on the
  test split);
- ``learned-lr-oracle``: the scan's trainer on those rows.

Clean-test accuracy; results in bench/results/robust_oracle.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from robust import Fmnist, train_config

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="sym40")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=RESULTS / "robust_oracle.json")
    args = ap.parse_args()
    chosen = json.loads((RESULTS / "robust.json").read_text())["sweeps"]["fmnist"]["chosen"]
    bench = Fmnist()
    everything = np.arange(bench.y.size)
    out: dict = {"chosen": {m: chosen[m] for m in ("sgd", "learned-lr")}, "torch": torch.__version__, "cells": {}}
    for cell in args.cells.split(","):
        runs: dict[str, list[float]] = {}
        for seed in map(int, args.seeds.split(",")):
            labels = bench.labels(cell, seed)
            right = np.flatnonzero(labels == bench.y)

            def acc(rows: np.ndarray, method: str, setting: dict, seed: int = seed,
                    labels: np.ndarray = labels) -> float:
                cfg = train_config(method, setting, bench.base)
                return bench.run(rows, labels, cfg, seed, bench.test_x, bench.test_y)["accuracy"]

            got = {"sgd": acc(everything, "sgd", chosen["sgd"]),
                   "learned-lr": acc(everything, "learned-lr", chosen["learned-lr"]),
                   "sgd-oracle": max(acc(right, "sgd", chosen["sgd"]),
                                     acc(right, "sgd", {"lr": chosen["learned-lr"]["lr"]})),
                   "learned-lr-oracle": acc(right, "learned-lr", chosen["learned-lr"])}
            for method, value in got.items():
                runs.setdefault(method, []).append(value)
            print(cell, seed, f"{right.size} right labels", {m: round(v, 4) for m, v in got.items()}, flush=True)
        gain = {m: float(np.mean(np.subtract(v, runs["sgd"]))) for m, v in runs.items()}
        out["cells"][cell] = {"runs": runs, "mean": {m: float(np.mean(v)) for m, v in runs.items()},
                              "gain_over_sgd": gain}
        args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({c: v["gain_over_sgd"] for c, v in out["cells"].items()}, indent=1))


if __name__ == "__main__":
    main()
