"""Detection AP against the constant rate's level: what issue 17's MLR-SNet detection bound asks of the level.

    python bench/mlr_snet_level.py                      # digits, every noise cell, seeds 0-2, about 2 minutes

The frozen MLR-SNet gives a flat rate (0.034-0.035 whatever the loss it reads), and its one miss
(digits 40% pair-flip, -0.016 AP against the constant 0.05) is that level: the constant schedule at
0.0345 scores the same (``bench/detect.py --extra mlr-snet-level``). This sweeps the constant rate
between that level and the scan's 0.05 with the scan's learned rates otherwise unchanged, so the
level a schedule net would need for the bound of 0.01 can be read off. Results:
bench/results/mlr_snet_level.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from common import NOISE_CELLS, learned_ap_sweep, load

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--noise", default=",".join(NOISE_CELLS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--levels", default="0.0345,0.04,0.045,0.05")
    ap.add_argument("--out", type=Path, default=RESULTS / "mlr_snet_level.json")
    args = ap.parse_args()
    x, y = load(args.dataset)
    levels = [float(v) for v in args.levels.split(",")]
    table: dict[str, dict[str, list[float]]] = {}
    for noise in args.noise.split(","):
        table[noise] = learned_ap_sweep(x, y, args.dataset, noise, list(map(int, args.seeds.split(","))), "lr", levels)
        row = {lr: round(float(np.mean(v)), 4) for lr, v in table[noise].items()}
        print(args.dataset, noise, row, flush=True)
    summary = {noise: {lr: {"mean_ap": float(np.mean(v)), "delta_vs_0.05": float(np.mean(v) - np.mean(t["0.05"]))
                            if "0.05" in t else None} for lr, v in t.items()} for noise, t in table.items()}
    args.out.write_text(json.dumps({"dataset": args.dataset, "seeds": args.seeds, "torch": torch.__version__,
                                    "ap_per_seed": table, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
