"""Inject label noise with exact counts: symmetric, asymmetric (class-pair map) and instance-dependent.

Every function flips exactly ``round(rate * N)`` labels, never to the same
class, and is deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from noiseaudit.errors import UsageError, option

KINDS = ("symmetric", "asymmetric", "instance")


@dataclass
class NoisyLabels:
    labels: np.ndarray  # (N,) int class indices after injection
    is_noisy: np.ndarray  # (N,) bool

    def noise_matrix(self, original: np.ndarray, num_classes: int) -> np.ndarray:
        """Counts of (original class, new class) pairs."""
        m = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(m, (original, self.labels), 1)
        return m


def check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise UsageError(f"{option('rate')} must be in [0, 1), got {rate}")


def _check(labels: np.ndarray, rate: float, num_classes: int) -> int:
    check_rate(rate)
    if num_classes < 2:
        raise UsageError("need at least two classes to inject noise")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UsageError("labels must be class indices in [0, num_classes)")
    return int(round(rate * labels.size))


def default_pairs(num_classes: int) -> dict[int, int]:
    """The pair-flip permutation c -> c + 1 (mod K)."""
    return {c: (c + 1) % num_classes for c in range(num_classes)}


def inject_symmetric(labels: np.ndarray, rate: float, num_classes: int, seed: int = 0) -> NoisyLabels:
    """Flip exactly round(rate*N) labels, each to a uniformly chosen other class."""
    labels = np.asarray(labels, dtype=np.int64)
    k = _check(labels, rate, num_classes)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(labels.size, size=k, replace=False)
    shift = rng.integers(1, num_classes, size=k)
    new = labels.copy()
    new[chosen] = (labels[chosen] + shift) % num_classes
    noisy = np.zeros(labels.size, dtype=bool)
    noisy[chosen] = True
    return NoisyLabels(new, noisy)


def inject_asymmetric(labels: np.ndarray, rate: float, num_classes: int, seed: int = 0,
                      pairs: Mapping[int, int] | None = None) -> NoisyLabels:
    """Flip exactly round(rate*N) labels along a class-pair map (default c -> c+1).

    Only samples whose class has a target in the map can be flipped.
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = _check(labels, rate, num_classes)
    pairs = default_pairs(num_classes) if pairs is None else dict(pairs)
    for src, dst in pairs.items():
        if src == dst:
            raise UsageError(f"pair map sends class {src} to itself")
        if not (0 <= src < num_classes and 0 <= dst < num_classes):
            raise UsageError(f"pair map entry {src} -> {dst} is not a known class")
    eligible = np.flatnonzero(np.isin(labels, list(pairs)))
    if k > eligible.size:
        raise UsageError(f"cannot flip {k} labels: only {eligible.size} samples belong to classes in the pair map")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=k, replace=False)
    new = labels.copy()
    new[chosen] = [pairs[int(c)] for c in labels[chosen]]
    noisy = np.zeros(labels.size, dtype=bool)
    noisy[chosen] = True
    return NoisyLabels(new, noisy)


def inject_instance(labels: np.ndarray, rate: float, num_classes: int, probs: np.ndarray,
                    seed: int = 0) -> NoisyLabels:
    """Flip exactly round(rate*N) labels to the wrong class a model finds most plausible.

    ``probs`` (N, K) are class probabilities from a quickly trained model.
    Samples are chosen with probability proportional to how much mass the model
    puts on wrong classes, so confusable samples are flipped more often.
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = _check(labels, rate, num_classes)
    probs = np.asarray(probs, dtype=np.float64)
    wrong = probs.copy()
    wrong[np.arange(labels.size), labels] = -np.inf
    target = wrong.argmax(axis=1)
    weight = np.clip(1.0 - probs[np.arange(labels.size), labels], 1e-6, None)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(labels.size, size=k, replace=False, p=weight / weight.sum())
    new = labels.copy()
    new[chosen] = target[chosen]
    noisy = np.zeros(labels.size, dtype=bool)
    noisy[chosen] = True
    return NoisyLabels(new, noisy)


def inject_noise(labels: np.ndarray, rate: float, kind: str, num_classes: int, seed: int = 0,
                 pairs: Mapping[int, int] | None = None, probs: np.ndarray | None = None) -> NoisyLabels:
    """Dispatch on ``kind``: ``symmetric``, ``asymmetric`` (uses ``pairs``) or ``instance`` (needs ``probs``)."""
    if kind == "symmetric":
        return inject_symmetric(labels, rate, num_classes, seed)
    if kind == "asymmetric":
        return inject_asymmetric(labels, rate, num_classes, seed, pairs)
    if kind == "instance":
        if probs is None:
            raise UsageError("instance noise needs class probabilities from a model")
        return inject_instance(labels, rate, num_classes, probs, seed)
    raise UsageError(f"unknown noise kind {kind!r}; choose one of {', '.join(KINDS)}")
