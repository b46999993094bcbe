"""The field's standard recipe on fixed embeddings, for the benchmarks to beat.

- ``cleanlab_logreg``: PCA, 5-fold cross-validated logistic regression, then cleanlab 2.x
  (``get_label_quality_scores`` ranks, ``find_label_issues`` flags);
- ``cleanlab_probs``: cleanlab on out-of-fold probabilities from any model (e.g. our own head);
- ``knn_vote``: the share of a sample's 20 nearest neighbours (cosine) that carry its label.

Every function returns per-sample scores (higher = more suspect) and, where the method has
one, a boolean flag vector. Bench-only: needs ``pip install cleanlab==2.9.0``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler


def out_of_fold(features: np.ndarray, labels: np.ndarray, fit_predict: Callable[[np.ndarray, np.ndarray,
                np.ndarray], np.ndarray], seed: int = 0, folds: int = 5) -> np.ndarray:
    """(N, K) probabilities, each row from the fold model that did not see it."""
    probs = np.zeros((labels.size, int(labels.max()) + 1), dtype=np.float64)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels):
        probs[test] = fit_predict(features[train], labels[train], features[test])
    return probs


def logreg_fit_predict(pca_dim: int = 256, seed: int = 0) -> Callable[[np.ndarray, np.ndarray, np.ndarray],
                                                                       np.ndarray]:
    """Standardise, PCA to ``pca_dim``, multinomial logistic regression (lbfgs, C=1)."""
    def fit_predict(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        scaler = StandardScaler().fit(x_fit)
        pca = PCA(min(pca_dim, x_fit.shape[1]), random_state=seed).fit(scaler.transform(x_fit))
        clf = LogisticRegression(max_iter=1000).fit(pca.transform(scaler.transform(x_fit)), y_fit)
        out = np.zeros((len(x_test), int(y_fit.max()) + 1))
        out[:, clf.classes_] = clf.predict_proba(pca.transform(scaler.transform(x_test)))
        return out

    return fit_predict


def cleanlab_probs(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's label-quality ranking (as suspicion, higher = more suspect) and its flags."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    return -get_label_quality_scores(labels, probs), find_label_issues(labels, probs)


def cleanlab_logreg(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """The standard recipe end to end: scores, flags, and the seconds the cross-validation took."""
    t0 = time.perf_counter()
    probs = out_of_fold(features.astype(np.float32), labels, logreg_fit_predict(seed=seed), seed)
    scores, flags = cleanlab_probs(labels, probs)
    return {"scores": scores, "flags": flags, "seconds": time.perf_counter() - t0, "probs": probs}


def knn_vote(features: np.ndarray, labels: np.ndarray, k: int = 20) -> np.ndarray:
    """1 - the share of the k nearest neighbours (cosine, itself excluded) that carry the sample's label."""
    x = features.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    agree = np.zeros(len(x))
    for start in range(0, len(x), 2048):
        sims = x[start:start + 2048] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        nearest = np.argpartition(-sims, k, axis=1)[:, :k]
        agree[start:start + 2048] = (labels[nearest] == labels[start:start + 2048, None]).mean(axis=1)
    return 1.0 - agree
