"""What else a 2% trusted set could add on instance noise: three probes of issue 16's missed floor.

    python bench/trusted_probes.py                                   # Fashion-MNIST 10k and MNIST 5k, inst20
    python bench/trusted_probes.py --datasets mnist5k --seeds 0 --l2rw-seeds 0
    python bench/trusted_probes.py --signals-only                    # add the signals_* scores to the stored cells

Each cell is a row of ``bench/detect.py --trusted``: the same instance noise, 2% of the samples
trusted (``trusted_cells.trusted_mask``, carrying their true label), and every AP on the rows not
trusted. Per cell:

- ``rate_none`` / ``rate_trusted``: the learned rates without and with the trusted set (the rows
  of results/detect_trusted*.json, rerun); ``rate_labels_only``: the trusted rows' verified labels
  put in the labels, but no trusted mask (so no trusted references, no fixed rate): how much of the
  gain is the corrected labels alone;
- ``prior_*``: the trusted run's rates re-ranked by each given class's noise rate, as estimated
  from the trusted rows (their given label against the verified one; ``est``, shrunk toward the
  overall rate by 5 pseudo-rows) or as it truly is (``true``, a bound no 2% reaches). ``quota``
  ranks each sample by its rank within its class over the class's expected count of wrong labels;
  ``mixture`` fits two Gaussians to the log rates and takes the posterior of the lower one under
  the class's prior;
- ``signals_oracle`` / ``signals_class_oracle``: the best any re-ranking of the trusted run's own
  per-sample signals (final and mean log rate, mean loss, mean margin, log p(given), log of the
  strongest other class; ``class`` adds the given class as one-hot) could do: a logistic regression
  fitted on the **truth** of every untrusted row, scored out of fold (5 shuffled folds), a bound;
  ``signals_calibrated``: the same fitted on what a user could verify further and hold back for
  calibration, the truth of a random 2% of the untrusted rows (beyond the trusted 2%; mean over 20
  draws, scored on the rest, its change against the rate on the same rows, ``signals_calibrated_delta``);
- ``ceiling``: p(given label) out of fold from 5 plain models, each trained on the **true** labels
  of the other four fifths: what a model never shown the wrong labels can tell, an upper bound;
- ``l2rw`` (``--l2rw-seeds``): the anchor the issue names. Each step every sample's weight is
  L2RW's (Ren et al. 2018) first-order meta-gradient at zero weights, max(0, g_i . G_T), with G_T
  the gradient of a trusted batch through the whole network (one forward-mode JVP gives every
  g_i . G_T); trusted samples keep the batch's largest weight. The score is that alignment
  divided by the batch's mean absolute alignment, averaged over the steps.

Results: bench/results/trusted_probes.json (per seed and means).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import EPOCHS, load, make_noise, run
from detect import cleanlab_cv
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler
from torch.func import functional_call, jvp
from trusted_cells import mean_aps, trusted_mask

from noiseaudit.metrics import ranking_metrics
from noiseaudit.models import build_model, default_model
from noiseaudit.runtime import seed_everything
from noiseaudit.scan import ranking_score
from noiseaudit.train import TrainConfig, as_input, normaliser

RESULTS = Path(__file__).resolve().parent / "results"
FRACTION, SHRINK = 0.02, 5.0


def class_rates(wrong: np.ndarray, given: np.ndarray, classes: int, shrink: float = 0.0) -> np.ndarray:
    """Share of wrong labels per given class, shrunk toward the overall share by ``shrink`` pseudo-rows."""
    overall = wrong.mean()
    return np.array([(wrong[given == c].sum() + shrink * overall) / ((given == c).sum() + shrink)
                     for c in range(classes)])


def quota_score(score: np.ndarray, given: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Lower = more suspect: rank within the given class over that class's expected count of wrong labels."""
    out = np.empty(score.size)
    for c in range(prior.size):
        m = given == c
        out[m] = (np.argsort(np.argsort(score[m])) + 1) / max(prior[c] * m.sum(), 1e-3)
    return out


def mixture_score(score: np.ndarray, given: np.ndarray, prior: np.ndarray, seed: int) -> np.ndarray:
    """Lower = more suspect: minus the log odds of the lower of two Gaussians on the score, under the class prior."""
    gm = GaussianMixture(2, random_state=seed).fit(score[:, None])
    low = int(np.argmin(gm.means_[:, 0]))
    post = np.clip(gm.predict_proba(score[:, None])[:, low], 1e-12, 1 - 1e-12)
    p = np.clip(prior[given], 1e-4, 1 - 1e-4)
    log_odds = np.log(post / (1 - post)) - np.log(gm.weights_[low] / gm.weights_[1 - low]) + np.log(p / (1 - p))
    return -log_odds


def signal_features(signals: dict[str, np.ndarray], probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """The run's own per-sample signals as standardised columns, then the given class one-hot (``classes`` columns)."""
    rows = np.arange(given.size)
    others = probs.copy()
    others[rows, given] = -1.0
    cols = [np.log(signals["learned_lr"]), np.log(signals["learned_lr_mean"]), signals["loss"], signals["margin"],
            np.log(np.clip(probs[rows, given], 1e-6, 1.0)), np.log(np.clip(others.max(1), 1e-6, 1.0))]
    return np.column_stack([StandardScaler().fit_transform(np.column_stack(cols)), np.eye(probs.shape[1])[given]])


def signal_scores(feats: np.ndarray, truth: np.ndarray, rate: np.ndarray, seed: int) -> tuple[dict[str, float], float]:
    """AP of signal combinations fitted on the truth: all rows out of fold, or a 2% draw; and that draw's mean
    change in AP against the rate on the same rows."""
    ap = lambda t, s: ranking_metrics(t, s)["average_precision"]  # noqa: E731
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    out = {}
    for name, x in {"signals_oracle": feats[:, :6], "signals_class_oracle": feats}.items():
        fitted = LogisticRegression(max_iter=5000)
        out[name] = ap(truth, cross_val_predict(fitted, x, truth, cv=folds, method="predict_proba")[:, 1])
    rng, calibrated, delta = np.random.default_rng(seed), [], []
    for _ in range(20):
        held = np.zeros(truth.size, dtype=bool)
        held[rng.choice(truth.size, int(round(FRACTION * truth.size)), replace=False)] = True
        fitted = LogisticRegression(C=0.1, max_iter=5000).fit(feats[held, :6], truth[held])
        calibrated.append(ap(truth[~held], fitted.predict_proba(feats[~held, :6])[:, 1]))
        delta.append(calibrated[-1] - ap(truth[~held], -rate[~held]))
    return out | {"signals_calibrated": float(np.mean(calibrated))}, float(np.mean(delta))


def l2rw_score(x: np.ndarray, labels: np.ndarray, trusted: np.ndarray, epochs: int, seed: int,
               lr: float = 0.05) -> np.ndarray:
    """Mean normalised alignment g_i . G_T over training under L2RW's weights (lower = more suspect)."""
    gen = seed_everything(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels).long()
    model = build_model(default_model(xt.shape[1], xt.shape[-1]), xt.shape[1], xt.shape[-1], int(labels.max()) + 1)
    mean, std = normaliser(xt)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    pool, is_trusted = torch.from_numpy(np.flatnonzero(trusted)), torch.from_numpy(trusted)
    total, seen = torch.zeros(labels.size), torch.zeros(labels.size)
    for _ in range(epochs):
        for batch in torch.randperm(labels.size, generator=gen).split(128):
            model.train()
            params = {k: v.detach().requires_grad_() for k, v in model.named_parameters()}
            buffers = {k: v.clone() for k, v in model.named_buffers()}
            tb = pool[torch.randperm(pool.numel(), generator=gen)[:128]]
            trusted_loss = F.cross_entropy(functional_call(model, (params, buffers), (as_input(xt[tb], mean, std),)),
                                           yt[tb])
            direction = dict(zip(params, torch.autograd.grad(trusted_loss, list(params.values()))))
            xb = as_input(xt[batch], mean, std)

            def losses(p: dict[str, torch.Tensor]) -> torch.Tensor:
                out = functional_call(model, (p, {k: v.clone() for k, v in buffers.items()}), (xb,))
                return F.cross_entropy(out, yt[batch], reduction="none")

            _, align = jvp(losses, ({k: v.detach() for k, v in params.items()},), (direction,))
            align = align.detach()
            total[batch] += align / (align.abs().mean() + 1e-12)
            seen[batch] += 1
            w = align.clamp(min=0)
            w = torch.where(is_trusted[batch], w.max().clamp(min=1e-12), w)
            loss = (w / w.sum().clamp(min=1e-12) * F.cross_entropy(model(xb), yt[batch], reduction="none")).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (total / seen.clamp(min=1)).numpy()


def probe_cell(name: str, x: np.ndarray, y: np.ndarray, seed: int, with_l2rw: bool, signals_only: bool = False) -> dict:
    """Every probe of one cell; ``signals_only``: the trusted run and the ``signals_*`` scores alone."""
    epochs, classes = EPOCHS[name], int(y.max()) + 1
    noisy = make_noise(x, y, "inst20", seed)
    trusted = trusted_mask(y.size, FRACTION, seed)
    labels = np.where(trusted, y, noisy.labels)
    keep, wrong = ~trusted, noisy.labels != y
    truth, given = wrong[keep], noisy.labels[keep]
    ap = lambda suspect: ranking_metrics(truth, suspect)["average_precision"]  # noqa: E731  (higher = more suspect)
    t0 = time.perf_counter()
    with_set = run(x, labels, TrainConfig(epochs=epochs), seed, trusted=torch.from_numpy(trusted))
    rate = ranking_score(with_set.result.signals, "learned-lr")[keep]
    out = {"dataset": name, "seed": seed, "ap": {"rate_trusted": ap(-rate)}}
    feats = signal_features(with_set.result.signals, with_set.result.probs, labels)[keep]
    signal_aps, out["signals_calibrated_delta"] = signal_scores(feats, truth, rate, seed)
    out["ap"] |= signal_aps
    if signals_only:
        return out
    none = ranking_score(run(x, noisy.labels, TrainConfig(epochs=epochs), seed).result.signals, "learned-lr")[keep]
    fixed_only = ranking_score(run(x, labels, TrainConfig(epochs=epochs), seed).result.signals, "learned-lr")[keep]
    out["ap"] = {"rate_none": ap(-none), "rate_labels_only": ap(-fixed_only)} | out["ap"]
    priors = {"est": class_rates(wrong[trusted], noisy.labels[trusted], classes, SHRINK),
              "true": class_rates(truth, given, classes)}
    for kind, prior in priors.items():
        out["ap"][f"prior_quota_{kind}"] = ap(-quota_score(rate, given, prior))
        out["ap"][f"prior_mixture_{kind}"] = ap(-mixture_score(rate, given, prior, seed))
    probs, _ = cleanlab_cv(x, y, TrainConfig(epochs=epochs, method="plain"), seed, "cpu")  # the TRUE labels
    out["ap"]["ceiling"] = ap(-probs[np.arange(y.size), noisy.labels][keep])
    out["ceiling_accuracy"] = float((probs.argmax(1) == y).mean())
    if with_l2rw:
        t1 = time.perf_counter()
        out["ap"]["l2rw"] = ap(-l2rw_score(x, labels, trusted, epochs, seed)[keep])
        out["l2rw_seconds"] = time.perf_counter() - t1
    out["seconds"] = time.perf_counter() - t0
    return out


def merge_signals(stored: list[dict], new: dict) -> dict:
    """Put a ``signals_only`` cell's scores into its stored cell, once its trusted run reproduces the stored one."""
    cell = next(c for c in stored if (c["dataset"], c["seed"]) == (new["dataset"], new["seed"]))
    if new["ap"]["rate_trusted"] != cell["ap"]["rate_trusted"]:
        raise SystemExit(f"{new['dataset']} seed {new['seed']}: the trusted run gives AP {new['ap']['rate_trusted']}, "
                         f"not the stored {cell['ap']['rate_trusted']}; rerun every probe instead")
    cell["ap"] |= new["ap"]
    cell["signals_calibrated_delta"] = new["signals_calibrated_delta"]
    return cell


def summarise(cells: list[dict]) -> dict[str, dict]:
    """Per dataset and score: mean AP, its mean difference from ``rate_none`` on the same seeds, and the seeds."""
    return mean_aps(cells, lambda c: c["dataset"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="fmnist10k,mnist5k")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--l2rw-seeds", default="0,1")
    ap.add_argument("--out", type=Path, default=RESULTS / "trusted_probes.json")
    ap.add_argument("--signals-only", action="store_true",
                    help="run the trusted run alone and add its signals_* scores to the cells stored in --out")
    args = ap.parse_args()
    l2rw_seeds = {int(s) for s in args.l2rw_seeds.split(",") if s}
    cells = json.loads(args.out.read_text())["cells"] if args.signals_only else []
    for name in args.datasets.split(","):
        x, y = load(name)
        for seed in map(int, args.seeds.split(",")):
            if args.signals_only:
                cell = merge_signals(cells, probe_cell(name, x, y, seed, False, signals_only=True))
            else:
                cells.append(cell := probe_cell(name, x, y, seed, seed in l2rw_seeds))
            print(name, seed, {k: round(v, 4) for k, v in cell["ap"].items()}, flush=True)
            args.out.write_text(json.dumps({"fraction": FRACTION, "noise": "inst20", "cells": cells,
                                            "summary": summarise(cells), "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
