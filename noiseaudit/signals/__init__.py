"""Per-sample signals recorded during training, and the choice of which rates rank."""

from noiseaudit.signals.recorder import SignalRecorder, margins
from noiseaudit.signals.structure import choose_rates, disagreement_concentration

__all__ = ["SignalRecorder", "choose_rates", "disagreement_concentration", "margins"]
