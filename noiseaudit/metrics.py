"""Detection metrics of a ranking and a flagged set against known wrong labels."""

from __future__ import annotations

import numpy as np


def precision_recall_f1(is_noisy: np.ndarray, flagged: np.ndarray) -> tuple[float, float, float]:
    is_noisy, flagged = np.asarray(is_noisy, bool), np.asarray(flagged, bool)
    tp = int((is_noisy & flagged).sum())
    precision = tp / flagged.sum() if flagged.any() else 0.0
    recall = tp / is_noisy.sum() if is_noisy.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def ranking_metrics(is_noisy: np.ndarray, score: np.ndarray, k: int | None = None) -> dict[str, float]:
    """AUROC, average precision and precision/recall at k.

    Parameters
    ----------
    is_noisy : array of bool, shape (N,)
        The truth: which labels are wrong.
    score : array of float, shape (N,)
        Higher for more suspect samples (for a report, ``-rank``).
    k : int, optional
        How many of the top-scored samples precision@k and recall@k look at (default: the true
        noisy count, where the two are equal).

    Returns
    -------
    dict
        ``auroc``, ``average_precision``, ``precision_at_k``, ``recall_at_k`` and ``k``. AUROC
        and AP are nan when the truth has a single class.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score  # a second of start-up: only when scoring

    is_noisy = np.asarray(is_noisy, bool)
    score = np.asarray(score, dtype=np.float64)
    both = 0 < is_noisy.sum() < is_noisy.size
    k = int(is_noisy.sum()) if k is None else int(k)
    top = np.argsort(-score, kind="stable")[:k]
    hits = int(is_noisy[top].sum())
    return {
        "auroc": float(roc_auc_score(is_noisy, score)) if both else float("nan"),
        "average_precision": float(average_precision_score(is_noisy, score)) if both else float("nan"),
        "precision_at_k": hits / k if k else float("nan"),
        "recall_at_k": hits / int(is_noisy.sum()) if is_noisy.any() else float("nan"),  # a float, not np.float64
        "k": k,
    }


def detection_metrics(is_noisy: np.ndarray, score: np.ndarray, flagged: np.ndarray,
                      k: int | None = None) -> dict[str, float]:
    """Precision, recall and F1 of ``flagged`` plus :func:`ranking_metrics` of ``score``.

    Parameters
    ----------
    is_noisy : array of bool, shape (N,)
        The truth: which labels are wrong.
    score : array of float, shape (N,)
        Higher for more suspect samples.
    flagged : array of bool, shape (N,)
        The flagged set (a report's ``is_suspect``).
    k : int, optional
        As for :func:`ranking_metrics`.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` and the keys of :func:`ranking_metrics`.
    """
    precision, recall, f1 = precision_recall_f1(is_noisy, flagged)
    return {"precision": precision, "recall": recall, "f1": f1, **ranking_metrics(is_noisy, score, k)}
