"""Signal recording and the choice of which learned rates rank (meta="auto")."""

from __future__ import annotations

import numpy as np
import torch

from noiseaudit.signals import SignalRecorder, choose_rates, disagreement_concentration


def _labels(rng: np.random.Generator, n: int, k: int, rate: float, pair: bool) -> tuple[np.ndarray, np.ndarray]:
    given = rng.integers(0, k, n)
    predicted = given.copy()
    wrong = rng.random(n) < rate
    shift = np.ones(n, dtype=int) if pair else rng.integers(1, k, n)
    predicted[wrong] = (given[wrong] + shift[wrong]) % k
    return given, predicted


def test_concentration_separates_scattered_from_paired_disagreements():
    rng = np.random.default_rng(0)
    scattered = disagreement_concentration(*_labels(rng, 5000, 10, 0.2, pair=False), 10)
    paired = disagreement_concentration(*_labels(rng, 5000, 10, 0.2, pair=True), 10)
    assert scattered < 0.1 and paired == 1.0


def test_concentration_is_unreadable_with_two_classes_or_few_disagreements():
    rng = np.random.default_rng(0)
    assert disagreement_concentration(*_labels(rng, 500, 2, 0.2, pair=True), 2) is None
    given, predicted = _labels(rng, 1000, 5, 0.01, pair=True)
    assert disagreement_concentration(given, predicted, 5) is None


def test_choose_rates_swaps_in_the_given_rates_when_disagreements_scatter():
    rng = np.random.default_rng(1)
    signals = {"learned_lr": np.full(2000, 2.0), "learned_lr_mean": np.full(2000, 2.5),
               "learned_lr_given": np.full(2000, 3.0), "learned_lr_given_mean": np.full(2000, 3.5),
               "loss": np.zeros(2000)}
    out, choice = choose_rates(signals, *_labels(rng, 2000, 10, 0.3, pair=False), 10)
    assert choice["meta"] == "given" and (out["learned_lr"] == 3.0).all() and (out["learned_lr_mean"] == 3.5).all()
    assert not any(k.startswith("learned_lr_given") for k in out)
    out, choice = choose_rates(signals, *_labels(rng, 2000, 10, 0.3, pair=True), 10)
    assert choice["meta"] == "given+predicted" and (out["learned_lr"] == 2.0).all()
    plain = {"loss": np.zeros(3)}
    assert choose_rates(plain, np.zeros(3, int), np.zeros(3, int), 3) == (plain, {})


def test_recorder_keeps_each_named_rate_and_its_visit_mean():
    rec = SignalRecorder(4, rate_names=("learned_lr", "learned_lr_given"))
    idx, y = torch.tensor([0, 2]), torch.tensor([0, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    rec.observe(idx, torch.tensor([0.1, 0.3]), logits, y, {"learned_lr": torch.tensor([0.5, 2.0])})
    rec.observe(idx, torch.tensor([0.3, 0.1]), logits, y,
                {"learned_lr": torch.tensor([0.25, 4.0]), "learned_lr_given": torch.tensor([3.0, 3.0])})
    s = rec.summary()
    np.testing.assert_allclose(s["learned_lr"], [0.25, 1.0, 4.0, 1.0])
    np.testing.assert_allclose(s["learned_lr_mean"], [0.375, 0.0, 3.0, 0.0])  # unvisited: 0
    np.testing.assert_allclose(s["learned_lr_given_mean"], [2.0, 0.0, 2.0, 0.0])  # 1 until first given
    np.testing.assert_allclose(s["loss"], [0.2, 0.0, 0.2, 0.0])
    np.testing.assert_allclose(s["margin"], [2.0, 0.0, 1.0, 0.0])
    other = SignalRecorder(4, rate_names=("learned_lr", "learned_lr_given"))
    other.load_state_dict(rec.state_dict())
    for key, value in other.summary().items():
        np.testing.assert_array_equal(value, s[key])
