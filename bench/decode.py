"""Decoding throughput, cold and cached, against the epoch time it feeds.

    python bench/decode.py            # writes bench/results/decode.json

Writes the 60,000 Fashion-MNIST training images as PNGs (once, into bench/.data/fmnist-png, not
tracked), then times, on this machine: decoding them with no cache, the first cached scan
(decode + write the cache), and a warm scan that reads the cache; and one training epoch of the
default model at the default batch size, plain and learned-lr. The figure the issue asks for is
the warm load time as a fraction of epoch time.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fashion_mnist import load_fashion_mnist
from PIL import Image

from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.dataset import load_dataset
from noiseaudit.data.source import load_source
from noiseaudit.models import build_model, default_model
from noiseaudit.runtime import seed_everything
from noiseaudit.train import TrainConfig, train

HERE = Path(__file__).resolve().parent
PNG_DIR = HERE / ".data" / "fmnist-png"


def write_pngs() -> tuple[Path, Path]:
    images_dir, csv = PNG_DIR / "images", PNG_DIR / "labels.csv"
    if csv.is_file():
        return images_dir, csv
    x, y = load_fashion_mnist("train")
    images_dir.mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    for i, (img, label) in enumerate(zip(x, y)):
        Image.fromarray(img, "L").save(images_dir / f"{i:05d}.png")
        rows.append(f"{i:05d}.png,{label}")
    csv.write_text("\n".join(rows) + "\n")
    return images_dir, csv


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    images_dir, csv = write_pngs()
    workers = 2
    source = load_source(images_dir, csv)
    data, cold = timed(lambda: load_dataset(source, workers=workers))
    cache_dir = Path(tempfile.mkdtemp(prefix="noiseaudit-decode-cache-"))
    try:
        _, first = timed(lambda: load_dataset(load_source(images_dir, csv), workers=workers,
                                              cache=DecodeCache(cache_dir)))
        _, warm = timed(lambda: load_dataset(load_source(images_dir, csv), workers=workers,
                                             cache=DecodeCache(cache_dir)))
    finally:
        shutil.rmtree(cache_dir)
    epoch = {}
    for method in ("plain", "learned-lr"):
        gen = seed_everything(0)
        model = build_model(default_model(data.channels, data.image_size), data.channels, data.image_size, 10)
        _, epoch[method] = timed(lambda: train(data, model, TrainConfig(epochs=1, method=method),
                                               torch.device("cpu"), gen))
    n = len(data)
    result = {"n_images": n, "workers": workers, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "seconds": {"decode_no_cache": cold, "decode_and_write_cache": first, "warm_cache_load": warm,
                          "epoch_plain": epoch["plain"], "epoch_learned_lr": epoch["learned-lr"]},
              "images_per_s": {"decode_no_cache": n / cold, "decode_and_write_cache": n / first,
                               "warm_cache_load": n / warm},
              "warm_load_over_epoch_learned_lr": warm / epoch["learned-lr"]}
    out = HERE / "results" / "decode.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
