"""A uniform running average of a model's trained parameters over a window of steps.

With a pretrained backbone the scan's count of wrong labels is the number of given labels its
final model disputes (:mod:`noiseaudit.report.threshold`), so that count is only as good as the
final model. Each training step moves the weights toward the last few batches. The wrong labels
in them are partly fitted, and the clean error drifts from one step to the next. The average of
the weights over the last epoch (stochastic weight averaging over one epoch, Izmailov et al. 2018)
is a steadier model that has memorised fewer of the wrong labels.
CIFAR-10N, 10k photos, ``deep``, seeds 0-2: the disagreements were 0.380-0.389 / 0.119-0.145 /
0.204-0.224 of the photos for ``worse`` / ``aggre`` / ``random1`` (0.410 / 0.091 / 0.178 wrong)
from the last step's weights, and 0.373-0.374 / 0.114-0.117 / 0.191-0.194 from the average
(bench/README.md).

From scratch the ranking is the learned rate's, which the average leaves alone, but the final model
still gives every sample's ``predicted_label``, ``given_prob`` and ``suggested_label``, the
disagreements the count brackets with, and the ``--save-model`` file. Averaged, it is the better
model there too. Clean-test accuracy of the scan's Fashion-MNIST 10k model, seeds 0-2: +1.1 to +7.3
points on the noisy cells of bench/detect.py (40% pair-flip: 73.2 → 80.5), with flag F1 unchanged
but on instance noise (−0.002 to −0.009); bench/README.md.

Only the parameters that train are averaged. Buffers, such as BatchNorm's running statistics,
are left alone, so this fits models whose BatchNorm is frozen, like the backbone's top, or that
have none (:func:`fits`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class WeightAverage:
    """Running mean of ``model``'s trainable parameters over the steps passed to :meth:`update`.

    The average is kept in float32 on the parameters' device. :meth:`copy_to` writes it into a
    model with the same parameters, and ``state_dict`` / ``load_state_dict`` round-trip it
    (a checkpoint taken mid-window resumes to the same average).
    """

    def __init__(self, model: nn.Module):
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.device = next(model.parameters()).device
        self.mean: dict[str, torch.Tensor] = {}
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the mean."""
        self.steps += 1
        params = dict(model.named_parameters())
        for name in self.names:
            p = params[name].detach().float()
            if name in self.mean:
                self.mean[name].add_(p - self.mean[name], alpha=1.0 / self.steps)
            else:
                self.mean[name] = p.clone()

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the mean into ``model``'s parameters (nothing if no step was averaged)."""
        if not self.steps:
            return
        params = dict(model.named_parameters())
        for name in self.names:
            params[name].copy_(self.mean[name].to(params[name].dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "mean": {k: v.clone() for k, v in self.mean.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["mean"]) - set(self.names):
            raise ValueError(f"averaged parameters differ: {sorted(state['mean'])} vs {self.names}")
        self.steps = int(state["steps"])
        self.mean = {k: v.to(self.device).clone() for k, v in state["mean"].items()}


def fits(model: nn.Module) -> bool:
    """Whether the mean of ``model``'s parameters is a model as it stands: it has no BatchNorm, whose
    running statistics would belong to the last step's weights (resnet18 from scratch has some)."""
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
