"""Decode a :class:`LabeledSource` into an in-memory uint8 tensor dataset."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from noiseaudit.data.images import GRAY_MODES, DecodeError, decode_image, image_header
from noiseaudit.data.source import LabeledSource, resolve_inside
from noiseaudit.errors import InputError

Progress = Callable[[int, int], None]


@dataclass
class ImageDataset:
    """Decoded images (N, C, S, S) uint8, integer targets and the class list."""

    images: torch.Tensor
    targets: torch.Tensor
    classes: list
    image_size: int

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def sorted_classes(labels: list) -> list:
    """Classes in a stable order: numeric for int labels, lexicographic otherwise."""
    uniq = set(labels)
    if all(isinstance(v, int) for v in uniq):
        return sorted(uniq)
    return sorted(uniq, key=str)


def choose_image_size(shorter_sides: list[int], all_gray: bool) -> int:
    """Median shorter side, clipped to [8, 64] for grayscale and [8, 32] for colour."""
    median = int(np.median(shorter_sides))
    return int(np.clip(median, 8, 64 if all_gray else 32))


def _map(fn: Callable, items: list, workers: int, progress: Progress | None) -> list:
    out = []
    if workers <= 1:
        it = map(fn, items)
    else:
        pool = ThreadPoolExecutor(max_workers=workers)
        it = pool.map(fn, items, chunksize=64)
    try:
        for i, res in enumerate(it, 1):
            out.append(res)
            if progress is not None and (i % 256 == 0 or i == len(items)):
                progress(i, len(items))
    finally:
        if workers > 1:
            pool.shutdown(wait=True, cancel_futures=True)
    return out


def _each_file(fn: Callable, files: list[Path], source: LabeledSource, workers: int, progress: Progress | None,
               pass_index: bool = False) -> list:
    """``fn(file)`` (or ``fn(i, file)``) for every file; the first DecodeError, in input order, becomes an
    InputError naming the file and its CSV line."""
    def call(i: int):
        try:
            return fn(i, files[i]) if pass_index else fn(files[i])
        except DecodeError as err:
            origin, line = source.where(i)
            return InputError(f"{source.paths[i]!r}: {err}", path=origin, line=line)

    results = _map(call, list(range(len(files))), workers, progress)
    for r in results:
        if isinstance(r, InputError):
            raise r
    return results


def load_dataset(source: LabeledSource, *, image_size: int | None = None, workers: int = 2,
                 progress: Progress | None = None) -> ImageDataset:
    """Check, size and decode every image of ``source``.

    Raises :class:`InputError` naming the file and CSV line for a missing or
    undecodable image, and when fewer than two classes remain.
    """
    classes = sorted_classes(source.labels)
    if len(classes) < 2:
        raise InputError(f"need at least two classes to find wrong labels, found {len(classes)} ({classes})",
                         path=source.origin)
    files = [resolve_inside(source.root, p, origin=source.origin, line=line)
             for p, line in zip(source.paths, source.lines)]
    missing = [i for i, f in enumerate(files) if not f.is_file()]
    if missing:
        origin, line = source.where(missing[0])
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"image {source.paths[missing[0]]!r} not found under {source.root}{more}",
                         path=origin, line=line)

    if image_size is None:
        headers = _each_file(image_header, files, source, workers, None)
        image_size = choose_image_size([min(w, h) for w, h, _ in headers], all(m in GRAY_MODES for *_, m in headers))
    elif image_size < 4:
        raise InputError(f"--image-size must be at least 4, got {image_size}")
    stacked = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)

    def decode_into(i: int, file: Path) -> None:
        stacked[i] = decode_image(file, image_size)

    _each_file(decode_into, files, source, workers, progress, pass_index=True)
    gray = bool((stacked[..., 0] == stacked[..., 1]).all() and (stacked[..., 1] == stacked[..., 2]).all())
    images = stacked[..., :1] if gray else stacked
    index = {c: k for k, c in enumerate(classes)}
    targets = torch.tensor([index[v] for v in source.labels], dtype=torch.int64)
    return ImageDataset(images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
                        targets=targets, classes=classes, image_size=image_size)
