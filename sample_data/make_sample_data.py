"""Rebuild sample_data/ from the Debian package dataset-fashion-mnist.

    apt-get install -y dataset-fashion-mnist
    python sample_data/make_sample_data.py

Takes 4,000 images of the Fashion-MNIST test split (a seeded, class-balanced
draw), writes them as PNGs under sample_data/images/, and writes
sample_data/labels.csv with class names as labels, 20% of them flipped to a
uniformly chosen other class. The truth is kept in the columns
original_label and is_noisy.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from noiseaudit.noise import inject_symmetric

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist  # noqa: E402  (a bench-only loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    images, labels = load_fashion_mnist("test")
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), args.per_class, replace=False)
                                     for c in range(len(FASHION_MNIST_CLASSES))]))
    noisy = inject_symmetric(labels[chosen], args.rate, len(FASHION_MNIST_CLASSES), seed=args.seed)

    image_dir = args.out / "images"
    shutil.rmtree(image_dir, ignore_errors=True)
    image_dir.mkdir(parents=True)
    rows = []
    for new_label, is_noisy, src in zip(noisy.labels, noisy.is_noisy, chosen):
        name = f"fmnist_test_{src:05d}.png"
        Image.fromarray(images[src], "L").save(image_dir / name, optimize=True)
        rows.append({"path": name, "label": FASHION_MNIST_CLASSES[new_label],
                     "original_label": FASHION_MNIST_CLASSES[labels[src]], "is_noisy": bool(is_noisy)})
    pd.DataFrame(rows).to_csv(args.out / "labels.csv", index=False)
    print(f"wrote {len(rows)} images, {int(noisy.is_noisy.sum())} wrong labels, to {args.out}")


if __name__ == "__main__":
    main()
