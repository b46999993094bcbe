r"""Layer-specific adaptive learning rates (after Singh, De, Zhang, Goldstein & Taylor, "Layer-Specific
Adaptive Learning Rates for Deep Networks", arXiv:1510.04609).

Every layer :math:`l` (one parameter group per module that owns parameters) steps at
:math:`t_l = t \cdot m_l`, with :math:`t` the base rate of the step (schedule and per-sample rates
included) and a multiplier from one of two curvature estimates:

``grad-norm`` (the default)
    :math:`m_l = 1 + \ln\!\big(1 + 1/(\lVert g_l \rVert + \epsilon)\big)`, with :math:`g_l` the
    layer's gradient for the batch. A small gradient stands in for a flat region (low curvature),
    so the rate rises there, and tends to :math:`t` where gradients are large.
``secant``
    :math:`m_l = 1 + \ln\!\big(1 + 1/(t\,\hat\kappa_l + \epsilon)\big)`, with the curvature along the
    path estimated by a running ratio of gradient change to parameter change,
    :math:`\hat\kappa_l = \overline{\lVert g_l^{(k)} - g_l^{(k-1)} \rVert} \,/\,
    \overline{\lVert \theta_l^{(k)} - \theta_l^{(k-1)} \rVert}` (moving averages, decay ``ema``).
    :math:`t\hat\kappa_l` is the step measured against the local curvature: well below 1 the layer
    could take a larger step, near or above it the rate stays at :math:`t`. The first step (no
    history yet) uses :math:`m_l = 1`.

Which one ships as the default, and why, is in ``bench/README.md`` ("MLR-SNet and layer-wise rates").
:class:`LayerwiseRates` multiplies the learning rate of each parameter group after
``backward()`` and before the base optimizer's ``step()``; its statistics (the secant rule's
previous gradients and parameters and its averages, and every layer's running mean multiplier)
are in :meth:`LayerwiseRates.state_dict`, so a checkpoint resumes them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from noiseaudit.config import LAYERWISE_RULES



def layer_groups(model: nn.Module, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split each parameter group into one group per layer (the module owning the parameters).

    Every other key of a group (its ``lr_scale``) is kept; each new group gets a ``layer`` name.
    """
    owner = {id(p): name.rsplit(".", 1)[0] if "." in name else name for name, p in model.named_parameters()}
    out: list[dict[str, Any]] = []
    for group in groups:
        by_layer: dict[str, list[torch.Tensor]] = {}
        for p in group["params"]:
            by_layer.setdefault(owner.get(id(p), "?"), []).append(p)
        rest = {k: v for k, v in group.items() if k != "params"}
        out.extend({**rest, "params": params, "layer": layer} for layer, params in by_layer.items())
    return out


def log_multipliers(curvature: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 + ln(1 + 1/(c_l + eps)) for a vector of per-layer curvature stand-ins c_l: the gradient
    norms ||g_l|| (grad-norm) or t * kappa_l (secant)."""
    return 1.0 + torch.log1p(1.0 / (curvature + eps))


def _norms(tensors: list[list[torch.Tensor]]) -> torch.Tensor:
    """The 2-norm over each list of tensors, as one vector (one device sync for all layers)."""
    return torch.stack([torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in ts]))
                        for ts in tensors])


class LayerwiseRates:
    """Per-layer multipliers of the learning rate, from each layer's gradients.

    Parameters
    ----------
    param_groups : list of dict
        The base optimizer's ``param_groups`` (one per layer, see :func:`layer_groups`).
    rule : {"grad-norm", "secant"}
    eps : float
        Added to the norm (or to t kappa) so that a zero gradient gives a finite multiplier.
    ema : float
        secant: decay of the moving averages of the gradient and parameter changes.
    """

    def __init__(self, param_groups: list[dict[str, Any]], rule: str = "grad-norm", eps: float = 1e-8,
                 ema: float = 0.9):
        if rule not in LAYERWISE_RULES:
            raise ValueError(f"layer-wise rule must be one of {LAYERWISE_RULES}, got {rule!r}")
        if not eps > 0 or not 0.0 <= ema < 1.0:
            raise ValueError(f"need eps > 0 and 0 <= ema < 1, got {eps}, {ema}")
        self.groups, self.rule, self.eps, self.ema = param_groups, rule, eps, ema
        self.layers = [str(g.get("layer", i)) for i, g in enumerate(param_groups)]
        n = len(param_groups)
        self.steps = 0
        self.mean_multiplier = torch.zeros(n, dtype=torch.float64)
        self.grad_change = torch.zeros(n, dtype=torch.float64)
        self.param_change = torch.zeros(n, dtype=torch.float64)
        self.previous: list[list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _params(self, i: int) -> list[torch.Tensor]:
        return [p for p in self.groups[i]["params"] if p.grad is not None]

    @torch.no_grad()
    def multipliers(self, base_rates: list[float]) -> torch.Tensor:
        """The (L,) multipliers for this step, from the gradients now in ``.grad``.

        ``base_rates`` is each group's rate before the multiplier (the secant rule's t).
        """
        grads = [[p.grad for p in self._params(i)] or [torch.zeros(1)] for i in range(len(self.groups))]
        if self.rule == "grad-norm":
            mult = log_multipliers(_norms(grads).double().cpu(), self.eps)
        else:
            mult = self._secant(base_rates)
        self.steps += 1
        self.mean_multiplier += (mult - self.mean_multiplier) / self.steps
        return mult

    def _secant(self, base_rates: list[float]) -> torch.Tensor:
        now = [[(p.detach().clone(), p.grad.detach().clone()) for p in self._params(i)] for i in range(len(self.groups))]
        mult = torch.ones(len(self.groups), dtype=torch.float64)
        if self.previous is not None:
            dg = _norms([[g - g0 for (_, g), (_, g0) in zip(cur, old)] or [torch.zeros(1)]
                         for cur, old in zip(now, self.previous)]).double().cpu()
            dp = _norms([[p - p0 for (p, _), (p0, _) in zip(cur, old)] or [torch.zeros(1)]
                         for cur, old in zip(now, self.previous)]).double().cpu()
            a = self.ema if self.steps > 1 else 0.0  # the first pair of steps starts the averages
            self.grad_change = a * self.grad_change + (1 - a) * dg
            self.param_change = a * self.param_change + (1 - a) * dp
            kappa = self.grad_change / self.param_change.clamp_min(1e-30)
            mult = log_multipliers(torch.tensor(base_rates, dtype=torch.float64) * kappa, self.eps)
        self.previous = now
        return mult

    def state_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "layers": self.layers, "steps": self.steps,
                "mean_multiplier": self.mean_multiplier.clone(), "grad_change": self.grad_change.clone(),
                "param_change": self.param_change.clone(),
                "previous": None if self.previous is None else [[(p.clone(), g.clone()) for p, g in layer]
                                                                for layer in self.previous]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["rule"] != self.rule or list(state["layers"]) != self.layers:
            raise ValueError(f"layer-wise state is for rule {state['rule']!r} over {len(state['layers'])} layers; "
                             f"this is {self.rule!r} over {len(self.layers)}")
        self.steps = int(state["steps"])
        self.mean_multiplier = state["mean_multiplier"].clone()
        self.grad_change, self.param_change = state["grad_change"].clone(), state["param_change"].clone()
        dev = [next(iter(g["params"])).device for g in self.groups]
        self.previous = None if state["previous"] is None else [
            [(p.to(d), g.to(d)) for p, g in layer] for layer, d in zip(state["previous"], dev)]

    def summary(self) -> dict[str, float]:
        """Each layer's mean multiplier over the steps so far."""
        return {name: round(float(m), 4) for name, m in zip(self.layers, self.mean_multiplier)}
