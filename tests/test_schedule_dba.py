"""Two-regime and other LR schedules, and Dynamic Batch Adaptation, on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noiseaudit import scan
from noiseaudit.models import MLP
from noiseaudit.optim.dba import DynamicBatchAdaptation, cosine, select_subset
from noiseaudit.optim.per_sample_rate import last_layer_gram
from noiseaudit.optim.schedule import LRSchedule


def test_constant_cosine_and_step_factors():
    assert LRSchedule("constant", 10, 5).factor(9, 4) == 1.0
    cos = LRSchedule("cosine", 10, 5)
    assert cos.factor(0, 0) == 1.0 and math.isclose(cos.factor(5, 0), 0.5) and cos.factor(9, 4) < 0.01
    step = LRSchedule("step", 8, 5, small=0.1)
    assert [step.factor(e, 0) for e in range(8)] == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_two_regime_switches_when_the_loss_plateaus():
    s = LRSchedule("two-regime", 10, 5, plateau=0.05, min_large=2)
    losses: list[float] = []
    switched = []
    for loss in (2.0, 1.0, 0.7, 0.68, 0.6, 0.5):
        losses.append(loss)
        switched.append(s.end_epoch(losses))
    assert switched == [False, False, False, True, False, False]  # 0.70 -> 0.68 is under a 5% drop
    assert s.switch_epoch == 4 and s.factor(3, 0) == 1.0 and s.factor(4, 0) == 0.1
    restored = LRSchedule("two-regime", 10, 5)
    restored.load_state_dict(s.state_dict())
    assert restored.switch_epoch == 4


def test_two_regime_switch_is_forced_so_that_a_small_regime_exists():
    s = LRSchedule("two-regime", 10, 5, max_large=0.7)
    losses = [1.0 / (e + 1) for e in range(10)]  # never plateaus
    switches = [s.end_epoch(losses[: e + 1]) for e in range(10)]
    assert switches.index(True) == 6 and sum(switches) == 1


def _metric(gram: torch.Tensor, keep: torch.Tensor) -> float:
    g = cosine(gram.double())[keep][:, keep]
    return float(g.diagonal().sum() / g.sum() - 1.0 / int(keep.sum()))


def test_greedy_selection_is_a_local_optimum_of_the_stated_metric():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(16, 6, generator=g) + torch.tensor([5.0, 0, 0, 0, 0, 0])
    grads[:3] *= -1.0  # three samples pull the other way
    gram = grads @ grads.T
    keep = select_subset([gram], min_keep=2)
    assert not keep[:3].any() and keep[3:].sum() >= 8
    best = _metric(gram, keep)
    for k in torch.nonzero(keep).flatten():  # no single removal improves it
        trial = keep.clone()
        trial[k] = False
        assert _metric(gram, trial) >= best - 1e-12


def test_min_keep_bounds_the_subset():
    g = torch.Generator().manual_seed(1)
    grads = torch.randn(20, 4, generator=g)
    assert select_subset([grads @ grads.T], min_keep=15).sum() >= 15


def test_hidden_layer_gram_equals_explicit_per_sample_gradients():
    torch.manual_seed(0)
    model = MLP(12, 3, hidden=5)
    x, y = torch.randn(7, 12), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    dba = DynamicBatchAdaptation(model)
    captured = {}
    original = dba._remember

    def spy(module, args, out):
        original(module, args, out)
        captured.update(dba._seen)
    dba._handle.remove()
    dba._handle = model.hidden[1].register_forward_hook(spy)
    feats = model.forward_features(x)
    losses = F.cross_entropy(model.head(feats), y, reduction="none")
    (delta,) = torch.autograd.grad(losses.sum(), captured["output"], retain_graph=True)
    closed = last_layer_gram(delta, captured["input"])
    rows = []
    for i in range(7):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        layer = model.hidden[1]
        rows.append(torch.cat([layer.weight.grad.flatten(), layer.bias.grad]))
    explicit = torch.stack(rows)
    torch.testing.assert_close(closed, explicit @ explicit.T, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory):
    from conftest import write_digits

    return write_digits(tmp_path_factory.mktemp("small"), rate=0.2, seed=1)


def test_scan_with_dba_records_selection_and_ranks_by_it(small_digits):
    images, csv = small_digits
    report = scan(images, csv, label_col="digit", method="dba", epochs=3, device="cpu", workers=1)
    frac = report["dba_selected_frac"].to_numpy()
    assert ((frac >= 0) & (frac <= 1)).all() and 0.2 < frac.mean() < 1.0
    assert (report["learned_lr"] == 1.0).all()
    top = report.sort_values("rank")["dba_selected_frac"].to_numpy()
    assert np.all(np.diff(top) >= 0)  # ranked by selection frequency, lowest first
    assert report.attrs["noiseaudit"]["threshold"]["ranked_by"] == "dba_selected_frac"


def test_scan_with_two_regime_reports_both_regimes(small_digits):
    images, csv = small_digits
    report = scan(images, csv, label_col="digit", schedule="two-regime", epochs=6, device="cpu", workers=1)
    meta = report.attrs["noiseaudit"]
    assert 2 <= meta["two_regime_switch_epoch"] <= 5
    np.testing.assert_allclose(report["learned_lr"], report["learned_lr_large"] * report["learned_lr_small"],
                               rtol=1e-5)
    truth = report["given_label"] != report["original_label"]
    from sklearn.metrics import average_precision_score

    assert average_precision_score(truth, -np.log(report["learned_lr"])) > 0.9
