"""Base learning-rate schedules, including the two-regime schedule chosen from the training dynamics.

``two-regime`` follows "The Two Regimes of Deep Network Training" (Leclerc & Madry,
arXiv:2002.10376): train at the large step until the training loss stops improving at that step,
then at a small step (a tenth) for the rest. The switch comes from the dynamics: after each epoch
at the large step (at least ``min_large`` of them) the relative drop of the mean training loss
is compared with ``plateau``; once it falls below, the next epoch starts the small regime. So
that a small regime always exists, the switch happens at the latest after ``max_large`` of the
epochs.

``mlr-snet`` sets the rate of every step from the batch's mean training loss through the frozen,
meta-trained schedule network shipped with the package (:mod:`noiseaudit.optim.mlr_snet`). It
replaces the base rate: the factor is the net's rate over the nominal ``base_lr``, so that only a
divergence recovery (which halves the run's base rate) still scales it.
"""

from __future__ import annotations

import math
from typing import Any

from noiseaudit.config import SCHEDULES



class LRSchedule:
    """A multiplier of the base learning rate at each (epoch, step).

    Parameters
    ----------
    name : {"constant", "cosine", "step", "two-regime", "mlr-snet"}
    epochs, steps_per_epoch : int
    small : float
        two-regime: the small step as a fraction of the large one; step: the decay factor.
    plateau : float
        two-regime: switch once an epoch lowers the training loss by less than this fraction.
    min_large : int
        two-regime: epochs at the large step before a plateau is looked for.
    max_large : float
        two-regime: fraction of the epochs after which the switch is forced.
    base_lr : float
        mlr-snet: the nominal base rate the net's rate is divided by (the factor times it is the rate).
    num_classes : int
        mlr-snet: the class count in the net's bound gamma.
    """

    def __init__(self, name: str, epochs: int, steps_per_epoch: int, *, small: float = 0.1,
                 plateau: float = 0.05, min_large: int = 2, max_large: float = 0.7, base_lr: float = 1.0,
                 num_classes: int = 10):
        if name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")
        if not 0.0 < small <= 1.0 or not 0.0 <= plateau < 1.0 or not 0.0 < max_large <= 1.0:
            raise ValueError(f"need 0 < small <= 1, 0 <= plateau < 1, 0 < max_large <= 1; "
                             f"got {small}, {plateau}, {max_large}")
        self.name, self.epochs, self.steps = name, epochs, max(1, steps_per_epoch)
        self.small, self.plateau, self.min_large = small, plateau, min_large
        self.max_large_epochs = max(1, math.ceil(max_large * epochs))
        self.switch_epoch: int | None = None  # two-regime: epochs trained at the large step
        self.base_lr = base_lr
        self.mlr_snet = None
        if name == "mlr-snet":
            from noiseaudit.optim.mlr_snet import MLRSNetSchedule

            self.mlr_snet = MLRSNetSchedule(num_classes)

    @property
    def needs_loss(self) -> bool:
        """True when :meth:`factor` needs the batch's mean loss (mlr-snet)."""
        return self.mlr_snet is not None

    def factor(self, epoch: int, step: int, loss: float | None = None) -> float:
        """The multiplier of the base rate at this step; ``loss``: the batch's mean loss (mlr-snet only)."""
        if self.mlr_snet is not None:
            if loss is None:
                raise ValueError("the mlr-snet schedule needs the batch's mean loss")
            return self.mlr_snet.rate(loss) / self.base_lr
        if self.name == "cosine":
            t = (epoch * self.steps + step) / (self.epochs * self.steps)
            return 0.5 * (1.0 + math.cos(math.pi * t))
        if self.name == "step":
            return self.small ** ((epoch >= self.epochs // 2) + (epoch >= (3 * self.epochs) // 4))
        if self.name == "two-regime" and self.switch_epoch is not None and epoch >= self.switch_epoch:
            return self.small
        return 1.0

    def end_epoch(self, epoch_losses: list[float]) -> bool:
        """Record a finished epoch's mean loss; True when two-regime switches to the small step now."""
        if self.name != "two-regime" or self.switch_epoch is not None:
            return False
        done = len(epoch_losses)
        plateaued = done >= max(2, self.min_large) and \
            (epoch_losses[-2] - epoch_losses[-1]) < self.plateau * abs(epoch_losses[-2])
        if plateaued or done >= self.max_large_epochs:
            self.switch_epoch = done
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "switch_epoch": self.switch_epoch,
                "mlr_snet": None if self.mlr_snet is None else self.mlr_snet.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["name"] != self.name:
            raise ValueError(f"schedule state is for {state['name']!r}, this schedule is {self.name!r}")
        self.switch_epoch = state["switch_epoch"]
        if self.mlr_snet is not None:
            self.mlr_snet.load_state_dict(state["mlr_snet"])
