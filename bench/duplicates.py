"""What looking for identical inputs costs, and what it finds on real datasets.

    python bench/duplicates.py        # writes bench/results/duplicates.json (about 3 minutes on 2 cores)

Side by side in one run, on this machine:
- from scratch: the digests of 10,000 Fashion-MNIST images (as the scan holds them, 28x28 gray) against
  a cold load_dataset of the same images as PNGs (decode, cache written) and a warm one (cache read);
- with a backbone: one digest per decoded 128 px image against embedding the same batch with the
  frozen EfficientNet-Lite0 bottom the scan uses (needs the ``pretrained`` extra).
And counts: identical groups and groups with different labels among Fashion-MNIST's 70,000 images,
CIFAR-10's 60,000 JPEGs (decoded to pixels; ../shared/data/cifar10) and a planted check (1% of a
10,000-image set copied under another label).
"""

from __future__ import annotations

import io
import json
import os
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fashion_mnist import load_fashion_mnist
from PIL import Image

from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.dataset import load_dataset
from noiseaudit.data.duplicates import digest, first_identical, groups_of, row_digests
from noiseaudit.data.source import load_source

HERE = Path(__file__).resolve().parent
CIFAR_TAR = HERE.parent.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"


def counts(identical: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    groups = groups_of(identical)
    conflicting = [g for g in groups if len(set(labels[g].tolist())) > 1]
    return {"n": len(identical), "groups": len(groups), "samples": sum(map(len, groups)),
            "conflicting_groups": len(conflicting), "conflicting_samples": sum(map(len, conflicting))}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def scratch_cost(tmp: Path) -> dict[str, float]:
    x, y = load_fashion_mnist("train")
    x, y = x[:10_000], y[:10_000]
    (tmp / "png").mkdir()
    for i, img in enumerate(x):
        Image.fromarray(img, "L").save(tmp / "png" / f"{i}.png")
    (tmp / "labels.csv").write_text("path,label\n" + "".join(f"{i}.png,{c}\n" for i, c in enumerate(y)))
    cache = DecodeCache(tmp / "cache")
    source = load_source(tmp / "png", tmp / "labels.csv")
    cold, cold_s = timed(lambda: load_dataset(source, workers=2, cache=cache))
    _, warm_s = timed(lambda: load_dataset(source, workers=2, cache=cache))
    inputs = cold.inputs.numpy()
    _, digest_s = timed(lambda: first_identical(row_digests(inputs)))
    return {"images": len(inputs), "digest_s": digest_s, "cold_load_s": cold_s, "warm_load_s": warm_s,
            "digest_over_cold_load": digest_s / cold_s, "digest_over_warm_load": digest_s / warm_s}


def backbone_cost() -> dict[str, float] | None:
    from noiseaudit.backbone import BackbonePlan, encoder
    from noiseaudit.config import LITE0
    from noiseaudit.errors import UsageError

    try:  # the bottom --finetune auto freezes below 20,000 images, with the mirrored view it caches
        enc = encoder(BackbonePlan(LITE0, "deep", 128, "fp32"), torch.device("cpu"), mirrored=True)
    except UsageError:  # no pretrained extra
        return None
    batch = np.random.default_rng(0).integers(0, 256, (256, 128, 128, 3), dtype=np.uint8)
    enc.encode(batch[:8])  # warm-up
    _, digest_s = timed(lambda: [digest(b) for b in batch])
    _, embed_s = timed(lambda: enc.encode(batch))
    return {"batch": len(batch), "image_size": 128, "digest_s": digest_s, "embed_s": embed_s,
            "digest_over_embed": digest_s / embed_s}


def cifar_counts() -> dict[str, int] | None:
    if not CIFAR_TAR.is_file():
        return None
    digests, labels = [], []
    with tarfile.open(CIFAR_TAR) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                pixels = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
                digests.append(digest(pixels))
                labels.append(member.name.split("/")[-2])
    return counts(first_identical(digests), np.asarray(labels))


def main() -> None:
    torch.set_num_threads(2)
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    x, y = np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])
    planted_x, planted_y = train_x[:10_000].copy(), train_y[:10_000].copy()
    pick = np.random.default_rng(0).choice(10_000, 100, replace=False)
    planted_x = np.concatenate([planted_x, planted_x[pick]])
    planted_y = np.concatenate([planted_y, (planted_y[pick] + 1) % 10])
    with tempfile.TemporaryDirectory() as tmp:
        scratch = scratch_cost(Path(tmp))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "from_scratch": scratch,
        "backbone": backbone_cost(),
        "found": {
            "fashion_mnist_70k": counts(first_identical(row_digests(x)), y),
            "cifar10_60k_jpeg_pixels": cifar_counts(),
            "planted_1pct_copies_other_label": counts(first_identical(row_digests(planted_x)), planted_y),
        },
    }
    out = HERE / "results" / "duplicates.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
