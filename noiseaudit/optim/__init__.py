"""Optimizers over per-sample quantities."""

from noiseaudit.optim.per_sample_rate import (
    META_OBJECTIVES,
    PerSampleRate,
    class_conditional_alignment,
    class_reference_update,
    last_layer_gram,
    per_sample_rate_step,
    probability_margin,
    reference_alignment,
    reference_cosines,
    reference_dots,
    with_bias,
)

__all__ = ["META_OBJECTIVES", "PerSampleRate", "class_conditional_alignment", "class_reference_update",
           "last_layer_gram", "per_sample_rate_step", "probability_margin", "reference_alignment", "reference_cosines",
           "reference_dots", "with_bias"]
