"""Running per-sample sums of loss, AUM margin and learned rate over training visits.

State is five 4-byte numbers per sample, kept on the training device; nothing
is copied to the host until :meth:`SignalRecorder.summary`.
"""

from __future__ import annotations

import numpy as np
import torch


def margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Given-class logit minus the largest other logit (the AUM margin)."""
    given = logits.gather(1, targets[:, None]).squeeze(1)
    others = logits.scatter(1, targets[:, None], float("-inf"))
    return given - others.max(dim=1).values


class SignalRecorder:
    """Accumulates what each sample looked like every time training visited it."""

    def __init__(self, num_samples: int, device: torch.device | str | None = None):
        zeros = lambda: torch.zeros(num_samples, dtype=torch.float32, device=device)  # noqa: E731
        self.loss_sum, self.margin_sum, self.rate_sum = zeros(), zeros(), zeros()
        self.last_rate = torch.ones(num_samples, dtype=torch.float32, device=device)
        self.visits = torch.zeros(num_samples, dtype=torch.int32, device=device)

    @torch.no_grad()
    def observe(self, index: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor,
                targets: torch.Tensor, rates: torch.Tensor | None) -> None:
        self.loss_sum.index_add_(0, index, losses.detach().float())
        self.margin_sum.index_add_(0, index, margins(logits.detach().float(), targets))
        if rates is not None:
            self.last_rate.index_copy_(0, index, rates.float())
        self.rate_sum.index_add_(0, index, self.last_rate.index_select(0, index))
        self.visits.index_add_(0, index, torch.ones_like(index, dtype=torch.int32))

    def summary(self) -> dict[str, np.ndarray]:
        n = self.visits.clamp_min(1).float()
        return {
            "learned_lr": self.last_rate.cpu().numpy(),
            "learned_lr_mean": (self.rate_sum / n).cpu().numpy(),
            "loss": (self.loss_sum / n).cpu().numpy(),
            "margin": (self.margin_sum / n).cpu().numpy(),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).clone() for k in ("loss_sum", "margin_sum", "rate_sum", "last_rate", "visits")}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            getattr(self, k).copy_(v)
