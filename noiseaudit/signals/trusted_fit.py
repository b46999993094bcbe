"""The trusted set's second use: fit a copy of the trained model to the verified labels, and read how
much the fitted copy believes each sample's given label.

A model trained on the given labels also learns wrong labels that look like their label: similar
images carry the same mistake, so the model fits it as a pattern, and its rates and probabilities
agree with it. A short fit to the verified labels alone moves the model's boundary back where such
mistakes cluster, so the fitted copy doubts them more than the trained model does. With a trusted
set the scan ranks by the mean of two ranks, the learned rate's and this probability's
(:func:`mixed_score`); on instance-dependent noise that ranks the wrong labels well above the rates
alone (bench/trusted_finetune.py).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from noiseaudit.data.dataset import SampleData
from noiseaudit.train import as_input, autocast, normaliser, pick_views, predict

FIT_LR, FIT_EPOCHS, FIT_BATCH = 0.02, 20, 32  # SGD with momentum 0.9 over the trusted samples only


def trusted_fit_probs(model: torch.nn.Module, data: SampleData, device: torch.device, seed: int, *,
                      lr: float = FIT_LR, epochs: int = FIT_EPOCHS, precision: str = "fp32") -> np.ndarray:
    """Softmax probabilities (N, K) of every sample under a copy of ``model`` fitted further to the
    labels of the samples ``data.trusted`` marks, forward passes at the training's ``precision``.
    ``model`` itself is left as it is."""
    tuned = copy.deepcopy(model).to(device)
    mean, std = (t.to(device) for t in normaliser(data.inputs, tuned))
    opt = torch.optim.SGD([p for p in tuned.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    rows = torch.from_numpy(np.flatnonzero(data.trusted.numpy()))
    gen = torch.Generator()
    gen.manual_seed(seed)
    for _ in range(epochs):
        tuned.train()
        for batch in torch.randperm(rows.numel(), generator=gen).split(FIT_BATCH):
            if batch.numel() < 2:  # batch norm cannot train on one sample
                continue
            idx = rows[batch]
            x = as_input(pick_views(data.inputs[idx], gen).to(device), mean, std)
            with autocast(device, precision):
                logits = tuned(x)
            loss = F.cross_entropy(logits.float(), data.targets[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with autocast(device, precision):
        return predict(tuned, data.inputs.to(device), mean, std)


def mixed_score(score: np.ndarray, fit_given_prob: np.ndarray) -> np.ndarray:
    """Lower = more suspect: the sum of the ranks (lowest first) of ``score`` (the log learned rate)
    and of the fitted copy's probability of the given label."""
    def ranks(v: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(np.float64)
    return ranks(np.asarray(score, dtype=np.float64)) + ranks(np.asarray(fit_given_prob, dtype=np.float64))
