"""Shared fixtures: sklearn digits written as PNGs with injected label noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from noiseaudit.noise import inject_symmetric


def write_digits(root: Path, rate: float, seed: int) -> tuple[Path, Path]:
    """All 1,797 sklearn digits as 8x8 PNGs and a labels.csv with ``rate`` symmetric noise."""
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    noisy = inject_symmetric(digits.target, rate, 10, seed=seed)
    image_dir = root / "images"
    image_dir.mkdir(parents=True)
    rows = []
    for i, img in enumerate(images):
        name = f"d{i:04d}.png"
        Image.fromarray(img, "L").save(image_dir / name)
        rows.append({"file": name, "digit": int(noisy.labels[i]), "original_label": int(digits.target[i]),
                     "is_noisy": bool(noisy.is_noisy[i])})
    csv = root / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return image_dir, csv


@pytest.fixture(autouse=True, scope="session")
def _private_decode_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Scans in tests cache decoded images in a temp folder, not in the user's ~/.cache."""
    import os

    os.environ["NOISEAUDIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("decode-cache"))


@pytest.fixture(scope="session")
def noisy_digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_digits(tmp_path_factory.mktemp("digits"), rate=0.2, seed=0)
