"""MLR-SNet (shipped weights, meta-gradient) and layer-wise rates (the formulas, the trainer, resume, CLI)."""

from __future__ import annotations

import math
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from noiseaudit import read_report, scan
from noiseaudit.checkpoint import Interrupted
from noiseaudit.cli import app
from noiseaudit.optim.layerwise import LayerwiseRates, layer_groups
from noiseaudit.optim.mlr_snet import MLRSNet, MLRSNetSchedule, gamma, load_shipped, meta_objective
from noiseaudit.optim.schedule import LRSchedule

OPTIONS = dict(epochs=3, seed=5, device="cpu", workers=1, label_col="digit")


def test_shipped_weights_load_and_give_a_rate_inside_the_bound():
    net = load_shipped()
    assert not any(p.requires_grad for p in net.parameters())
    assert sum(p.numel() for p in net.parameters()) == 11_776  # LSTM 50 units, gate MLPs 25 -> 200, Linear(50, 1)
    schedule = MLRSNetSchedule(num_classes=10)
    rates = [schedule.rate(loss) for loss in np.linspace(2.3, 0.05, 200)]
    bound = gamma(2.3, 10)
    assert schedule.gamma == pytest.approx(bound) and 0 < bound < 1
    assert all(0.0 < r < bound for r in rates)
    assert len({round(r, 8) for r in rates}) > 1  # the hidden state and the input change the rate


def test_gamma_follows_the_formula():
    assert gamma(math.log(10), 10) == pytest.approx(math.sqrt(math.log(10)) * math.log(10 * math.log(10))
                                                    / (4 * 10 ** 0.25))
    assert gamma(1e-6, 10) > 0  # C * L0 < 1 would make the log negative: kept positive


def test_mlr_snet_schedule_state_round_trips_mid_run():
    a = LRSchedule("mlr-snet", 5, 10, base_lr=0.05, num_classes=10)
    for loss in (2.3, 2.0, 1.7):
        a.factor(0, 0, loss)
    b = LRSchedule("mlr-snet", 5, 10, base_lr=0.05, num_classes=10)
    b.load_state_dict(a.state_dict())
    assert [a.factor(0, 3, 1.5), a.factor(0, 4, 1.4)] == [b.factor(0, 3, 1.5), b.factor(0, 4, 1.4)]
    with pytest.raises(ValueError, match="mean loss"):
        a.factor(0, 5)


def _toy_meta_problem() -> tuple:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 3, (32,))
    mx, my = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):  # momentum buffers exist
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    net = MLRSNet().double()
    state = tuple(s.double() for s in net.initial_state())
    return net, state, loss.detach(), model, opt, mx, my


def test_meta_gradient_matches_a_finite_difference_and_its_step_lowers_the_meta_loss():
    net, state, loss, model, opt, mx, my = _toy_meta_problem()

    def meta() -> torch.Tensor:
        return meta_objective(net, state, loss, 0.5, model, opt, mx, my, 0.9, 5e-4)

    value = meta()
    grads = torch.autograd.grad(value, list(net.parameters()))
    direction = [g / torch.cat([h.flatten() for h in grads]).norm() for g in grads]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
    eps = 1e-5
    with torch.no_grad():
        for p, d in zip(net.parameters(), direction):
            p.add_(eps * d)
        plus = float(meta())
        for p, d in zip(net.parameters(), direction):
            p.sub_(2 * eps * d)
        minus = float(meta())
        for p, d in zip(net.parameters(), direction):
            p.add_(eps * d)
    assert analytic == pytest.approx((plus - minus) / (2 * eps), rel=1e-4)
    step = torch.optim.SGD(net.parameters(), lr=1e-2)
    step.zero_grad()
    meta().backward()
    step.step()
    assert float(meta().detach()) < float(value.detach())  # the meta step moved the net downhill


def _toy_layers() -> tuple[nn.Module, torch.optim.Optimizer, LayerwiseRates]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = torch.optim.SGD(layer_groups(model, [{"params": list(model.parameters()), "lr_scale": 1.0}]), lr=0.1)
    return model, opt, LayerwiseRates(opt.param_groups)


def test_grad_norm_multipliers_match_the_formula_on_a_toy_model():
    model, opt, lw = _toy_layers()
    assert [g["layer"] for g in opt.param_groups] == ["0", "2"] and lw.layers == ["0", "2"]
    F.cross_entropy(model(torch.randn(10, 4)), torch.randint(0, 3, (10,))).backward()
    got = lw.multipliers([0.1, 0.1])
    for layer, m in zip((model[0], model[2]), got):
        norm = torch.cat([layer.weight.grad.flatten(), layer.bias.grad.flatten()]).norm()
        assert float(m) == pytest.approx(1 + math.log(1 + 1 / (float(norm) + 1e-8)), rel=1e-9)


def test_secant_rule_recovers_a_quadratics_curvature():
    theta = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    other = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    groups = [{"params": [theta], "layer": "a"}, {"params": [other], "layer": "b"}]
    opt = torch.optim.SGD(groups, lr=0.05)
    lw = LayerwiseRates(opt.param_groups, rule="secant")
    kappa = (4.0, 0.5)
    for step in range(4):
        opt.zero_grad()
        (0.5 * kappa[0] * (theta ** 2).sum() + 0.5 * kappa[1] * (other ** 2).sum()).backward()
        m = lw.multipliers([0.05, 0.05])
        if step == 0:
            assert m.tolist() == [1.0, 1.0]  # no history yet
        else:
            for k, got in zip(kappa, m):
                assert float(got) == pytest.approx(1 + math.log(1 + 1 / (0.05 * k + 1e-8)), rel=1e-6)
        opt.step()


def test_the_trainer_steps_each_layer_at_its_multiplier():
    """One full-batch SGD step (no momentum, no decay): each layer moves by lr * m_l * its gradient."""
    from noiseaudit.data.dataset import SampleData
    from noiseaudit.models import MLP
    from noiseaudit.runtime import seed_everything
    from noiseaudit.train import TrainConfig, train

    torch.manual_seed(2)
    data = SampleData(torch.randn(40, 6), torch.randint(0, 3, (40,)), [0, 1, 2], 0)
    model = MLP(6, 3, hidden=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probe = MLP(6, 3, hidden=5)
    probe.load_state_dict(before)
    F.cross_entropy(probe(data.inputs), data.targets).backward()  # features arrive as they are (no scaling)
    cfg = TrainConfig(epochs=1, batch_size=40, lr=0.1, momentum=0.0, weight_decay=0.0, method="plain",
                      layerwise=True)
    result = train(data, model, cfg, torch.device("cpu"), seed_everything(0))
    for name, p in probe.named_parameters():
        layer = name.rsplit(".", 1)[0]
        norm = torch.cat([q.grad.flatten() for n, q in probe.named_parameters() if n.rsplit(".", 1)[0] == layer]).norm()
        m = 1 + math.log(1 + 1 / (float(norm) + 1e-8))
        assert result.layer_multipliers[layer] == pytest.approx(m, rel=1e-4)
        torch.testing.assert_close(model.state_dict()[name], before[name] - 0.1 * m * p.grad, rtol=1e-5, atol=1e-7)


def test_layerwise_state_refuses_another_rule():
    _, opt, lw = _toy_layers()
    with pytest.raises(ValueError, match="rule"):
        LayerwiseRates(opt.param_groups, rule="secant").load_state_dict(lw.state_dict())
    with pytest.raises(ValueError, match="must be one of"):
        LayerwiseRates(opt.param_groups, rule="hessian")


def _signal_at(step: int):
    import os

    def on_progress(stage: str, done: int, total: int, info: dict) -> None:
        if stage == "train" and done == step:
            os.kill(os.getpid(), signal.SIGTERM)
    return on_progress


@pytest.mark.parametrize("options", [dict(schedule="mlr-snet", layerwise=True),
                                     dict(layerwise=True, layerwise_rule="secant")])
def test_mlr_snet_and_layerwise_resume_to_the_same_report(noisy_digits, tmp_path, options):
    images, csv = noisy_digits
    full = scan(images, csv, **OPTIONS, **options)
    out = tmp_path / "r.parquet"
    with pytest.raises(Interrupted):
        scan(images, csv, output=out, on_progress=_signal_at(22), **OPTIONS, **options)
    resumed = scan(images, csv, output=out, resume=True, **OPTIONS, **options)
    np.testing.assert_array_equal(resumed["learned_lr"].to_numpy(), full["learned_lr"].to_numpy())
    meta = read_report(out)[1]
    assert meta["config"]["layerwise"] and set(meta["layer_multipliers"]) == {"body.0", "body.3", "hidden.0", "head"}
    assert all(m > 1 for m in meta["layer_multipliers"].values())
    truth = full["given_label"] != full["original_label"]
    assert (full["is_suspect"] & truth).sum() >= 0.8 * truth.sum()  # still finds the wrong labels


def test_cli_takes_the_options_and_rejects_an_unknown_rule(noisy_digits, tmp_path):
    images, csv = noisy_digits
    runner = CliRunner()
    bad = runner.invoke(app, ["scan", str(images), str(csv), "--label-col", "digit", "-o", str(tmp_path / "r.parquet"),
                              "--layerwise", "--layerwise-rule", "hessian", "--quiet"])
    assert bad.exit_code == 2 and "--layerwise-rule" in bad.output and not (tmp_path / "r.parquet").exists()
    ok = runner.invoke(app, ["scan", str(images), str(csv), "--label-col", "digit", "-o", str(tmp_path / "r.parquet"),
                             "--schedule", "mlr-snet", "--layerwise", "--epochs", "2", "--device", "cpu", "--quiet",
                             "--json"])
    assert ok.exit_code == 0, ok.output
    meta = read_report(tmp_path / "r.parquet")[1]
    assert meta["config"]["schedule"] == "mlr-snet" and meta["config"]["layerwise"]
