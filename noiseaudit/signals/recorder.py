"""Running per-sample sums of loss, AUM margin and learned rates over training visits.

State is four 4-byte numbers per sample plus two per recorded rate signal,
kept on the training device; nothing is copied to the host until
:meth:`SignalRecorder.summary`.
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
    """Accumulates what each sample looked like every time training visited it.

    ``rate_names`` are the rate signals to record (default ``learned_lr``);
    for each, the last value and the mean over visits are reported, as
    ``name`` and ``name_mean``. Rates not passed to :meth:`observe` stay 1.
    After :meth:`mark_regime` (the switch of a two-regime schedule) each rate is
    also reported as ``name_large`` (its value at the switch) and ``name_small``
    (its change since, final / at switch). ``count_names`` are 0/1 events per
    visit (e.g. ``dba_selected``), reported as ``name_frac`` of visits.
    """

    def __init__(self, num_samples: int, device: torch.device | str | None = None,
                 rate_names: tuple[str, ...] = ("learned_lr",), count_names: tuple[str, ...] = ()):
        def zeros() -> torch.Tensor:
            return torch.zeros(num_samples, dtype=torch.float32, device=device)

        self.loss_sum, self.margin_sum = zeros(), zeros()
        self.visits = torch.zeros(num_samples, dtype=torch.int32, device=device)
        self.last_rate = {name: torch.ones_like(self.loss_sum) for name in rate_names}
        self.rate_sum = {name: zeros() for name in rate_names}
        self.count_sum = {name: zeros() for name in count_names}
        self.regime_mark: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def observe(self, index: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor,
                targets: torch.Tensor, rates: dict[str, torch.Tensor] | None = None,
                counts: dict[str, torch.Tensor] | None = None) -> None:
        self.loss_sum.index_add_(0, index, losses.detach().float())
        self.margin_sum.index_add_(0, index, margins(logits.detach().float(), targets))
        for name, last in self.last_rate.items():
            if rates is not None and name in rates:
                last.index_copy_(0, index, rates[name].float())
            self.rate_sum[name].index_add_(0, index, last.index_select(0, index))
        for name, total in self.count_sum.items():
            total.index_add_(0, index, counts[name].float())
        self.visits.index_add_(0, index, torch.ones_like(index, dtype=torch.int32))

    def sums(self) -> list[torch.Tensor]:
        """The additive state (what data-parallel ranks sum at the end)."""
        return [self.loss_sum, self.margin_sum, self.visits, *self.rate_sum.values(), *self.count_sum.values()]

    def set_last_rates(self, rates: dict[str, torch.Tensor]) -> None:
        """Overwrite the last-seen rates of every sample (after data-parallel ranks synchronised them)."""
        for name, value in rates.items():
            self.last_rate[name].copy_(value)

    def mark_regime(self) -> None:
        """Remember every rate as it is now: the end of the large-step regime."""
        self.regime_mark = {name: last.clone() for name, last in self.last_rate.items()}

    def summary(self) -> dict[str, np.ndarray]:
        n = self.visits.clamp_min(1).float()
        out = {"loss": (self.loss_sum / n).cpu().numpy(), "margin": (self.margin_sum / n).cpu().numpy()}
        for name, last in self.last_rate.items():
            out[name] = last.cpu().numpy()
            out[f"{name}_mean"] = (self.rate_sum[name] / n).cpu().numpy()
            if name in self.regime_mark:
                out[f"{name}_large"] = self.regime_mark[name].cpu().numpy()
                out[f"{name}_small"] = (last / self.regime_mark[name]).cpu().numpy()
        for name, total in self.count_sum.items():
            out[f"{name}_frac"] = (total / n).cpu().numpy()
        return out

    def state_dict(self) -> dict[str, object]:
        return {"loss_sum": self.loss_sum.clone(), "margin_sum": self.margin_sum.clone(),
                "visits": self.visits.clone(),
                "last_rate": {k: v.clone() for k, v in self.last_rate.items()},
                "rate_sum": {k: v.clone() for k, v in self.rate_sum.items()},
                "count_sum": {k: v.clone() for k, v in self.count_sum.items()},
                "regime_mark": {k: v.clone() for k, v in self.regime_mark.items()}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        for key in ("loss_sum", "margin_sum", "visits"):
            getattr(self, key).copy_(state[key])
        self.regime_mark = {k: v.clone().to(self.loss_sum.device) for k, v in state.get("regime_mark", {}).items()}
        for key in ("last_rate", "rate_sum", "count_sum"):
            mine, theirs = getattr(self, key), state.get(key, {})
            if set(mine) != set(theirs):
                raise ValueError(f"recorded signals differ: {sorted(theirs)} vs {sorted(mine)}")
            for name, tensor in mine.items():
                tensor.copy_(theirs[name])
