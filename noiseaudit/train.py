"""The training loop: model + base optimizer + per-sample rates + signal recorder.

One pass over the data per epoch in seeded random order. With the
``learned-lr`` method every batch loss is weighted by the samples' learned
rates, which are then updated from the same forward pass (see
:mod:`noiseaudit.optim.per_sample_rate`); ``plain`` trains with uniform
rates and records the same loss and margin signals; ``dba`` updates each step
with the subset of the batch chosen by Dynamic Batch Adaptation
(:mod:`noiseaudit.optim.dba`) and records how often each sample is chosen.
The base learning rate follows ``schedule`` (:mod:`noiseaudit.optim.schedule`), and with
``layerwise`` each layer's rate is scaled by a multiplier from its own gradients
(:mod:`noiseaudit.optim.layerwise`). With ``average_last_epoch`` the final model, which
predicts every sample's label at the end, is the mean of the weights over the last epoch's
steps (:mod:`noiseaudit.optim.averaging`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from noiseaudit.checkpoint import Checkpointer, Interrupted
from noiseaudit.data.dataset import SampleData
from noiseaudit.distributed import Distributed, FeaturesAndLogits
from noiseaudit.errors import TrainingFailed, option
from noiseaudit.optim import PerSampleRate
from noiseaudit.optim.averaging import WeightAverage
from noiseaudit.optim.dba import DynamicBatchAdaptation
from noiseaudit.optim.layerwise import LayerwiseRates, layer_groups
from noiseaudit.optim.schedule import LRSchedule
from noiseaudit.signals import SignalRecorder, choose_rates

MAX_RECOVERIES = 3
PREDICT_BATCH = 64  # samples per forward pass of the final prediction: faster on CPU than 512 (bench/README.md)
# a learned-rate model that agrees with the given labels no more than this above a constant guess, with at least
# this share of its rates at their bounds, has collapsed (measured: 16-29% at the bounds when collapsed on digits,
# 0.2% in a healthy run)
COLLAPSE_MARGIN, COLLAPSE_AT_BOUNDS = 0.01, 0.1
# on_step(epoch, step, steps_per_epoch, mean_loss_or_None); mean loss is given at epoch end only.
StepCallback = Callable[[int, int, int, "float | None"], None]


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    method: str = "learned-lr"
    hyper_lr: float = 0.05
    meta: str = "auto"
    margin_weight: float = 0.5
    augment: bool = False
    schedule: str = "constant"
    precision: str = "fp32"  # "bf16": forward passes under bfloat16 autocast (losses and rate updates in fp32)
    optimizer: str = "sgd"  # the base optimizer: "sgd" (momentum, weight decay) or "adam" (lr, weight decay)
    trusted_weight: float = 0.5  # with trusted samples (data.trusted): weight of their class references
    trusted_rate: float = 1.0  # with trusted samples: their fixed rate
    layerwise: bool = False  # scale each layer's rate by a multiplier from its gradients (optim.layerwise)
    layerwise_rule: str = "grad-norm"  # the multiplier's curvature estimate: "grad-norm" or "secant"
    average_last_epoch: bool = False  # the final model is the mean of the last epoch's weights (frozen BatchNorm only)
    balance_classes: bool = False  # train on logits + log(class frequency); the model's own logits are then balanced


@dataclass
class TrainResult:
    signals: dict[str, np.ndarray]
    probs: np.ndarray  # (N, K) softmax of the final model, eval mode
    epoch_losses: list[float]
    rate_choice: dict[str, object]  # meta="auto": which rates rank, and why (empty otherwise)
    recoveries: list[dict[str, Any]] = field(default_factory=list)  # non-finite epochs rolled back
    switch_epoch: int | None = None  # two-regime: epochs trained at the large step
    layer_multipliers: dict[str, float] = field(default_factory=dict)  # layerwise: each layer's mean multiplier


class RunState:
    """Everything a resumed run needs: the parts being trained plus the loop's position."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, rates: PerSampleRate | None,
                 recorder: SignalRecorder, schedule: LRSchedule, gen: torch.Generator, base_lr: float,
                 loss_total: torch.Tensor, layerwise: LayerwiseRates | None = None,
                 average: WeightAverage | None = None):
        self.model, self.opt, self.rates, self.recorder, self.gen = model, opt, rates, recorder, gen
        self.layerwise, self.average = layerwise, average
        self.schedule, self.base_lr = schedule, base_lr
        self.epoch, self.step, self.order, self.loss_total = 0, 0, torch.zeros(0, dtype=torch.int64), loss_total
        self.epoch_losses: list[float] = []
        self.recoveries: list[dict[str, Any]] = []

    def state_dict(self, keep: bool = True) -> dict[str, Any]:
        """A deep copy, safe to keep while training goes on; ``keep=False``: the live tensors, to be
        serialised at once (a checkpoint), without doubling the per-sample state in memory."""
        state = {
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "rates": None if self.rates is None else self.rates.state_dict(),
            "recorder": self.recorder.state_dict(), "schedule": self.schedule.state_dict(),
            "layerwise": None if self.layerwise is None else self.layerwise.state_dict(),
            "average": None if self.average is None else self.average.state_dict(),
            "base_lr": self.base_lr, "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(), "epoch": self.epoch, "step": self.step, "order": self.order,
            "loss_total": self.loss_total, "epoch_losses": self.epoch_losses, "recoveries": self.recoveries}
        return copy.deepcopy(state) if keep else state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.rates is not None:
            self.rates.load_state_dict(state["rates"])
        self.recorder.load_state_dict(state["recorder"])
        self.schedule.load_state_dict(state["schedule"])
        if self.layerwise is not None:
            self.layerwise.load_state_dict(state["layerwise"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.base_lr = float(state["base_lr"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.step, self.order = int(state["epoch"]), int(state["step"]), state["order"].clone()
        self.loss_total = state["loss_total"].to(self.loss_total.device).clone()
        self.epoch_losses, self.recoveries = list(state["epoch_losses"]), list(state["recoveries"])


def normaliser(images: torch.Tensor, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std that :func:`as_input` standardises with, shaped (1, C, 1, 1).

    uint8 images (scaled to [0, 1]) get the model's own ``input_normalization`` (a
    pretrained network's, as (mean, std) in [0, 1] units) or else the dataset's
    per-channel statistics; float inputs (a frozen backbone's activations) are
    taken as they are (feature vectors arrive standardised).
    """
    fixed = getattr(model, "input_normalization", None)
    if images.is_floating_point() or fixed is not None:
        mean, std = (0.0, 1.0) if fixed is None else fixed
        shape = (1, images.shape[-3], 1, 1) if images.dim() >= 4 else (1, 1)  # feature vectors: (1, 1)
        return torch.full(shape, float(mean)), torch.full(shape, float(std))
    x = images.float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    return mean, std


def pick_views(chunk: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One stored view per sample, uniformly at random, from a (B, V, C, H, W) batch; a 4-D batch as it is."""
    if chunk.dim() != 5:
        return chunk
    view = torch.randint(0, chunk.shape[1], (chunk.shape[0],), generator=gen).to(chunk.device)
    return chunk[torch.arange(chunk.shape[0], device=chunk.device), view]


def as_input(chunk: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A batch of stored inputs as the model's float input: uint8 scaled to [0, 1], then standardised."""
    x = chunk.float()
    if chunk.dtype == torch.uint8:
        x.div_(255.0)
    return (x - mean) / std


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """The model's trainable parameters, each group with an ``lr_scale`` of the base rate.

    A model may define ``parameter_groups()`` (a pretrained body trained slower than its new head);
    otherwise every parameter that requires a gradient trains at the base rate.
    """
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else [
        {"params": [p for p in model.parameters() if p.requires_grad]}]
    return [{"lr_scale": 1.0, **g} for g in groups if g["params"]]


OPTIMIZERS = ("sgd", "adam")


def base_optimizer(cfg: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """SGD with momentum (the default) or Adam, at ``cfg.lr`` and ``cfg.weight_decay``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def random_shift_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to 1/8 of the side (edge padding) and horizontal flip."""
    b, c, h, w = x.shape
    p = max(1, h // 8)
    padded = F.pad(x, (p, p, p, p), mode="replicate")
    dy = torch.randint(0, 2 * p + 1, (b, 1), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * p + 1, (b, 1), generator=gen).to(x.device)
    rows = dy + torch.arange(h, device=x.device)
    cols = dx + torch.arange(w, device=x.device)
    flip = (torch.rand(b, 1, generator=gen) < 0.5).to(x.device)
    cols = torch.where(flip, cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def train(data: SampleData, model: nn.Module, cfg: TrainConfig, device: torch.device, gen: torch.Generator,
          on_step: StepCallback | None = None, checkpoints: Checkpointer | None = None,
          resume: bool = False, dist: Distributed | None = None) -> TrainResult:
    """Train ``model`` on ``data`` and return per-sample signals and final probabilities.

    With ``checkpoints`` the state is saved at every epoch end and when SIGINT
    or SIGTERM arrives (then :class:`Interrupted` is raised); ``resume``
    continues from the saved state. A non-finite epoch loss or rate rolls back
    to the last good epoch and halves the learning rate, at most
    ``MAX_RECOVERIES`` times. With ``dist`` (under torchrun) this process trains
    on its shard of every epoch (see :mod:`noiseaudit.distributed`).
    """
    n = len(data)
    inputs, targets = data.inputs.to(device), data.targets.to(device)
    prior = class_prior_shift(targets, len(data.classes)) if cfg.balance_classes else None
    mean, std = (t.to(device) for t in normaliser(data.inputs, model))
    model.to(device)
    groups = parameter_groups(model)
    opt = base_optimizer(cfg, layer_groups(model, groups) if cfg.layerwise else groups)
    layerwise = LayerwiseRates(opt.param_groups, cfg.layerwise_rule) if cfg.layerwise else None
    rates = None
    if cfg.method == "learned-lr":
        rates = PerSampleRate(n, len(data.classes), hyper_lr=cfg.hyper_lr, meta=cfg.meta,
                              margin_weight=cfg.margin_weight, device=device,
                              reduce_reference=None if dist is None else dist.mean_,
                              center_features=bool(getattr(model, "center_head_inputs", False)),
                              trusted=data.trusted, trusted_weight=cfg.trusted_weight, trusted_rate=cfg.trusted_rate)
    rate_names = ("learned_lr", "learned_lr_given") if rates is not None and rates.meta == "auto" else ("learned_lr",)
    dba = DynamicBatchAdaptation(model) if cfg.method == "dba" else None
    recorder = SignalRecorder(n, device, rate_names, count_names=("dba_selected",) if dba is not None else ())
    steps = max(1, -(-n // cfg.batch_size))
    schedule = LRSchedule(cfg.schedule, cfg.epochs, steps, base_lr=cfg.lr, num_classes=len(data.classes))
    average = WeightAverage(model) if cfg.average_last_epoch else None
    run = RunState(model, opt, rates, recorder, schedule, gen, cfg.lr, loss_total=torch.zeros((), device=device),
                   layerwise=layerwise, average=average)
    if resume and checkpoints is not None:
        run.load_state_dict(checkpoints.load())
    net: nn.Module = FeaturesAndLogits(model)
    if dist is not None:
        net = DistributedDataParallel(net)
    # The last good epoch end, to roll back to after a non-finite epoch: on disk when checkpointing (the
    # per-sample state is then held once, not twice; bench/scale.py), else a copy in memory.
    last_good = run.state_dict() if checkpoints is None else None
    if checkpoints is not None and not resume:
        checkpoints.save(run.state_dict(keep=False))
    with checkpoints.catching_signals() if checkpoints is not None else nullcontext():
        while run.epoch < cfg.epochs:
            model.train()
            if run.step == 0:
                run.order, run.loss_total = torch.randperm(n, generator=gen), torch.zeros((), device=device)
                if dist is not None:  # with no learned rates (--method plain, dba) too: end_epoch sums the loss
                    dist.begin_epoch([] if rates is None else rates.log_rate_vectors())
            batches = torch.tensor_split((run.order if dist is None else dist.shard(run.order)).to(device), steps)
            for step in range(run.step, steps):
                idx = batches[step]
                x = as_input(pick_views(inputs[idx], gen), mean, std)
                if cfg.augment and data.views == 1 and not data.is_features:
                    x = random_shift_flip(x, gen)
                y = targets[idx]
                with autocast(device, cfg.precision):
                    feats, logits = net(x)
                logits = logits.float() if prior is None else logits.float() + prior
                losses = F.cross_entropy(logits, y, reduction="none")
                mean_loss = batch_loss(losses, dist) if schedule.needs_loss else None
                base = run.base_lr * schedule.factor(run.epoch, step, mean_loss)
                for group in opt.param_groups:
                    group["lr"] = base * group["lr_scale"]
                selected = None
                if rates is not None:
                    loss = rates.weighted_loss(losses, idx)
                elif dba is not None:
                    selected = dba.select(losses, logits, feats, y)
                    loss = (losses * selected).sum() / selected.sum()
                else:
                    loss = losses.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if layerwise is not None:
                    for group, m in zip(opt.param_groups, layerwise.multipliers([g["lr"] for g in opt.param_groups])):
                        group["lr"] *= float(m)
                opt.step()
                if average is not None and run.epoch == cfg.epochs - 1:
                    average.update(model)
                if rates is not None:
                    rates.step(idx, logits, feats, y)
                recorder.observe(idx, losses, logits, y, None if rates is None else rates.named_rates(idx),
                                 None if selected is None else {"dba_selected": selected})
                run.loss_total += losses.detach().sum()
                run.step = step + 1
                if on_step is not None:
                    on_step(run.epoch, step + 1, steps, None)
                if checkpoints is not None and checkpoints.stop_requested:
                    checkpoints.save(run.state_dict(keep=False))
                    raise Interrupted(f"interrupted at epoch {run.epoch + 1}, step {step + 1}; checkpoint saved to "
                                      f"{checkpoints.path}; {checkpoints.resume_advice()}",
                                      checkpoints.stop_requested)
            if dist is not None:
                dist.end_epoch([] if rates is None else rates.log_rate_vectors(), run.loss_total)
                if rates is not None:
                    recorder.set_last_rates(rates.named_rates(torch.arange(n, device=device)))
            epoch_loss = float(run.loss_total) / n
            if not (math.isfinite(epoch_loss) and (rates is None or bool(torch.isfinite(rates.log_rates).all()))):
                recover(run, last_good if last_good is not None else checkpoints.load(), epoch_loss)
                continue
            run.epoch_losses.append(epoch_loss)
            run.epoch, run.step = run.epoch + 1, 0
            if schedule.end_epoch(run.epoch_losses):
                recorder.mark_regime()
            if checkpoints is not None:
                checkpoints.save(run.state_dict(keep=False))
            else:
                last_good = run.state_dict()
            if on_step is not None:
                on_step(run.epoch - 1, steps, steps, epoch_loss)
    if dba is not None:
        dba.remove()
    if dist is not None:
        dist.end_training(recorder.sums())
    if average is not None:
        average.copy_to(model)
    with autocast(device, cfg.precision):
        probs = predict(model, inputs, mean, std)
    if not np.isfinite(probs).all():  # the epoch losses were finite, but a last step (or the average) was not
        raise TrainingFailed("training diverged: the final model's predictions are not finite; try a lower "
                             f"{option('lr')}")
    predicted, targets = probs.argmax(axis=1), data.targets.numpy()
    if rates is not None:
        refuse_collapse(predicted, targets, rates)
    signals, choice = choose_rates(recorder.summary(), targets, predicted, len(data.classes))
    return TrainResult(signals=signals, probs=probs, epoch_losses=run.epoch_losses, rate_choice=choice,
                       recoveries=run.recoveries, switch_epoch=schedule.switch_epoch,
                       layer_multipliers={} if layerwise is None else layerwise.summary())


def refuse_collapse(predicted: np.ndarray, targets: np.ndarray, rates: PerSampleRate) -> None:
    """Raise if the model trained under learned rates is no better than always predicting the most common given
    label while many of its rates sit at their bounds: too large a rate step (--hyper-lr) can drive the rates to
    their bounds and the model to a constant, with a finite loss that the divergence check does not see, and a
    ranking that would mean nothing."""
    agreement = float((predicted == targets).mean())
    constant = float(np.bincount(targets).max()) / len(targets)
    log_rates = rates.log_rates.float()
    at_bounds = float(((log_rates <= rates.log_min + 1e-3) | (log_rates >= rates.log_max - 1e-3)).float().mean())
    if agreement > constant + COLLAPSE_MARGIN or at_bounds < COLLAPSE_AT_BOUNDS:
        return  # a tiny or hard dataset can leave a weak model too, but with its rates inside their bounds
    raise TrainingFailed(f"training collapsed: the model agrees with {agreement:.1%} of the given labels, no better "
                          f"than always predicting the most common one ({constant:.1%}), and {at_bounds:.0%} of the "
                          f"learned rates sit at their bounds; try a lower {option('hyper_lr')} (this run's was "
                          f"{rates.hyper_lr:g})")


def batch_loss(losses: torch.Tensor, dist: Distributed | None) -> float:
    """The batch's mean training loss, averaged over the ranks under torchrun (so that all step alike)."""
    mean = losses.detach().mean()
    return float(mean if dist is None else dist.mean_(mean.clone()))


def autocast(device: torch.device, precision: str) -> Any:
    """bfloat16 autocast for ``precision="bf16"``, otherwise nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def recover(run: RunState, last_good: dict[str, Any], epoch_loss: float) -> None:
    """Roll back to the last good epoch end and halve the learning rate, or give up with a clear error."""
    what = "loss" if not math.isfinite(epoch_loss) else "learned rate"
    if len(run.recoveries) >= MAX_RECOVERIES:
        raise TrainingFailed(f"training diverged at epoch {run.epoch + 1} (non-finite {what}) even after "
                              f"{MAX_RECOVERIES} restarts at a lower learning rate; try a lower {option('lr')}")
    recoveries = run.recoveries
    run.load_state_dict(last_good)
    run.base_lr *= 0.5
    run.recoveries = [*recoveries, {"epoch": run.epoch + 1, "non_finite": what, "new_lr": run.base_lr}]


def class_prior_shift(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """log of each class's share of ``targets``, added to the logits in training (logit adjustment, Menon et al.
    2021, arXiv:2007.07314): the model then learns logits free of the class frequencies, so that its softmax, the
    report's probabilities, no longer favours a large class over a small one. A constant on balanced labels, where
    it changes nothing. A class with no sample (none here: classes come from the labels) would get log 0."""
    counts = torch.bincount(targets, minlength=num_classes).float()
    return torch.log(counts / counts.sum())


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
            batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Softmax probabilities of every sample under the model in eval mode (averaged over stored views)."""
    model.eval()
    out = []
    for chunk in images.split(batch_size):
        views = chunk.unbind(1) if chunk.dim() == 5 else (chunk,)
        out.append(torch.stack([torch.softmax(model(as_input(v, mean, std)).float(), dim=1) for v in views]).mean(0))
    return torch.cat(out).cpu().numpy()
