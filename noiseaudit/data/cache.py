"""Decode once: a memory-mapped cache of decoded images, or of what a frozen backbone computes from
them, reused by later scans.

An entry is keyed by the dataset root, every file's relative path, size, modification and
change times and inode (so any edit, replacement or rename makes a new key), plus the image
size and, for a backbone's activations, the encoder's name (network, split point, precision,
weights file hash, device kind).
It holds the (N, S, S, 3) uint8 images or the (N, C, H, W) float16 activations as ``.npy``
(opened memory-mapped) and a JSON sidecar with the files that could not be decoded. Small notes
per file list sit beside them (the automatically chosen image size, the automatic backbone choice),
so a warm scan opens no image at all. Entries are written to temp files and renamed, so a killed
scan never leaves a half-written entry.

The cache lives in ``--cache-dir``, else ``$NOISEAUDIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/noiseaudit``, else ``~/.cache/noiseaudit``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from noiseaudit.errors import NoiseAuditWarning, option, warn
from noiseaudit.report.io import atomic_write

CACHE_VERSION = 2  # 2: 16-bit gray scaled from the bit depth its values use, a float NaN black, tRNS composited


def default_cache_dir() -> Path:
    if os.environ.get("NOISEAUDIT_CACHE_DIR"):
        return Path(os.environ["NOISEAUDIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "noiseaudit"


def files_key(root: Path, files: list[Path]) -> str:
    """SHA-256 over the root and each file's relative path, size, times and inode."""
    h = hashlib.sha256(f"noiseaudit-cache-{CACHE_VERSION}\0{root}\0".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0"
                 f"{st.st_ino}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


class DecodeCache:
    """Reads and writes cache entries under ``directory`` (created on first write)."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.writable = True  # False after a failed write: the cache is a speed-up, so the scan goes on without it

    def _writing(self, write: Callable[[], None]) -> None:
        """Run ``write``; on an OSError (no home, read-only, disk full) warn once and stop writing."""
        if not self.writable:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write()
        except OSError as exc:
            self.writable = False
            reason = exc.strerror or str(exc) or type(exc).__name__  # a bare OSError("...") has no strerror
            warn(f"cannot write the decode cache in {self.directory} ({reason}); going on without it "
                 f"({option('cache_dir')} to put it elsewhere, {option('cache', False)} to skip it)",
                 NoiseAuditWarning)

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}{suffix}"

    def auto_size(self, key: str, rule: int) -> int | None:
        """The image size the automatic ``rule`` (a version number) chose for these files before."""
        meta = self.note(key, f"size{rule}")
        return None if meta is None else int(meta["image_size"])

    def store_auto_size(self, key: str, image_size: int, rule: int) -> None:
        self.store_note(key, f"size{rule}", {"image_size": image_size})

    def note(self, key: str, name: str) -> dict[str, Any] | None:
        """A small JSON value remembered for these files (the automatic image size, the backbone choice)."""
        return self._read_json(self._path(key, f".{name}.json"))

    def store_note(self, key: str, name: str, value: dict[str, Any]) -> None:
        self._write_json(self._path(key, f".{name}.json"), value)

    @staticmethod
    def _stem(key: str, image_size: int, variant: str | None) -> str:
        return f"{key}-{image_size}" if variant is None else f"{key}-{image_size}-{variant}"

    def load(self, key: str, image_size: int, variant: str | None = None, shape: tuple[int, ...] | None = None,
             dtype: str = "uint8") -> tuple[np.ndarray, dict[str, Any]] | None:
        """The cached array (memory-mapped copy-on-write: the file is never changed) and its sidecar, or None on a miss.

        ``variant`` names an encoder whose per-sample output has ``shape`` and ``dtype``;
        without one the entry holds (image_size, image_size, 3) uint8 images.
        """
        stem = self._stem(key, image_size, variant)
        meta = self._read_json(self._path(stem, ".json"))
        array_path = self._path(stem, ".npy")
        if meta is None or not array_path.is_file():
            return None
        try:
            array = np.load(array_path, mmap_mode="c")  # copy-on-write: never written, no warning
        except (OSError, ValueError):
            return None  # damaged entry: decode again
        per_sample = (image_size, image_size, 3) if shape is None else tuple(shape)
        if array.shape != (meta["n"], *per_sample) or array.dtype != np.dtype(dtype):
            return None
        return array, meta

    def store(self, key: str, image_size: int, array: np.ndarray, meta: dict[str, Any],
              variant: str | None = None) -> None:
        """Write ``array`` and its sidecar (array first, so a sidecar always has its array)."""
        stem = self._stem(key, image_size, variant)
        self._writing(lambda: atomic_write(self._path(stem, ".npy"), lambda tmp: _save_npy(tmp, array)))
        self._write_json(self._path(stem, ".json"), {**meta, "n": int(array.shape[0])})

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _write_json(self, path: Path, value: dict[str, Any]) -> None:
        self._writing(lambda: atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value))))


def _save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to an exact file name (np.save appends .npy to names without it)."""
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
