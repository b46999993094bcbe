"""Per-sample signals recorded during training."""

from noiseaudit.signals.recorder import SignalRecorder, margins

__all__ = ["SignalRecorder", "margins"]
