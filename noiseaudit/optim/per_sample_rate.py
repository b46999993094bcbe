r"""Per-sample learnable learning rates, learned by hypergradient descent.

Every training sample :math:`i` carries a log-rate :math:`s_i`, its rate is
:math:`\eta_i = e^{s_i}`, and a batch :math:`B` is trained on the weighted loss

.. math:: L_B(\theta) = \frac{1}{|B|} \sum_{i \in B} \eta_i \, \ell_i(\theta),

so the base optimizer (any ``torch.optim`` optimizer) moves the weights by
roughly :math:`-\alpha \eta_i \nabla\ell_i` for sample :math:`i`.

**Meta-objective.** A rate should be high when following the sample's own
gradient helps the other samples that carry the same given label. For sample
:math:`i` with given label :math:`c` the meta-objective is the rate-weighted
loss of the class, :math:`M_c(\theta) = \sum_{j:\,y_j=c} \eta_j\,\ell_j(\theta)/\|g_j\|`,
over the samples of class :math:`c` seen recently. After one step
:math:`\theta^+ = \theta - \alpha\nabla_\theta L_B`, to first order

.. math:: \frac{\partial M_c(\theta^+)}{\partial \eta_i} = -\frac{\alpha}{|B|}\, g_i \cdot R_c,
          \qquad R_c = \sum_{j:\,y_j=c} \eta_j \frac{g_j}{\|g_j\|},

the *class reference gradient*. A wrongly labelled sample looks like another
class, so its gradient points away from its label's reference and descending
this hypergradient drives its rate down. Weighting the reference by the rates
makes it cleaner as training goes on: samples already found suspect count
less. (A global meta-objective, the next batch's mean gradient, is dominated
by the noisy samples once the clean ones are fit and ranks far worse.)

With ``meta="given+predicted"`` the meta-objective adds the loss of the class
the model currently predicts for :math:`i` when that differs from its label:
the two classes the sample is torn between. On pair-flip and instance noise
this ranks far better; on symmetric noise somewhat worse (see the README's
benchmark). ``meta="auto"`` (the default) learns both: the weighting follows
the ``given+predicted`` rates, and a second vector of log-rates
(:attr:`PerSampleRate.given_log_rates`) is updated by the ``given`` alignments
from the same forward pass, at 4 more bytes per sample. Which one ranks is
chosen after training from how concentrated the model's disagreements are
(:func:`noiseaudit.signals.structure.choose_rates`).

**Closed form on the last layer.** With logits :math:`z = W h + b` and
softmax cross-entropy the last-layer gradient of sample :math:`i` is
:math:`g_i = e_i \otimes \tilde h_i` with :math:`e_i = p_i - y_i` and
:math:`\tilde h_i = [h_i, 1]`, so :math:`g_i \cdot R_c = e_i^\top R_c \tilde h_i`
with :math:`R_c` a :math:`K \times (d+1)` matrix: no per-sample gradients
of the network. The references are an exponential moving average over
batches (decay ``ema``), updated after each step. When
:math:`K^2 (d+1)` would exceed ``max_reference_size`` floats, the reference
falls back to the other same-label samples of the batch, through the Gram
matrix :math:`(EE^\top) \circ (\tilde H \tilde H^\top)`.

**Centred features.** With ``center_features`` the head inputs are taken
relative to their running mean (decay ``ema``) before the alignments are
formed, i.e. the gradients of the same head reparametrised as
:math:`W(h - \mu) + b'`. Post-ReLU features are all non-negative and share a
large common component (a pretrained backbone's pooled embeddings in
particular), which makes every pair of per-sample gradients look alike; the
cosines then say little. Centred, they compare what is specific to each sample.

**Own-fit term.** The meta-objective also holds a self-paced term, the
rate-weighted bounded margin cost of the batch itself,
:math:`\lambda \sum_{i \in B} \eta_i (1 - m_i)` with the probability margin
:math:`m_i = p_{i,y_i} - \max_{k \ne y_i} p_{i,k} \in [-1, 1]`. Its derivative
in :math:`\eta_i` is :math:`\lambda (1 - m_i)`, so descending it lowers the
rates of samples another class currently wins, raises those the model fits,
and, being bounded, does not let one hopeless sample dominate (unlike the loss
itself). Alignment alone is scale-free (a cosine) and blind to how well a
sample is fit; the margin alone is what AUM already reads. Together they rank
better than either on instance-dependent and symmetric noise (measured in
``bench/detect.py``); ``margin_weight`` is :math:`\lambda` (default 0.5).

**Update.** With cosine alignments :math:`a_i = \cos(g_i, R_{y_i})` plus the
own-fit term, centred on the batch so that the rates' geometric mean stays put,

.. math:: s_i \leftarrow \operatorname{clip}\big(s_i + \beta\,(a_i + \lambda m_i
          - \overline{(a + \lambda m)}_B),\ \log\eta_{min},\ \log\eta_{max}\big).

A small step (:math:`\beta = 0.05`) matters: the rates weight the training
loss, so a sample whose rate falls is fit less and falls further. A large
:math:`\beta` locks early guesses in (measured worse on instance and
symmetric noise), a small one lets the evidence accumulate over the epochs.

**Trusted samples.** With ``trusted`` (a mask of samples whose labels were
verified) a second set of class references is kept from the trusted samples
alone, :math:`T_c`, and the alignment is taken against the per-class mix
:math:`(1 - w)\,R_c/\|R_c\| + w\,T_c/\|T_c\|` (``trusted_weight`` w): the
rates then learn toward what verified data of each class looks like, which
the data's own references cannot show where wrong labels cluster (pair-flip
and instance-dependent noise). Trusted samples keep a fixed rate
(``trusted_rate``) and do not enter the batch centring. Their references are a
slower moving average (``trusted_ema``), since only a few of them are in each
batch; a class without trusted samples yet uses :math:`R_c` alone. To the
alignment is added ``trusted_all_weight`` times :math:`\cos(g_i, \sum_c
T_c/\|T_c\|)`: the per-class mix compares a sample only with the trusted
samples of its given label, which a wrong label that looks like that label
resembles too (instance-dependent noise); against all classes at once it also
meets the trusted samples of the class it really shows, whose gradients
oppose its own, the direction in which L2RW (Ren et al. 2018) reweights.
That term waits until every class has trusted samples.

Only the batch's rows move (and only once a reference exists), so nothing
learned is erased by momentum or decay acting on absent samples. The state is
4 bytes per sample (8 with ``meta="auto"``) plus the class references.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from noiseaudit.config import META_OBJECTIVES
from noiseaudit.signals.recorder import margins



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


def with_bias(feats: torch.Tensor) -> torch.Tensor:
    """[h, 1]: the head's input with the bias column appended."""
    return torch.cat([feats, feats.new_ones(feats.shape[0], 1)], dim=1)


def class_reference_update(err: torch.Tensor, feats1: torch.Tensor, labels: torch.Tensor,
                           weights: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sum over the batch of w_j * g_j / |g_j| per given label: a (K, K, d+1) tensor."""
    e_hat = err / err.norm(dim=1, keepdim=True).clamp_min(1e-12)
    h_hat = feats1 / feats1.norm(dim=1, keepdim=True).clamp_min(1e-12)
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(err.dtype) * weights.to(err.dtype)[:, None]
    outer = (onehot[:, :, None] * e_hat[:, None, :]).flatten(1)  # (B, K*K): w_j [y_j = c] e_hat_jk
    return (outer.T @ h_hat).view(num_classes, err.shape[1], feats1.shape[1])  # one matmul over the batch


def unit_references(reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class's (K, d+1) reference scaled to unit norm, and which classes have a nonzero one."""
    norm = reference.flatten(1).norm(dim=1)
    return reference / norm.clamp_min(1e-12)[:, None, None], norm > 1e-12


def reference_dots(err: torch.Tensor, feats1: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """g_i . R_c for every sample i and every class c, a (B, C) tensor, without forming g_i = e_i (x) h_i."""
    c, k, d = reference.shape
    proj = feats1 @ reference.permute(2, 0, 1).reshape(d, c * k)  # (B, C*K): sum_d h_id R_ckd
    return torch.bmm(proj.view(-1, c, k), err.unsqueeze(2)).squeeze(2)


def reference_cosines(err: torch.Tensor, feats1: torch.Tensor, reference: torch.Tensor,
                      dots: torch.Tensor | None = None) -> torch.Tensor:
    """cos(g_i, R_c) for every sample i and every class c, a (B, C) tensor, without forming g_i.

    ``dots`` may pass :func:`reference_dots` of the same batch. The norms factorise:
    |e_i (x) h_i| = |e_i| |h_i|.
    """
    all_dots = reference_dots(err, feats1, reference) if dots is None else dots
    sample_norms = err.norm(dim=1) * feats1.norm(dim=1)
    ref_norms = reference.flatten(1).norm(dim=1)
    return all_dots / (sample_norms[:, None] * ref_norms[None, :]).clamp_min(1e-12)


def reference_alignment(err: torch.Tensor, feats1: torch.Tensor, reference: torch.Tensor,
                        classes: torch.Tensor, *, normalize: bool = True,
                        dots: torch.Tensor | None = None) -> torch.Tensor:
    """g_i . R_{classes_i} for every sample (cosines when ``normalize``), without forming g_i.

    ``dots`` may pass :func:`reference_dots` of the same batch, to share it between calls.
    """
    all_dots = reference_dots(err, feats1, reference) if dots is None else dots
    if normalize:
        all_dots = reference_cosines(err, feats1, reference, all_dots)
    return all_dots.gather(1, classes[:, None]).squeeze(1)


def probability_margin(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """p_y - max_{k != y} p_k for every sample: in [-1, 1], negative when another class wins.

    The AUM margin (:func:`noiseaudit.signals.recorder.margins`) taken on probabilities instead of logits.
    """
    return margins(probs, targets)


def per_sample_rate_step(log_rates: torch.Tensor, index: torch.Tensor, alignment: torch.Tensor,
                         valid: torch.Tensor | None, *, hyper_lr: float, log_min: float, log_max: float) -> None:
    """Functional kernel: in-place sparse update of ``log_rates[index]`` by the centred alignments.

    ``valid`` masks the samples that move (None: all of them); the centre is their mean.
    """
    if valid is None:
        delta = alignment - alignment.mean()
    else:
        mask = valid.to(alignment.dtype)
        delta = (alignment - (alignment * mask).sum() / mask.sum().clamp_min(1.0)) * mask
    updated = log_rates.index_select(0, index).add_(delta.to(log_rates.dtype), alpha=hyper_lr)
    log_rates.index_copy_(0, index, updated.clamp_(log_min, log_max))


class PerSampleRate:
    """Holds N per-sample learning rates and learns them by hypergradient descent.

    It composes with any base optimizer: weight the batch's per-sample losses
    with :meth:`weighted_loss`, step the base optimizer as usual, then call
    :meth:`step` with the same batch's pre-step logits and head inputs.

    Parameters
    ----------
    num_samples : int
        Number of training samples N; sample ids index the rates.
    num_classes : int
        Number of classes K.
    hyper_lr : float
        Step size beta of the log-rate update.
    ema : float
        Decay of the class reference gradients, in [0, 1).
    meta : {"auto", "given", "given+predicted"}
        Which classes' loss the meta-objective holds (see the module docstring);
        ``auto`` learns the ``given+predicted`` rates and the ``given`` ones side by side.
    margin_weight : float
        Weight lambda of the own-fit (probability margin) term of the meta-objective.
    init_rate, min_rate, max_rate : float
        Initial rate and clamp bounds, with 0 < min_rate <= init_rate <= max_rate.
    max_reference_size : int
        Largest K*K*(d+1) kept as class references; above it the batch is the reference.
    device : torch.device or str, optional
        Where the rates live (keep them beside the model).
    reduce_reference : callable, optional
        Called in place on each batch's class-reference update (and feature mean)
        before it enters the average (data-parallel training passes an all-reduce mean).
    center_features : bool
        Take the head inputs relative to their running mean (see the module docstring).
    trusted : torch.Tensor, optional
        (N,) bool mask of samples with verified labels (see the module docstring).
    trusted_weight : float
        Weight w in [0, 1] of the trusted references in the mix the alignments are taken against.
    trusted_ema : float
        Decay of the trusted references, in [0, 1).
    trusted_rate : float
        The fixed rate of trusted samples, within [min_rate, max_rate].
    trusted_all_weight : float
        Weight (>= 0) of the alignment with all classes' trusted references together, added to the
        per-class one (see the module docstring); 0 turns it off.
    """

    def __init__(self, num_samples: int, num_classes: int, *, hyper_lr: float = 0.05, ema: float = 0.9,
                 meta: str = "auto", margin_weight: float = 0.5, init_rate: float = 1.0, min_rate: float = 1e-2,
                 max_rate: float = 1e2,
                 max_reference_size: int = 2**24, device: torch.device | str | None = None,
                 reduce_reference: Callable[[torch.Tensor], Any] | None = None, center_features: bool = False,
                 trusted: torch.Tensor | None = None, trusted_weight: float = 0.5, trusted_ema: float = 0.97,
                 trusted_rate: float = 1.0, trusted_all_weight: float = 1.0):
        if num_samples < 1 or num_classes < 2:
            raise ValueError(f"need num_samples >= 1 and num_classes >= 2, got {num_samples}, {num_classes}")
        if not hyper_lr >= 0.0 or not math.isfinite(hyper_lr):
            raise ValueError(f"hyper_lr must be a finite non-negative number, got {hyper_lr}")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        if not margin_weight >= 0.0 or not math.isfinite(margin_weight):
            raise ValueError(f"margin_weight must be a finite non-negative number, got {margin_weight}")
        if meta not in META_OBJECTIVES:
            raise ValueError(f"meta must be one of {META_OBJECTIVES}, got {meta!r}")
        if not 0.0 < min_rate <= init_rate <= max_rate or not math.isfinite(max_rate):
            raise ValueError(f"need 0 < min_rate <= init_rate <= max_rate < inf, got "
                             f"{min_rate}, {init_rate}, {max_rate}")
        if not 0.0 <= trusted_weight <= 1.0:
            raise ValueError(f"trusted_weight must be in [0, 1], got {trusted_weight}")
        if not trusted_all_weight >= 0.0 or not math.isfinite(trusted_all_weight):
            raise ValueError(f"trusted_all_weight must be a finite non-negative number, got {trusted_all_weight}")
        if not 0.0 <= trusted_ema < 1.0:
            raise ValueError(f"trusted_ema must be in [0, 1), got {trusted_ema}")
        if not min_rate <= trusted_rate <= max_rate:
            raise ValueError(f"trusted_rate must be within [min_rate, max_rate], got {trusted_rate}")
        if trusted is not None and tuple(trusted.shape) != (num_samples,):
            raise ValueError(f"trusted must be a ({num_samples},) mask, got shape {tuple(trusted.shape)}")
        self.num_classes, self.hyper_lr, self.ema, self.meta = num_classes, float(hyper_lr), float(ema), meta
        self.margin_weight = float(margin_weight)
        self.log_min, self.log_max = math.log(min_rate), math.log(max_rate)
        self.max_reference_size = int(max_reference_size)
        self.reduce_reference = reduce_reference  # e.g. an all-reduce mean across data-parallel ranks
        self.log_rates = torch.full((num_samples,), math.log(init_rate), dtype=torch.float32, device=device)
        # meta="auto": the "given" rates, learned beside the weighting ("given+predicted") ones
        self.given_log_rates = self.log_rates.clone() if meta == "auto" else None
        self.reference: torch.Tensor | None = None  # (K, K, d+1) once the first batch is seen
        self.center_features = bool(center_features)
        self.feature_mean: torch.Tensor | None = None  # (d,) running mean of the head inputs, when centring
        self.trusted = None if trusted is None or not bool(trusted.any()) else trusted.to(device, torch.bool)
        self.trusted_weight, self.trusted_ema = float(trusted_weight), float(trusted_ema)
        self.trusted_all_weight = float(trusted_all_weight)
        self.trusted_reference: torch.Tensor | None = None  # (K, K, d+1), from trusted samples only
        if self.trusted is not None:
            for vector in self.log_rate_vectors():
                vector[self.trusted] = math.log(trusted_rate)

    @property
    def num_samples(self) -> int:
        return int(self.log_rates.shape[0])

    def rates(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """The rates eta (all of them, or those of ``index``)."""
        s = self.log_rates if index is None else self.log_rates.index_select(0, index)
        return s.exp()

    def log_rate_vectors(self) -> list[torch.Tensor]:
        """Every per-sample log-rate vector held (one, or two with ``meta="auto"``)."""
        return [self.log_rates] + ([] if self.given_log_rates is None else [self.given_log_rates])

    def named_rates(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch's rates by signal name: ``learned_lr``, plus ``learned_lr_given`` with ``meta="auto"``."""
        out = {"learned_lr": self.rates(index)}
        if self.given_log_rates is not None:
            out["learned_lr_given"] = self.given_log_rates.index_select(0, index).exp()
        return out

    def weighted_loss(self, losses: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Mean of the batch's per-sample ``losses`` weighted by their rates."""
        return (self.rates(index).to(losses.dtype) * losses).mean()

    @torch.no_grad()
    def step(self, index: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor, targets: torch.Tensor) -> None:
        """Update the rates of ``index`` from the batch's pre-step logits and head inputs."""
        probs = torch.softmax(logits.detach().float(), dim=1)
        err = probs - torch.nn.functional.one_hot(targets, probs.shape[1]).to(probs.dtype)
        feats1 = with_bias(self._centred(feats.detach().float()))
        k = self.num_classes
        given_alignment, valid = None, None
        if k * k * feats1.shape[1] > self.max_reference_size:
            alignment, valid = class_conditional_alignment(err, feats1[:, :-1], targets)
        else:
            batch_ref = class_reference_update(err, feats1, targets, self.rates(index), k)
            if self.reduce_reference is not None:
                self.reduce_reference(batch_ref)
            trusted_ref = None
            if self.trusted is not None:
                in_batch = self.trusted.index_select(0, index).to(err.dtype)
                trusted_ref = class_reference_update(err, feats1, targets, in_batch, k)
                if self.reduce_reference is not None:
                    self.reduce_reference(trusted_ref)
            if self.reference is None:
                self.reference, self.trusted_reference = batch_ref, trusted_ref
                return  # the first batch only builds the reference
            trusted_units = None if self.trusted_reference is None else unit_references(self.trusted_reference)
            alignment, given_alignment = self._reference_alignment(err, feats1, probs, targets,
                                                                   self._mixed_reference(trusted_units))
            toward_trusted = self._trusted_alignment(err, feats1, trusted_units)
            if toward_trusted is not None:
                alignment, given_alignment = alignment + toward_trusted, given_alignment + toward_trusted
            self.reference.mul_(self.ema).add_(batch_ref, alpha=1.0 - self.ema)
            if trusted_ref is not None:
                self.trusted_reference.mul_(self.trusted_ema).add_(trusted_ref, alpha=1.0 - self.trusted_ema)
        if self.trusted is not None:  # trusted rates stay fixed, and out of the batch centring
            untrusted = ~self.trusted.index_select(0, index)
            valid = untrusted if valid is None else valid & untrusted
        fit = self.margin_weight * probability_margin(probs, targets)
        kernel = dict(hyper_lr=self.hyper_lr, log_min=self.log_min, log_max=self.log_max)
        per_sample_rate_step(self.log_rates, index, alignment + fit, valid, **kernel)
        if self.given_log_rates is not None:
            given = alignment if given_alignment is None else given_alignment
            per_sample_rate_step(self.given_log_rates, index, given + fit, valid, **kernel)

    def _mixed_reference(self, trusted_units: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """The references the alignments are taken against: the data's own, or (with trusted samples,
        ``trusted_units`` = :func:`unit_references` of theirs) the per-class mix of the data's and the
        trusted ones, each scaled to unit norm first."""
        if trusted_units is None:
            return self.reference
        own, _ = unit_references(self.reference)
        trusted, seen = trusted_units
        weight = (self.trusted_weight * seen.to(own.dtype))[:, None, None]  # a class without trusted samples: own
        return (1.0 - weight) * own + weight * trusted

    def _trusted_alignment(self, err: torch.Tensor, feats1: torch.Tensor,
                           trusted_units: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor | None:
        """``trusted_all_weight`` * cos(g_i, sum_c T_c/|T_c|): each sample against every class's trusted
        reference at once. A wrong label of a sample that looks like class a meets the trusted samples of a,
        whose gradients oppose its own (the direction in which Ren et al.'s L2RW reweights against a clean
        set). None without trusted samples, or until every class has some: against a sum missing a class,
        that class's samples would all lose rate."""
        if trusted_units is None or self.trusted_all_weight == 0.0:
            return None
        trusted, seen = trusted_units
        if not bool(seen.all()):
            return None
        total = trusted.sum(dim=0, keepdim=True)
        return self.trusted_all_weight * reference_cosines(err, feats1, total).squeeze(1)

    def _centred(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats`` minus the running mean of the head inputs (updated with this batch), if centring."""
        if not self.center_features:
            return feats
        batch_mean = feats.mean(dim=0)
        if self.reduce_reference is not None:
            self.reduce_reference(batch_mean)
        if self.feature_mean is None:
            self.feature_mean = batch_mean
        else:
            self.feature_mean.mul_(self.ema).add_(batch_mean, alpha=1.0 - self.ema)
        return feats - self.feature_mean

    def _reference_alignment(self, err: torch.Tensor, feats1: torch.Tensor, probs: torch.Tensor,
                             targets: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alignment driving the rates, the "given" alignment) against ``reference``, the class
        references from before this batch."""
        cos = reference_cosines(err, feats1, reference)
        given = cos.gather(1, targets[:, None]).squeeze(1)
        if self.meta == "given":
            return given, given
        predicted = probs.argmax(dim=1)
        toward = cos.gather(1, predicted[:, None]).squeeze(1)
        return torch.where(predicted != targets, 0.5 * (given + toward), given), given

    def state_dict(self) -> dict[str, Any]:
        return {"log_rates": self.log_rates.detach().clone(),
                "given_log_rates": None if self.given_log_rates is None else self.given_log_rates.clone(),
                "reference": None if self.reference is None else self.reference.clone(),
                "center_features": self.center_features,
                "feature_mean": None if self.feature_mean is None else self.feature_mean.clone(),
                "trusted_reference": None if self.trusted_reference is None else self.trusted_reference.clone(),
                "trusted_weight": self.trusted_weight, "trusted_ema": self.trusted_ema,
                "trusted_all_weight": self.trusted_all_weight,
                "hyper_lr": self.hyper_lr, "ema": self.ema, "meta": self.meta, "margin_weight": self.margin_weight,
                "log_min": self.log_min, "log_max": self.log_max}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        log_rates = state["log_rates"]
        if log_rates.shape != self.log_rates.shape:
            raise ValueError(f"state holds {tuple(log_rates.shape)} rates, this optimizer has "
                             f"{tuple(self.log_rates.shape)}")
        self.log_rates.copy_(log_rates.to(self.log_rates.device, self.log_rates.dtype))
        given = state.get("given_log_rates")
        self.given_log_rates = None if given is None else given.to(self.log_rates.device, torch.float32).clone()
        ref = state.get("reference")
        self.reference = None if ref is None else ref.to(self.log_rates.device).clone()
        self.hyper_lr, self.ema, self.meta = float(state["hyper_lr"]), float(state["ema"]), state["meta"]
        self.margin_weight = float(state.get("margin_weight", 0.0))
        self.center_features = bool(state.get("center_features", False))
        mean = state.get("feature_mean")
        self.feature_mean = None if mean is None else mean.to(self.log_rates.device).clone()
        tref = state.get("trusted_reference")
        self.trusted_reference = None if tref is None else tref.to(self.log_rates.device).clone()
        self.trusted_weight = float(state.get("trusted_weight", self.trusted_weight))
        self.trusted_ema = float(state.get("trusted_ema", self.trusted_ema))
        self.trusted_all_weight = float(state.get("trusted_all_weight", self.trusted_all_weight))
        self.log_min, self.log_max = float(state["log_min"]), float(state["log_max"])
