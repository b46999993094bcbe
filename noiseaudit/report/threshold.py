"""The ranking, and how many samples to flag: a given noise rate, or one estimated from the scores.

Samples are ranked by a score, lower = more suspect: the log learned rate
(``learned-lr``), or minus the mean loss (``plain``), ties broken by higher loss.
Without ``--noise-rate`` a two-component Gaussian mixture is fitted to the
scores. The component with the lower mean models the wrongly
labelled samples; a sample's *suspicion* is its posterior probability under
that component, made non-increasing in the rate. The estimated number of
wrong labels counts the samples with suspicion above 0.5 *and* whose given
label the final model disagrees with (hard but correctly labelled samples
sit in the low-rate tail too, but the model still predicts their label). That
many samples from the top of the ranking are flagged, so the flagged set is
always a prefix of the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture


@dataclass
class Threshold:
    method: str  # "noise-rate" or "gmm"
    n_flagged: int
    estimated_noise_rate: float
    cutoff: float  # the score of the last flagged sample in rank order; nan if none
    suspicion: np.ndarray
    order: np.ndarray  # sample indices, most suspect first


def rank_order(score: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Sample indices from most to least suspect: lowest score first, ties broken by higher loss."""
    return np.lexsort((-loss, score))


def _suspicion(score: np.ndarray, order: np.ndarray, seed: int) -> np.ndarray:
    if score.size < 4 or np.ptp(score) < 1e-6:
        return np.zeros_like(score, dtype=np.float64)
    gmm = GaussianMixture(n_components=2, random_state=seed, reg_covar=1e-6).fit(score[:, None])
    low = int(np.argmin(gmm.means_[:, 0]))
    post = gmm.predict_proba(score[:, None])[:, low]
    out = np.empty_like(post)
    out[order] = np.minimum.accumulate(post[order])
    return out


def choose_threshold(score: np.ndarray, loss: np.ndarray, disagrees: np.ndarray | None = None,
                     noise_rate: float | None = None, seed: int = 0) -> Threshold:
    """The ranking, a suspicion for every sample, and the number to flag (a prefix of the ranking).

    ``score`` is lower for more suspect samples (e.g. the log learned rate);
    ``disagrees`` marks samples whose given label differs from the final
    model's prediction (all True if omitted).
    """
    score = np.asarray(score, dtype=np.float64)
    n = score.size
    order = rank_order(score, loss)
    suspicion = _suspicion(score, order, seed)
    if noise_rate is None:
        counted = np.ones(n, dtype=bool) if disagrees is None else np.asarray(disagrees, dtype=bool)
        n_flagged, method = int(((suspicion > 0.5) & counted).sum()), "gmm"
    else:
        n_flagged, method = int(round(noise_rate * n)), "noise-rate"
    cutoff = float(score[order[n_flagged - 1]]) if n_flagged else float("nan")
    return Threshold(method, n_flagged, n_flagged / n if n else 0.0, cutoff, suspicion, order)
