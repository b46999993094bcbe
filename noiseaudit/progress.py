"""What the stages that do long work (decoding, choosing the model, training) tell whoever shows progress.

A callback ``on_progress(stage, done, total, info)`` hears each stage by its name in :data:`STAGES`; the
command line draws it (``noiseaudit.cli.progress``), a notebook may pass its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

# on_progress(stage, done, total, info): a train step's info carries epoch, epochs and, at the end of an epoch, its
# mean loss; a decode or embed stage's is empty, or {"cached": True} when its work was read from the decode cache
ProgressCallback = Callable[[str, int, int, dict[str, Any]], None]


class StageProgress(Protocol):
    """How the data loader reports one stage: ``(done, total)``, with ``cached=True`` when it read the cache."""

    def __call__(self, done: int, total: int, cached: bool = False) -> None: ...


# each stage's name, and how a progress line says it
STAGES = {"decode": "decoding images", "embed": "embedding images",
          "choose": "choosing pretrained or from scratch (probe on a sample)", "train": "training"}


def stage_progress(on_progress: ProgressCallback | None, stage: str) -> StageProgress | None:
    """``on_progress`` narrowed to one stage, as the data loader calls it."""
    if on_progress is None:
        return None

    def report(done: int, total: int, cached: bool = False) -> None:
        on_progress(stage, done, total, {"cached": True} if cached else {})
    return report
