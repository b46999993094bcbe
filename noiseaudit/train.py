"""The training loop: model + base optimizer + per-sample rates + signal recorder.

One pass over the data per epoch in seeded random order. With the
``learned-lr`` method every batch loss is weighted by the samples' learned
rates, which are then updated from the same forward pass (see
:mod:`noiseaudit.optim.per_sample_rate`); ``plain`` trains with uniform
rates and records the same loss and margin signals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from noiseaudit.data.dataset import ImageDataset
from noiseaudit.errors import NoiseAuditError
from noiseaudit.optim import PerSampleRate
from noiseaudit.signals import SignalRecorder, choose_rates

METHODS = ("learned-lr", "plain")
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
    hyper_lr: float = 0.2
    meta: str = "auto"
    augment: bool = False


@dataclass
class TrainResult:
    signals: dict[str, np.ndarray]
    probs: np.ndarray  # (N, K) softmax of the final model, eval mode
    epoch_losses: list[float]
    rate_choice: dict[str, object]  # meta="auto": which rates rank, and why (empty otherwise)


def normaliser(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    return mean, std


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


def train(data: ImageDataset, model: nn.Module, cfg: TrainConfig, device: torch.device,
          gen: torch.Generator, on_step: StepCallback | None = None) -> TrainResult:
    """Train ``model`` on ``data`` and return per-sample signals and final probabilities."""
    n = len(data)
    images, targets = data.images.to(device), data.targets.to(device)
    mean, std = (t.to(device) for t in normaliser(data.images))
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rates = None
    if cfg.method == "learned-lr":
        rates = PerSampleRate(n, len(data.classes), hyper_lr=cfg.hyper_lr, meta=cfg.meta, device=device)
    rate_names = ("learned_lr", "learned_lr_given") if rates is not None and rates.meta == "auto" else ("learned_lr",)
    recorder = SignalRecorder(n, device, rate_names)
    steps = max(1, -(-n // cfg.batch_size))
    epoch_losses: list[float] = []
    for epoch in range(cfg.epochs):
        model.train()
        loss_total = torch.zeros((), device=device)
        order = torch.randperm(n, generator=gen).to(device)
        for step, idx in enumerate(torch.tensor_split(order, steps)):
            x = (images[idx].float().div_(255.0) - mean) / std
            if cfg.augment:
                x = random_shift_flip(x, gen)
            y = targets[idx]
            feats = model.forward_features(x)
            logits = model.head(feats)
            losses = F.cross_entropy(logits, y, reduction="none")
            loss = rates.weighted_loss(losses, idx) if rates is not None else losses.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if rates is not None:
                rates.step(idx, logits, feats, y)
            recorder.observe(idx, losses, logits, y, None if rates is None else rates.named_rates(idx))
            loss_total += losses.detach().sum()
            if on_step is not None:
                on_step(epoch, step + 1, steps, None)
        epoch_losses.append(float(loss_total) / n)
        if not np.isfinite(epoch_losses[-1]):
            raise NoiseAuditError(f"training diverged at epoch {epoch + 1} (non-finite loss); try a lower --lr")
        if on_step is not None:
            on_step(epoch, steps, steps, epoch_losses[-1])
    probs = predict(model, images, mean, std, batch_size=max(cfg.batch_size, 512))
    signals, choice = choose_rates(recorder.summary(), data.targets.numpy(), probs.argmax(axis=1), len(data.classes))
    return TrainResult(signals=signals, probs=probs, epoch_losses=epoch_losses, rate_choice=choice)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
            batch_size: int = 512) -> np.ndarray:
    """Softmax probabilities of every sample under the model in eval mode."""
    model.eval()
    out = [torch.softmax(model((chunk.float().div_(255.0) - mean) / std).float(), dim=1)
           for chunk in images.split(batch_size)]
    return torch.cat(out).cpu().numpy()
