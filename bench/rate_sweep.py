"""Learned-rate detection AP against one training setting, the values run side by side on the same machine.

    python bench/rate_sweep.py --field lr --values 0.0345,0.04,0.045,0.05 --datasets digits \\
        --out bench/results/mlr_snet_level.json                 # about 2 minutes
    python bench/rate_sweep.py --field hyper_lr --values 0.05,0.1 \\
        --out bench/results/hyper_lr_sweep.json                 # about 25 minutes
    python bench/rate_sweep.py --field epochs --values 5,10,20,30 --noise sym40,asym40,inst20 \\
        --out bench/results/epochs_sweep.json                   # about 65 minutes

Every cell of ``bench/detect.py`` (same noise and seeds, and its epochs unless they are the field
swept); for each seed the noise is drawn once and every value trains on it. Three sweeps are recorded:

- ``lr``, the constant rate's level, on digits: the frozen MLR-SNet gives a flat 0.034-0.035, and
  its one detection miss (digits 40% pair-flip) is that level. The sweep reads off the level issue
  17's bound of 0.01 needs.
- ``hyper_lr``, the rates' step, 0.05 (the default) against 0.1 on the whole matrix: a probe for a
  later default change, not a default. Plain training and cleanlab do not depend on it, so their
  figures in results/detect.json stand.
- ``epochs``, how long the scan trains, 5 to 30 epochs on the 40% and instance cells: does a
  longer run rank better, or does the model start to fit the wrong labels? A user's question
  about ``--epochs``, and a check that the benchmark's epoch counts are not on a bad side.

All three are discussed in bench/README.md.
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
    ap.add_argument("--field", required=True, choices=("lr", "hyper_lr", "epochs"), help="the TrainConfig field swept")
    ap.add_argument("--values", required=True, help="comma-separated values of the field")
    ap.add_argument("--datasets", default="digits,mnist5k,fmnist10k")
    ap.add_argument("--noise", default=",".join(NOISE_CELLS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    kind = int if args.field == "epochs" else float
    values, seeds = [kind(v) for v in args.values.split(",")], [int(s) for s in args.seeds.split(",")]
    ap_per_seed: dict[str, dict[str, list[float]]] = {}
    for name in args.datasets.split(","):
        x, y = load(name)
        for noise in args.noise.split(","):
            cell = ap_per_seed[f"{name}/{noise}"] = learned_ap_sweep(x, y, name, noise, seeds, args.field, values)
            print(name, noise, {v: round(float(np.mean(a)), 4) for v, a in cell.items()}, flush=True)
            mean_ap = {c: {v: float(np.mean(a)) for v, a in t.items()} for c, t in ap_per_seed.items()}
            args.out.write_text(json.dumps({"field": args.field, "seeds": args.seeds, "torch": torch.__version__,
                                            "ap_per_seed": ap_per_seed, "mean_ap": mean_ap}, indent=1))


if __name__ == "__main__":
    main()
