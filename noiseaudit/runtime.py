"""Device choice and seeding."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np
import torch

from noiseaudit.errors import UsageError

P = ParamSpec("P")
R = TypeVar("R")


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are taken as given."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {spec!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA devices exist")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError("device 'mps' requested but MPS is not available")
    elif device.type != "cpu":
        raise UsageError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def keeps_random_state(run: Callable[P, R]) -> Callable[P, R]:
    """``run`` with the global generators of Python, NumPy and torch (CPU, and CUDA where it has started) put back
    as they were when it returns or raises: a run seeds them for its own reproducibility, and a notebook's own
    draws go on afterwards as if it had not run."""

    @functools.wraps(run)
    def kept(*args: P.args, **kwargs: P.kwargs) -> R:
        state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        try:
            return run(*args, **kwargs)
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])
            torch.set_rng_state(state[2])
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)

    return kept


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for shuffling and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
