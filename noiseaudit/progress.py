"""What the stages that do long work (decoding, choosing the model, training) tell whoever shows progress.

A callback ``on_progress(stage, done, total, info)`` hears each stage by its name in :data:`STAGES`; the
command line draws it (``noiseaudit.cli.progress``), a notebook may pass its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# on_progress(stage, done, total, info): a train step's info carries epoch, epochs and, at the end of an epoch, its
# mean loss; the other stages' info is empty
ProgressCallback = Callable[[str, int, int, dict[str, Any]], None]

# each stage's name, and how a progress line says it
STAGES = {"decode": "decoding images", "embed": "embedding images",
          "choose": "choosing pretrained or from scratch (probe on a sample)", "train": "training"}
