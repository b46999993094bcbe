"""The rates' step (``TrainConfig.hyper_lr``, the scan's ``--hyper-lr``) on the detection matrix, side by side.

    python bench/hyper_lr_sweep.py                          # 0.05 (the default) against 0.1, about 25 minutes
    python bench/hyper_lr_sweep.py --datasets digits --steps 0.05,0.1,0.2

The learned-rate AP of every cell of ``bench/detect.py`` (same noise, seeds and epochs) at each
step, run one after the other on the same machine, so the differences are not machine noise. A
probe for a later default change, not a default: plain training and cleanlab do not depend on
the step, so their figures in results/detect.json stand. Results: bench/results/hyper_lr_sweep.json.
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
    ap.add_argument("--datasets", default="digits,mnist5k,fmnist10k")
    ap.add_argument("--noise", default=",".join(NOISE_CELLS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", default="0.05,0.1")
    ap.add_argument("--out", type=Path, default=RESULTS / "hyper_lr_sweep.json")
    args = ap.parse_args()
    steps = [float(s) for s in args.steps.split(",")]
    ap_per_seed: dict[str, dict[str, list[float]]] = {}
    for name in args.datasets.split(","):
        x, y = load(name)
        for noise in args.noise.split(","):
            seeds = list(map(int, args.seeds.split(",")))
            cell = ap_per_seed[f"{name}/{noise}"] = learned_ap_sweep(x, y, name, noise, seeds, "hyper_lr", steps)
            means = {s: round(float(np.mean(v)), 4) for s, v in cell.items()}
            print(name, noise, means, flush=True)
            args.out.write_text(json.dumps({"seeds": args.seeds, "torch": torch.__version__, "ap_per_seed": ap_per_seed,
                                            "mean_ap": {c: {s: float(np.mean(v)) for s, v in t.items()}
                                                        for c, t in ap_per_seed.items()}}, indent=1))


if __name__ == "__main__":
    main()
