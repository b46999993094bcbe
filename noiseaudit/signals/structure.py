"""Which learned rates to rank by, read off the structure of the model's disagreements.

Symmetric noise scatters wrong labels over every other class; pair-flip and
instance-dependent noise send each class's wrong labels mostly to one
neighbour. Among the samples whose predicted class differs from the given one,
the share that goes to each given class's most common predicted class tells
the two apart. Rescaled so that uniform scattering over the K-1 other classes
is 0 and one target per class is 1, measured values were 0.04-0.10 under
symmetric noise, 0.44-0.54 under instance noise and 0.77-0.99 under pair-flip
noise (Fashion-MNIST, MNIST, digits; see bench/results/detect.md).
"""

from __future__ import annotations

import numpy as np

CONCENTRATION_CUTOFF = 0.25  # rank by the given+predicted rates at or above this
MIN_DISAGREEMENTS = 20  # fewer than this and the structure is not read (the given rates rank)


def disagreement_concentration(given: np.ndarray, predicted: np.ndarray, num_classes: int) -> float | None:
    """Concentration in [0, 1] of given -> predicted disagreements; None when unreadable.

    None with fewer than three classes (every disagreement then has one target)
    or fewer than ``MIN_DISAGREEMENTS`` disagreements.
    """
    wrong = given != predicted
    if num_classes < 3 or int(wrong.sum()) < MIN_DISAGREEMENTS:
        return None
    pairs = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(pairs, (given[wrong], predicted[wrong]), 1)
    share = pairs.max(axis=1).sum() / pairs.sum()
    uniform = 1.0 / (num_classes - 1)
    return float(np.clip((share - uniform) / (1.0 - uniform), 0.0, 1.0))


def choose_rates(signals: dict[str, np.ndarray], given: np.ndarray, predicted: np.ndarray,
                 num_classes: int) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Resolve ``meta="auto"``: put the chosen rates under ``learned_lr`` (and its ``_mean`` etc.).

    Returns the signals (a new dict; unchanged when there is nothing to choose)
    and a record of the choice for the report's metadata.
    """
    if "learned_lr_given" not in signals:
        return signals, {}
    concentration = disagreement_concentration(given, predicted, num_classes)
    use_predicted = concentration is not None and concentration >= CONCENTRATION_CUTOFF
    out = {k: v for k, v in signals.items() if not k.startswith("learned_lr_given")}
    if not use_predicted:  # learned_lr_given[_mean|_large|_small] -> learned_lr[...]
        out.update({k.replace("learned_lr_given", "learned_lr"): v for k, v in signals.items()
                    if k.startswith("learned_lr_given")})
    return out, {"meta": "given+predicted" if use_predicted else "given", "concentration": concentration,
                 "cutoff": CONCENTRATION_CUTOFF}
