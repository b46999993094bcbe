"""--balance-classes: training on the logits plus log(class frequency), ranking with the logits alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

from noiseaudit.scan import scan_features
from noiseaudit.train import class_prior_shift


def test_the_shift_is_the_log_of_each_class_share():
    shift = class_prior_shift(torch.tensor([0, 0, 0, 1, 2, 2, 0, 0]), 3)
    assert shift.tolist() == pytest.approx([math.log(5 / 8), math.log(1 / 8), math.log(2 / 8)])


@pytest.fixture(scope="module")
def long_tail() -> tuple[np.ndarray, np.ndarray]:
    """sklearn digits cut to a long tail: 178 zeros down to 8 nines."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == d))[:int(300 * 0.6 ** d) + 5] for d in range(10)])
    return x[keep].astype(np.float32), y[keep]


def test_balanced_training_predicts_the_small_classes_it_disputed(long_tail):
    """Trained plainly, the model predicted the five smallest digits (85 samples) for 15 samples: nearly every one of
    them was disputed, so flagged, for being rare. Balanced, it predicts them for several times as many."""
    x, y = long_tail
    small = y >= 5
    counts = {}
    for balanced in (False, True):
        report = scan_features(x, pd.DataFrame({"label": y}), seed=0, device="cpu", balance_classes=balanced)
        counts[balanced] = int(report["predicted_label"].isin(range(5, 10)).sum())
        assert report.attrs["noiseaudit"]["config"]["balance_classes"] is balanced
    assert counts[False] < 0.25 * small.sum() and counts[True] >= 3 * counts[False], counts


def test_on_balanced_labels_it_changes_nothing(long_tail):
    """The shift is then one constant for every class, which the softmax ignores."""
    x, y = load_digits(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == d)[:170] for d in range(10)])  # 170 of each digit
    labels = pd.DataFrame({"label": y[keep]})
    plain = scan_features(x[keep].astype(np.float32), labels, seed=0, device="cpu", epochs=3)
    balanced = scan_features(x[keep].astype(np.float32), labels, seed=0, device="cpu", epochs=3, balance_classes=True)
    assert np.allclose(plain["given_prob"], balanced["given_prob"], atol=1e-5)
    assert (plain["rank"] == balanced["rank"]).mean() > 0.99
    assert plain["is_suspect"].sum() == balanced["is_suspect"].sum()


def test_the_switch_is_validated():
    from noiseaudit.config import ScanConfig
    from noiseaudit.errors import UsageError

    ScanConfig(images_dir=None, balance_classes=True).validate()
    with pytest.raises(UsageError, match="balance_classes must be True or False"):
        ScanConfig(images_dir=None, balance_classes="yes").validate()
