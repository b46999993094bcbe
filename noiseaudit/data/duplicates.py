"""Samples whose inputs are identical: the same picture twice, as the model sees it.

Copies of one image under two names (a file copied into a second class folder, a dataset
merged with itself) are common in scraped data. Two copies with different labels cannot
both be right, whatever the model learns; copies with one label train twice. Inputs are
compared by a 128-bit BLAKE2b digest of their bytes: decoded pixels at the size the model
reads them (for a backbone, the size it embeds them at), or a feature vector.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

DIGEST_BYTES = 16


def digest(values: np.ndarray) -> bytes:
    """The digest of one sample's input (any array; its bytes in C order)."""
    return hashlib.blake2b(np.ascontiguousarray(values).data, digest_size=DIGEST_BYTES).digest()


def row_digests(array: np.ndarray, chunk: int = 4096) -> list[bytes]:
    """The digest of every row of ``array`` (N, ...), read ``chunk`` rows at a time (a memory-mapped array is
    not read whole)."""
    out: list[bytes] = []
    for start in range(0, len(array), chunk):
        part = np.ascontiguousarray(array[start:start + chunk])
        out.extend(digest(row) for row in part)
    return out


def first_identical(digests: Iterable[bytes | None]) -> np.ndarray:
    """For each sample, the position of the first sample with the same digest, where another has it; else -1.

    ``None`` stands for a sample without an input (an image that could not be decoded): never identical.
    """
    first: dict[bytes, int] = {}
    seen_twice: set[bytes] = set()
    keys = list(digests)
    for i, key in enumerate(keys):
        if key is None:
            continue
        if first.setdefault(key, i) != i:
            seen_twice.add(key)
    return np.asarray([first[k] if k is not None and k in seen_twice else -1 for k in keys], dtype=np.int64)


def groups_of(identical: np.ndarray) -> list[list[int]]:
    """The groups of identical samples (each two or more positions, in order) of a :func:`first_identical` array."""
    groups: dict[int, list[int]] = {}
    for i, head in enumerate(identical.tolist()):
        if head >= 0:
            groups.setdefault(head, []).append(i)
    return list(groups.values())


def from_groups(groups: list[list[int]], n: int) -> np.ndarray:
    """The :func:`first_identical` array of ``n`` samples back from :func:`groups_of`'s groups."""
    identical = np.full(n, -1, dtype=np.int64)
    for group in groups:
        identical[group] = min(group)
    return identical
