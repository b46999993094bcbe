r"""MLR-SNet: a meta-learned learning-rate schedule network (Shu, Zhu, Zhao, Meng & Xu, "MLR-SNet:
Transferable LR Schedules for Heterogeneous Tasks", arXiv:2007.14546; official code
github.com/xjtushujun/MLR-SNet).

A one-layer LSTM reads the current batch's mean training loss and outputs the learning rate,

.. math:: \eta_t = \gamma\,\sigma(w^\top h_t + b), \qquad
          \gamma = \frac{\sqrt{L_0}\,\ln(C L_0)}{4\,C^{1/4}},

with :math:`h_t` the LSTM's hidden state (50 units, carried across steps and detached every
step), :math:`L_0` the first batch's loss and :math:`C` the number of classes, so the rate lies in
:math:`(0, \gamma)`. As in the official version each gate transform is a small MLP (25 hidden
units, ReLU, then the four gates' 200 outputs) and the forget gate carries a shift of −1.

The net is meta-trained once (``bench/meta_train_mlr_snet.py``, on Fashion-MNIST) and shipped
frozen in ``mlr_snet.npz`` beside this module; :func:`load_shipped` reads it. At scan time it is
plug-and-play: :class:`MLRSNetSchedule` feeds it the loss and returns the rate, and the
per-sample rates multiply that base rate as they multiply any schedule.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HIDDEN, GATE_HIDDEN = 50, 25
SHIPPED = "mlr_snet.npz"


def gamma(initial_loss: float, num_classes: int) -> float:
    """The rate's upper bound: sqrt(L0) ln(C L0) / (4 C^(1/4)), kept positive for a tiny L0."""
    c, l0 = float(num_classes), float(initial_loss)
    value = math.sqrt(max(l0, 0.0)) * math.log(max(c * l0, 1.0 + 1e-6)) / (4.0 * c ** 0.25)
    return max(value, 1e-4)


class GateLSTMCell(nn.Module):
    """An LSTM cell whose input and hidden transforms are MLPs (→25, ReLU, →4·hidden); forget gate −1."""

    def __init__(self, inputs: int = 1, hidden: int = HIDDEN, gate_hidden: int = GATE_HIDDEN):
        super().__init__()
        self.hidden = hidden
        self.input_gates = nn.Sequential(nn.Linear(inputs, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, 4 * hidden))
        self.hidden_gates = nn.Sequential(nn.Linear(hidden, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, 4 * hidden))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hx, cx = state
        i, f, o, g = (self.input_gates(x) + self.hidden_gates(hx)).split(self.hidden, dim=1)
        cx = torch.sigmoid(f - 1.0) * cx + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(cx), cx


class MLRSNet(nn.Module):
    """Loss in, a rate fraction in (0, 1) out (times :func:`gamma` gives the rate)."""

    def __init__(self, hidden: int = HIDDEN, gate_hidden: int = GATE_HIDDEN):
        super().__init__()
        self.cell = GateLSTMCell(1, hidden, gate_hidden)
        self.out = nn.Linear(hidden, 1)

    def initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(1, self.cell.hidden, device=self.out.weight.device)
        return zeros, zeros.clone()

    def forward(self, loss: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``loss`` a scalar; returns the fraction (a 0-d tensor) and the new (hx, cx)."""
        hx, cx = self.cell(loss.reshape(1, 1).to(self.out.weight), state)
        return torch.sigmoid(self.out(hx)).reshape(()), (hx, cx)


def virtual_step_start(net: MLRSNet, state: tuple[torch.Tensor, torch.Tensor], loss: torch.Tensor, bound: float,
                       model: nn.Module, opt: torch.optim.Optimizer
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """What a virtual step starts from: the net's rate (with its graph), and the model's detached weights,
    gradients (``.grad``) and ``opt``'s momentum buffers (None before the first step), keyed by name."""
    fraction, _ = net(loss, state)
    params = dict(model.named_parameters())
    weights = {n: p.detach() for n, p in params.items()}
    grads = {n: p.grad.detach() for n, p in params.items()}
    return bound * fraction, weights, grads, {n: opt.state.get(p, {}).get("momentum_buffer") for n, p in params.items()}


def meta_objective(net: MLRSNet, state: tuple[torch.Tensor, torch.Tensor], loss: torch.Tensor, bound: float,
                   model: nn.Module, opt: torch.optim.Optimizer, meta_inputs: torch.Tensor,
                   meta_targets: torch.Tensor, momentum: float, weight_decay: float,
                   lookahead: list[tuple[torch.Tensor, torch.Tensor]] = ()) -> torch.Tensor:
    """The meta batch's cross-entropy after virtual SGD steps at the net's rate (differentiable in the net).

    The first virtual step is exactly the one ``opt`` (torch.optim.SGD with this ``momentum`` and
    ``weight_decay``) is about to take from the gradients in ``.grad``: theta' = theta - rate *
    (momentum * buf + g + weight_decay * theta). Each batch in ``lookahead`` adds one more step at the
    same rate, its gradient taken at the detached virtual weights. The graph runs through the rate
    only (the step directions are held fixed), so d meta / d rate = -grad meta(theta_K) . sum of the
    steps: no second-order terms of the model. With no ``lookahead`` this is the one-step objective
    of the official code; more steps counter its short-horizon bias (a one-step look favours ever
    smaller rates).
    """
    from torch.func import functional_call

    rate, theta, grads, bufs = virtual_step_start(net, state, loss, bound, model, opt)
    names = list(theta)
    shift = {n: torch.zeros_like(theta[n]) for n in names}  # the sum of the (detached) steps
    step = float(rate.detach())
    for batch in [None, *lookahead]:
        if batch is not None:  # the gradient at the current virtual weights
            current = {n: (theta[n] - step * shift[n]).requires_grad_(True) for n in names}
            out = torch.nn.functional.cross_entropy(functional_call(model, current, (batch[0],)), batch[1])
            grads = dict(zip(names, torch.autograd.grad(out, list(current.values()))))
        for n in names:
            d = grads[n] + weight_decay * (theta[n] - step * shift[n])
            bufs[n] = d if bufs[n] is None else momentum * bufs[n] + d
            shift[n] = shift[n] + bufs[n]
    params = {n: theta[n] - rate * shift[n] for n in names}
    return torch.nn.functional.cross_entropy(functional_call(model, params, (meta_inputs,)), meta_targets)


def save_weights(net: MLRSNet, path: str | Path) -> None:
    """The net's parameters as float32 arrays in an .npz (no pickle)."""
    np.savez(path, **{k: v.detach().cpu().float().numpy() for k, v in net.state_dict().items()})


def load_weights(path: str | Path) -> MLRSNet:
    net = MLRSNet()
    with np.load(path) as saved:
        net.load_state_dict({k: torch.from_numpy(saved[k]) for k in saved.files})
    return net.requires_grad_(False).eval()


def load_shipped() -> MLRSNet:
    """The frozen net shipped with the package (made by bench/meta_train_mlr_snet.py)."""
    with resources.as_file(resources.files("noiseaudit.optim").joinpath(SHIPPED)) as path:
        return load_weights(path)


class MLRSNetSchedule:
    """The shipped (or a given) frozen net as a base-rate schedule, one rate per training step.

    :meth:`rate` takes the batch's mean loss before the step; the first call fixes L0 and so gamma.
    The LSTM state, L0 and gamma are in :meth:`state_dict`, so a resumed run continues the schedule.
    """

    def __init__(self, num_classes: int, net: MLRSNet | None = None):
        self.net = load_shipped() if net is None else net  # a given net is used as it is (meta-training)
        self.num_classes = num_classes
        self.state = self.net.initial_state()
        self.initial_loss: float | None = None
        self.gamma: float | None = None

    def bound(self, loss: float) -> float:
        """gamma, fixed by the first loss it is given."""
        if self.gamma is None:
            self.initial_loss, self.gamma = float(loss), gamma(loss, self.num_classes)
        return self.gamma

    @torch.no_grad()
    def rate(self, loss: float) -> float:
        """The rate for a batch of this mean loss; advances the LSTM state."""
        bound = self.bound(loss)
        fraction, self.state = self.net(torch.tensor(float(loss)), self.state)
        return bound * float(fraction)

    def state_dict(self) -> dict[str, Any]:
        return {"hx": self.state[0].clone(), "cx": self.state[1].clone(), "initial_loss": self.initial_loss,
                "gamma": self.gamma}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = (state["hx"].clone(), state["cx"].clone())
        self.initial_loss, self.gamma = state["initial_loss"], state["gamma"]
