"""Optimizers over per-sample quantities."""

from noiseaudit.optim.per_sample_rate import (
    PerSampleRate,
    class_conditional_alignment,
    last_layer_gram,
    per_sample_rate_step,
)

__all__ = ["PerSampleRate", "class_conditional_alignment", "last_layer_gram", "per_sample_rate_step"]
