"""The ranking, and how many samples to flag: a given noise rate, or one estimated from the scores.

Samples are ranked by a score, lower = more suspect: the log learned rate
(``learned-lr``), or minus the mean loss (``plain``), ties broken by higher loss.
Without ``--noise-rate`` a two-component Gaussian mixture is fitted, not to the
scores themselves, but to their log distance below the top of the score range,
u = log(top - score + delta) (top = the 99.5th percentile, delta = a fifth of
top - median). Clean samples pile up against the top with a long tail of hard
ones; a Gaussian fitted to the raw scores spends a component on that tail
(Fashion-MNIST, 20% symmetric noise: 37% of the samples in the low component,
estimate 0.30), while in u the clean pile is one compact mode (19%, estimate
0.18).
The component with the higher mean in u models the wrongly labelled samples;
a sample's *suspicion* is its posterior probability under that component,
made non-increasing along the ranking. Two counts bracket the number of wrong
labels: the samples with suspicion above 0.5 over-count (hard but correctly
labelled samples sit in the low tail too), and those of them whose given label
the final model also disagrees with under-count (wrong labels the model has
memorised agree with it). Which one is used:

- components not well separated (Ashman's D = sqrt(2)|mu1 - mu2| / sqrt(s1^2 + s2^2)
  below 2): the scores are not bimodal, the mixture only splits one clean
  mode; the lower count;
- the model agrees with nine in ten of the low component or more (upper >= 10
  x lower): that component is hard clean samples, as on a dataset that has
  already been cleaned (instance-dependent noise reaches 4.5x); the lower count;
- the model disputes most of it (upper < 2 x lower: symmetric, pair-flip
  noise): it is wrong labels, all counted, but no further than the valley of a
  kernel density estimate of u between the near component's mean and the far
  mode, if it has one: when clean scores spread wide rather than pile up at
  the top, the far Gaussian takes in part of that spread (Fashion-MNIST sample
  scan: 1,729 above 0.5, 883 beyond the valley, 800 wrong labels);
- otherwise (instance-dependent noise): the midpoint of the two counts.

With a pretrained backbone (``trust_disagreements``) the count is the samples
whose given label the final model disputes. On real human noise the scores
are unimodal: their density has no valley between the two components, and a
mixture fitted to them splits one mode at an arbitrary point (it put 45% to
64% of CIFAR-10N photos in the low component, against 9% to 41% wrong). Such
a model starts from features that already separate the classes and memorises
few wrong labels within its short training, so its disagreements count them:
with the default fine-tune (4 epochs, predicting with the mean of the last
epoch's weights; :mod:`noiseaudit.optim.averaging`) 0.374 / 0.116 / 0.191 of
10k CIFAR-10N photos for ``worse`` / ``aggre`` / ``random1``, against 0.410 /
0.091 / 0.178 wrong. That holds where a deeper fine-tune does give the scores
a valley: on 10k ``random1`` photos with 6 epochs of ``deep`` the rules above
counted 0.303 (the midpoint), the disagreements 0.180, against 0.178 wrong.

That many samples from the top of the ranking are flagged, so the
flagged set is always a prefix of the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from noiseaudit.config import AGREED, DISPUTED, MIDPOINT, NOT_BIMODAL, VALLEY


@dataclass
class Threshold:
    method: str  # "noise-rate", "gmm" or "disagreements" ("none": see unranked)
    n_flagged: int
    estimated_noise_rate: float
    cutoff: float  # the score of the last flagged sample in rank order; nan if none
    suspicion: np.ndarray
    order: np.ndarray  # sample indices, most suspect first
    counts: tuple[int, int] = (0, 0)  # (upper, lower) bracketing counts of the automatic threshold
    rule: str = ""  # which of the automatic count's rules chose it (MIDPOINT, ...); "" for the other methods


def unranked(n: int) -> Threshold:
    """A placeholder for ``n`` samples kept out of the ranking (trusted ones): none flagged, no suspicion."""
    return Threshold("none", 0, 0.0, float("nan"), np.zeros(n), np.arange(n))


def reranked(threshold: Threshold, score: np.ndarray, loss: np.ndarray) -> Threshold:
    """``threshold``'s count and suspicions on another ranking, by ``score`` (lower = more suspect): the
    k-th most suspect sample gets the k-th highest suspicion, and the first ``n_flagged`` are flagged."""
    order = rank_order(np.asarray(score, dtype=np.float64), loss)
    suspicion = np.empty_like(threshold.suspicion)
    suspicion[order] = np.sort(threshold.suspicion)[::-1]
    n = threshold.n_flagged
    cutoff = float(score[order[n - 1]]) if n else float("nan")
    return replace(threshold, cutoff=cutoff, suspicion=suspicion, order=order)


def rank_sum(*scores: np.ndarray) -> np.ndarray:
    """Lower = more suspect: the sum of each score's ranks (0 for its lowest value, ties in order)."""
    return sum(np.argsort(np.argsort(np.asarray(s, dtype=np.float64), kind="stable"), kind="stable")
               for s in scores).astype(np.float64)


def rank_order(score: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Sample indices from most to least suspect: lowest score first, ties broken by higher loss."""
    return np.lexsort((-loss, score))


BIMODAL_D = 2.0
MAX_UPPER_PER_LOWER = 10  # at or above: the low component is hard clean samples the model agrees with
MOSTLY_DISPUTED = 2  # below: the model disputes most of the low component, which is then all wrong labels
TOP_PERCENTILE, DELTA_FRACTION = 99.5, 0.2


def distance_below_top(score: np.ndarray) -> np.ndarray | None:
    """u = log(top - score + delta), decreasing in the score; None when the scores have no spread."""
    top = np.percentile(score, TOP_PERCENTILE)
    spread = top - np.median(score)
    if not spread > 1e-9:
        return None
    return np.log(np.clip(top - score, 0.0, None) + DELTA_FRACTION * spread)


def _suspicion(score: np.ndarray, order: np.ndarray,
               seed: int) -> tuple[np.ndarray, float, np.ndarray | None, tuple[float, float]]:
    """Posterior of the low component (non-increasing along ``order``), Ashman's D of the fit, the
    fitted u (None when the scores have no spread) and the (near, far) component means in u."""
    u = distance_below_top(score) if score.size >= 4 and np.ptp(score) >= 1e-6 else None
    if u is None:
        return np.zeros_like(score, dtype=np.float64), 0.0, None, (0.0, 0.0)
    from sklearn.mixture import GaussianMixture  # a second and more of start-up: only when the count is fitted

    gmm = GaussianMixture(n_components=2, random_state=seed, reg_covar=1e-6).fit(u[:, None])
    far = int(np.argmax(gmm.means_[:, 0]))  # far below the top: the low-score component
    post = gmm.predict_proba(u[:, None])[:, far]
    out = np.empty_like(post)
    # running max from the least suspect end: with unequal variances the wider Gaussian wins again far out
    # in the tail, an artefact that must not make the most suspect samples look less so
    out[order[::-1]] = np.maximum.accumulate(post[order[::-1]])
    mu, var = gmm.means_[:, 0], gmm.covariances_.ravel()
    separation = float(np.sqrt(2.0) * abs(mu[0] - mu[1]) / np.sqrt(var.sum()))
    return out, separation, u, (float(mu.min()), float(mu.max()))


def density_valley(u: np.ndarray, near: float, far: float, bins: int = 1024) -> float | None:
    """The lowest point of a Gaussian kernel density estimate of ``u`` between ``near`` and the far mode.

    The far mode is the density's highest point at or beyond ``far`` (the far component's mean; a pile
    of wrong labels can peak past it). The density is binned (linear in the number of samples) and
    smoothed with Silverman's bandwidth. None when there is no valley: the lowest point is at either end.
    """
    iqr = float(np.subtract(*np.percentile(u, [75, 25])))
    spread = min(float(u.std()), iqr / 1.34) or float(u.std())
    h = 0.9 * spread * u.size ** -0.2
    counts, edges = np.histogram(u, bins=bins)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    if not (h > 0 and width > 0):
        return None
    half = min(int(np.ceil(4 * h / width)), (bins - 1) // 2)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * width / h) ** 2)
    density = np.convolve(counts, kernel, mode="same")
    beyond = np.flatnonzero(centres >= far)
    if beyond.size == 0:
        return None
    mode = int(beyond[np.argmax(density[beyond])])
    inside = np.flatnonzero(centres >= near)
    inside = inside[inside <= mode]
    lowest = int(np.argmin(density[inside])) if inside.size else 0
    if not 0 < lowest < inside.size - 1:
        return None
    return float(centres[inside[lowest]])


def choose_threshold(score: np.ndarray, loss: np.ndarray, disagrees: np.ndarray | None = None,
                     noise_rate: float | None = None, seed: int = 0,
                     trust_disagreements: bool = False) -> Threshold:
    """The ranking, a suspicion for every sample, and the number to flag (a prefix of the ranking).

    ``score`` is lower for more suspect samples (e.g. the log learned rate);
    ``disagrees`` marks samples whose given label differs from the final
    model's prediction (all True if omitted). ``trust_disagreements`` (a
    pretrained model) counts those disagreements, whatever the shape of the scores.
    """
    score = np.asarray(score, dtype=np.float64)
    n = score.size
    order = rank_order(score, loss)
    suspicion, separation, u, (near, far) = _suspicion(score, order, seed)
    upper = lower = 0
    method, rule = "gmm", ""
    if noise_rate is not None:
        n_flagged, method = int(round(noise_rate * n)), "noise-rate"
    else:
        counted = np.ones(n, dtype=bool) if disagrees is None else np.asarray(disagrees, dtype=bool)
        upper = int((suspicion > 0.5).sum())
        lower = int(((suspicion > 0.5) & counted).sum())
        if trust_disagreements and disagrees is not None:
            n_flagged, method = int(counted.sum()), "disagreements"  # a pretrained model
        elif separation < BIMODAL_D or upper >= MAX_UPPER_PER_LOWER * lower:
            # one clean mode split in two, or a low mode of hard clean samples
            n_flagged, rule = lower, NOT_BIMODAL if separation < BIMODAL_D else AGREED
        elif upper < MOSTLY_DISPUTED * lower:  # the model disputes most of the low component
            valley = None if u is None else density_valley(u, near, far)
            n_flagged = upper if valley is None else min(upper, int((u > valley).sum()))
            rule = DISPUTED if n_flagged == upper else VALLEY
        else:
            n_flagged, rule = (upper + lower + 1) // 2, MIDPOINT
    cutoff = float(score[order[n_flagged - 1]]) if n_flagged else float("nan")
    return Threshold(method, n_flagged, n_flagged / n if n else 0.0, cutoff, suspicion, order, (upper, lower), rule)
