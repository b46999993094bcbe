"""Checkpoints of a training run: saved at every epoch end and on SIGINT/SIGTERM, resumed with ``--resume``.

A checkpoint holds everything the loop needs to continue exactly where it
stopped: the model, the base optimizer, the per-sample rates, the signal
recorder, both random generators, the epoch and step, and the current epoch's
sample order. It also holds a fingerprint of the dataset (decoded pixels,
labels and paths) and of the training options; resuming against anything
else is refused. Files are written atomically, so a kill at any moment leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noiseaudit.errors import NoiseAuditError, UsageError, option
from noiseaudit.report.io import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = "in-use.lock"  # held (flock) by the run training into the folder
FORMAT = 1


class Interrupted(NoiseAuditError):
    """SIGINT or SIGTERM arrived; the run was checkpointed and can be resumed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def save_tensors(obj: Any, path: Path) -> None:
    """``torch.save`` through a Python file, so that a full disk is an OSError (ENOSPC) like any other failed
    write; saving to a path name, torch raises a RuntimeError ("unexpected pos") instead."""
    with open(path, "wb") as fh:
        try:
            torch.save(obj, fh)
        except RuntimeError as exc:  # torch's zip writer turns the file's failed write into "unexpected pos"
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


# the scan's options that a checkpoint's fingerprint records by value (the model, the dataset and the trusted set it
# records as hashes or names); a resume with any of them changed is refused, and told the checkpoint's values
TRAINING_OPTIONS = ("method", "epochs", "batch_size", "lr", "hyper_lr", "margin_weight", "meta", "schedule", "augment",
                    "seed", "trusted_weight", "layerwise", "layerwise_rule", "balance_classes")
DATASET_PARTS = {"inputs": "inputs (pixels, activations or vectors)", "labels": "labels", "paths": "paths"}


def dataset_parts(images: torch.Tensor, targets: torch.Tensor, paths: list[str]) -> dict[str, str]:
    """SHA-256 of each part of a dataset (:data:`DATASET_PARTS`): the inputs as trained on, the targets, the
    sample paths in order; so that a refused resume can say which changed."""
    labels = hashlib.sha256(np.ascontiguousarray(targets.numpy().astype(np.int64)).data)
    names = hashlib.sha256()
    for p in paths:
        names.update(p.encode("utf-8", "surrogatepass") + b"\0")
    return {"inputs": hashlib.sha256(np.ascontiguousarray(images.numpy()).data).hexdigest(),
            "labels": labels.hexdigest(), "paths": names.hexdigest()}


def dataset_fingerprint(parts: dict[str, str]) -> str:
    """One SHA-256 over :func:`dataset_parts`: the dataset's fingerprint."""
    return hashlib.sha256("".join(parts[k] for k in DATASET_PARTS).encode()).hexdigest()


def _in_use(directory: str | Path) -> UsageError:
    return UsageError(f"{directory}: another run is using this checkpoint folder (a scan into the same output?); "
                      "wait for it to finish, or write elsewhere")


def refuse_if_in_use(directory: str | Path) -> None:
    """Refuse a checkpoint folder that another run holds (:meth:`Checkpointer.in_use`'s lock) when the scan starts,
    before any image is read: it was refused only once training began, minutes of decoding later. The lock is
    taken and let go; ``in_use`` takes it for good, so a run that starts in between is still refused there."""
    try:
        import fcntl
    except ImportError:  # Windows: nothing is held, nothing to ask
        return
    try:
        fh = open(Path(directory) / LOCK_FILE, "rb")
    except OSError:  # no lock file: no run holds the folder
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise _in_use(directory) from None
        fcntl.flock(fh, fcntl.LOCK_UN)


def check_resumable(directory: str | Path) -> None:
    """Refuse ``--resume`` where ``directory`` holds no checkpoint (asked before any image is read)."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise UsageError(f"{path}: no checkpoint to resume from (run without {option('resume', True)} to start)")


def _saved_options(saved: dict[str, Any], changed: list[str]) -> str:
    """How to resume where only training options changed: ``resume with --lr 0.1 --no-augment, or `` (the
    checkpoint's values, as the caller spells them); empty where the dataset, the model or the trusted set changed,
    which no option brings back."""
    if not changed or any(k not in TRAINING_OPTIONS or saved.get(k) is None for k in changed):
        return ""
    return f"resume with {' '.join(option(k, saved[k]) for k in changed)}, or "


class Checkpointer:
    """Saves and restores training state under ``directory``.

    ``fingerprint`` describes the run (dataset hash and training options);
    :meth:`load` refuses a checkpoint whose fingerprint differs, naming what changed.
    """

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any], overwrite: bool = False):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self._stop: int | None = None
        self.overwrite = overwrite  # the run replaces its output: so must the run that resumes it

    def resume_advice(self, to: str = "continue") -> str:
        """How to go on from the checkpoint: ``run again with --resume to continue`` (``--overwrite`` too where
        the output exists), the scan's interrupt message and its failed final write alike."""
        also = f" {option('overwrite', True)}" if self.overwrite else ""
        return f"run again with {option('resume', True)}{also} to {to}"

    def kept(self, to: str) -> str:
        """What a scan stopped after training says of its checkpoint: where the trained run is, and
        :meth:`resume_advice`."""
        return f"the trained run is kept in {self.path}: {self.resume_advice(to)}"

    @property
    def path(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    def save(self, state: dict[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "fingerprint": self.fingerprint, "state": state}
        return atomic_write(self.path, lambda tmp: save_tensors(payload, tmp))

    def load(self) -> dict[str, Any]:
        """The saved state; a UsageError when there is none or it belongs to another run."""
        check_resumable(self.directory)
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a foreign or damaged file
            raise UsageError(f"{self.path}: not a readable noiseaudit checkpoint ({type(exc).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise UsageError(f"{self.path}: not a noiseaudit checkpoint of format {FORMAT}")
        saved = payload["fingerprint"]
        changed = sorted(k for k in set(saved) | set(self.fingerprint)
                         if k != "dataset_parts" and saved.get(k) != self.fingerprint.get(k))
        if changed:
            parts = [DATASET_PARTS[k] for k in DATASET_PARTS
                     if (saved.get("dataset_parts") or {}).get(k) != self.fingerprint.get("dataset_parts", {}).get(k)]
            dataset = f"the dataset's {' and '.join(parts)}" if "dataset_parts" in saved and parts else "the dataset"
            what = ", ".join(dataset if k == "dataset" else k for k in changed)
            raise UsageError(f"{self.path}: checkpoint was made for a different run (changed: {what}); "
                             f"{_saved_options(saved, changed)}run without {option('resume', True)} to start over")
        return payload["state"]

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold the folder for this run: a second run into the same checkpoint folder (two scans writing one
        report) would save over this one's checkpoints, and the first to finish delete them. A lock on a file in
        the folder (released by the system if the process dies) refuses the second one; where the platform has
        no ``fcntl`` locks, nothing is held."""
        try:
            import fcntl
        except ImportError:  # Windows
            try:
                yield
            finally:
                self._tidy()
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_FILE, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise _in_use(self.directory) from None
            try:
                yield
            finally:
                self._tidy()

    def _tidy(self) -> None:
        """Remove the folder where no checkpoint came of the run (a first save failed, resuming was refused):
        nothing in it to resume from but the lock."""
        if not self.path.exists():
            self.remove()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        (self.directory / LOCK_FILE).unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            pass  # not empty, or not ours to remove

    @property
    def stop_requested(self) -> int | None:
        """The signal number of a pending SIGINT/SIGTERM, if one arrived."""
        return self._stop

    @contextmanager
    def catching_signals(self) -> Iterator[None]:
        """While inside, SIGINT and SIGTERM only set :attr:`stop_requested` (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: Any) -> None:
            self._stop = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
