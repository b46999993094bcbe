r"""Per-sample learnable learning rates, learned by hypergradient descent.

Every training sample :math:`i` carries a log-rate :math:`s_i`, its rate is
:math:`\eta_i = e^{s_i}`, and a batch :math:`B` is trained on the weighted loss

.. math:: L_B(\theta) = \frac{1}{|B|} \sum_{i \in B} \eta_i \, \ell_i(\theta),

so the base optimizer (any ``torch.optim`` optimizer) moves the weights by
roughly :math:`-\alpha \eta_i \nabla\ell_i` for sample :math:`i`.

**Meta-objective.** A rate should be high when following the sample's own
gradient helps the *other* samples that carry the same given label. For sample
:math:`i` let :math:`S_i` be the other samples of the batch with the same given
label and :math:`M_i(\theta) = \frac{1}{|S_i|}\sum_{j\in S_i} \ell_j(\theta)`.
After one step :math:`\theta^+ = \theta - \alpha\nabla_\theta L_B`, to first order

.. math:: \frac{\partial M_i(\theta^+)}{\partial \eta_i}
          = -\frac{\alpha}{|B|} \, \nabla\ell_i \cdot \frac{1}{|S_i|}\sum_{j\in S_i}\nabla\ell_j .

A wrongly labelled sample looks like another class, so its gradient points
against the gradients of the samples whose label it borrows, and descending
this hypergradient drives its rate down. (A global meta-objective, the next
batch's mean gradient, is dominated by the noisy samples once the clean ones
are fit, and ranks far worse.)

**Closed form on the last layer.** With logits :math:`z = W h + b` and
softmax cross-entropy, the last-layer gradient of sample :math:`i` is
:math:`g_i = (p_i - y_i) \otimes [h_i, 1]`, so the batch Gram matrix is
:math:`G = (E E^\top) \circ (H_1 H_1^\top)` with :math:`E = P - Y` and
:math:`H_1 = [H, 1]`: :math:`O(|B|^2 (K + d))` work and no per-sample
gradients of the network.

**Update.** The step uses cosine-normalised alignments
:math:`a_i = \frac{1}{|S_i|}\sum_{j \in S_i} \cos(g_i, g_j)`, centred on the
batch so that the rates' geometric mean stays put:

.. math:: s_i \leftarrow \operatorname{clip}\big(s_i + \beta\,(a_i - \bar a_B),\ \log\eta_{min},\ \log\eta_{max}\big).

Only the batch's rows move (samples without a same-label partner in the
batch do not move either), so nothing learned is erased by momentum or decay
acting on absent samples. The state is 4 bytes per sample.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def last_layer_gram(err: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Gram matrix of the last layer's per-sample gradients, weights and bias.

    ``err`` is (B, K) = softmax probabilities minus one-hot targets and
    ``feats`` is (B, d), the head's input. Entry (i, j) equals
    :math:`g_i \\cdot g_j` with :math:`g_i = \\mathrm{err}_i \\otimes [h_i, 1]`.
    """
    return (err @ err.T) * (feats @ feats.T + 1.0)


def class_conditional_alignment(err: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor,
                                *, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean alignment of each sample's last-layer gradient with its same-label batch mates.

    Returns ``(alignment, has_partner)``: the (B,) mean of cos(g_i, g_j) (raw dot
    products when ``normalize`` is False) over the other samples j with i's
    label, and a mask of the samples that had at least one such partner.
    """
    gram = last_layer_gram(err, feats)
    if normalize:
        norms = gram.diagonal().clamp_min(1e-12).sqrt()
        gram = gram / norms[:, None] / norms[None, :]
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    counts = same.sum(dim=1)
    total = (gram * same).sum(dim=1)
    return total / counts.clamp_min(1), counts > 0


def per_sample_rate_step(log_rates: torch.Tensor, index: torch.Tensor, alignment: torch.Tensor,
                         has_partner: torch.Tensor, *, hyper_lr: float, log_min: float, log_max: float) -> None:
    """Functional kernel: in-place sparse update of ``log_rates[index]``."""
    mask = has_partner.to(alignment.dtype)
    mean = (alignment * mask).sum() / mask.sum().clamp_min(1.0)
    delta = hyper_lr * (alignment - mean) * mask
    updated = (log_rates.index_select(0, index) + delta.to(log_rates.dtype)).clamp_(log_min, log_max)
    log_rates.index_copy_(0, index, updated)


class PerSampleRate:
    """Holds N per-sample learning rates and learns them by hypergradient descent.

    It composes with any base optimizer: weight the batch's per-sample losses
    with :meth:`weighted_loss`, step the base optimizer as usual, then call
    :meth:`step` with the same batch's last-layer quantities.

    Parameters
    ----------
    num_samples : int
        Number of training samples N; sample ids index the rates.
    hyper_lr : float
        Step size beta of the log-rate update.
    init_rate, min_rate, max_rate : float
        Initial rate and clamp bounds, with 0 < min_rate <= init_rate <= max_rate.
    device : torch.device or str, optional
        Where the rates live (keep them beside the model).
    """

    def __init__(self, num_samples: int, *, hyper_lr: float = 0.2, init_rate: float = 1.0,
                 min_rate: float = 1e-2, max_rate: float = 1e2, device: torch.device | str | None = None):
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if not hyper_lr >= 0.0 or not math.isfinite(hyper_lr):
            raise ValueError(f"hyper_lr must be a finite non-negative number, got {hyper_lr}")
        if not 0.0 < min_rate <= init_rate <= max_rate or not math.isfinite(max_rate):
            raise ValueError(f"need 0 < min_rate <= init_rate <= max_rate < inf, got "
                             f"{min_rate}, {init_rate}, {max_rate}")
        self.hyper_lr = float(hyper_lr)
        self.log_min, self.log_max = math.log(min_rate), math.log(max_rate)
        self.log_rates = torch.full((num_samples,), math.log(init_rate), dtype=torch.float32, device=device)

    @property
    def num_samples(self) -> int:
        return int(self.log_rates.shape[0])

    def rates(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """The rates eta (all of them, or those of ``index``)."""
        s = self.log_rates if index is None else self.log_rates.index_select(0, index)
        return s.exp()

    def weighted_loss(self, losses: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Mean of the batch's per-sample ``losses`` weighted by their rates."""
        return (self.rates(index).to(losses.dtype) * losses).mean()

    @torch.no_grad()
    def step(self, index: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor, targets: torch.Tensor) -> None:
        """Update the rates of ``index`` from the batch's pre-step logits and head inputs."""
        err = torch.softmax(logits.detach().float(), dim=1)
        err[torch.arange(err.shape[0], device=err.device), targets] -= 1.0
        alignment, has_partner = class_conditional_alignment(err, feats.detach().float(), targets)
        per_sample_rate_step(self.log_rates, index, alignment, has_partner, hyper_lr=self.hyper_lr,
                             log_min=self.log_min, log_max=self.log_max)

    def state_dict(self) -> dict[str, Any]:
        return {"log_rates": self.log_rates.detach().clone(), "hyper_lr": self.hyper_lr,
                "log_min": self.log_min, "log_max": self.log_max}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        log_rates = state["log_rates"]
        if log_rates.shape != self.log_rates.shape:
            raise ValueError(f"state holds {tuple(log_rates.shape)} rates, this optimizer has "
                             f"{tuple(self.log_rates.shape)}")
        self.log_rates.copy_(log_rates.to(self.log_rates.device, self.log_rates.dtype))
        self.hyper_lr = float(state["hyper_lr"])
        self.log_min, self.log_max = float(state["log_min"]), float(state["log_max"])
