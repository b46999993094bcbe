"""Meta-train the MLR-SNet schedule network that ships in noiseaudit/optim/mlr_snet.npz.

    python bench/meta_train_mlr_snet.py                          # the shipped net (the defaults below)
    python bench/meta_train_mlr_snet.py --out /tmp/net.npz --log /tmp/net.json --interval 2 --meta-lr 3e-3

Data: Fashion-MNIST's 60,000 training images minus the 10,000 that ``bench/common.py``'s
``fmnist10k`` uses (so that bench/schedules.py's Fashion-MNIST cell is not trained on). From the
other 50,000, a fixed **meta split** of 1,000 clean images, and for every episode a training set of
10,000 drawn from the rest: the two never overlap (the official code's do; see issue 17). Labels are
clean unless ``--noisy`` (every other episode with 40% symmetric noise).

An episode trains the scan's small CNN from a fresh initialisation for 10 epochs (batch 128, SGD
momentum 0.9, weight decay 5e-4, uniform per-sample rates) at the rate the net gives for each
batch's mean loss; ``--learners`` episodes run at once, started a fraction of an episode apart, so
that the net meets early and late training side by side. Every ``--interval`` steps of a learner
the net is meta-updated first (:func:`noiseaudit.optim.mlr_snet.meta_objective`): one virtual step
of the SGD update the model is about to take, theta' = theta - eta (mu buf + g + wd theta), with
eta = gamma net(loss) carrying the graph (plus ``--lookahead`` more virtual steps on random training
batches); the cross-entropy of a meta batch under theta'; Adam on the net (weight decay 1e-4). The
net's output bias starts where the rate is the scan's hand-set 0.05, so the first steps do not
diverge before the net has learned anything.

``--unrolled`` (a variant, not shipped) differentiates through the look-ahead steps as well: each virtual
step's gradient is taken with its graph, so the meta-gradient carries the second-order terms that
:func:`~noiseaudit.optim.mlr_snet.meta_objective`'s look-ahead leaves out (it holds the step directions fixed).

At the end the frozen net and the constant 0.05 each train one more episode on a fresh draw, scored
on the meta split (``frozen_check``). Writes the weights (float32 .npz, no pickle) and the log
(per episode: the rate per epoch and the meta-split accuracy). What the variants did is in
bench/README.md ("MLR-SNet and layer-wise rates").
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fashion_mnist import load_fashion_mnist
from torch.func import functional_call

from noiseaudit.models import build_model
from noiseaudit.noise import inject_noise
from noiseaudit.optim.mlr_snet import (SHIPPED, MLRSNet, MLRSNetSchedule, gamma, meta_objective, save_weights,
                                       virtual_step_start)
from noiseaudit.runtime import seed_everything
from noiseaudit.train import as_input, normaliser, predict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MOMENTUM, WEIGHT_DECAY, BATCH, EPOCHS, START_RATE = 0.9, 5e-4, 128, 10, 0.05


def splits(seed: int = 1, meta_size: int = 1_000) -> tuple[np.ndarray, np.ndarray]:
    """(pool, meta): Fashion-MNIST train indices outside fmnist10k, and a disjoint clean meta split."""
    bench_subset = np.random.default_rng(0).choice(60_000, 10_000, replace=False)  # common.load("fmnist10k")
    rest = np.setdiff1d(np.arange(60_000), bench_subset)
    rest = np.random.default_rng(seed).permutation(rest)
    return rest[meta_size:], rest[:meta_size]


def unrolled_objective(net: MLRSNet, state: tuple[torch.Tensor, torch.Tensor], loss: torch.Tensor, bound: float,
                       model: torch.nn.Module, opt: torch.optim.Optimizer, meta_inputs: torch.Tensor,
                       meta_targets: torch.Tensor, momentum: float, weight_decay: float,
                       lookahead: list[tuple[torch.Tensor, torch.Tensor]] = ()) -> torch.Tensor:
    """As ``meta_objective``, but every virtual step (the first one and the look-ahead) is differentiated
    through, second-order terms included: the exact derivative of the meta loss after the K steps."""
    rate, params, grads, bufs = virtual_step_start(net, state, loss, bound, model, opt)
    names = list(params)
    for batch in [None, *lookahead]:
        if batch is not None:
            out = F.cross_entropy(functional_call(model, params, (batch[0],)), batch[1])
            grads = dict(zip(names, torch.autograd.grad(out, [params[n] for n in names], create_graph=True)))
        for n in names:
            d = grads[n] + weight_decay * params[n]
            bufs[n] = d if bufs[n] is None else momentum * bufs[n] + d
        params = {n: params[n] - rate * bufs[n] for n in names}
    return F.cross_entropy(functional_call(model, params, (meta_inputs,)), meta_targets)


class Learner:
    """One model trained from a fresh initialisation for EPOCHS epochs, one step per :meth:`step` call,
    at the rate of the schedule net for each batch's mean loss (or at ``constant`` if given)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int, net: MLRSNet, constant: float | None = None,
                 unrolled: bool = False):
        self.gen = seed_everything(seed)
        self.objective = unrolled_objective if unrolled else meta_objective
        self.x, self.y, self.constant = x, y, constant
        self.schedule = MLRSNetSchedule(10, net)  # the shared net, live: its LSTM state and gamma per learner
        self.model = build_model("small-cnn", 1, 28, 10)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=START_RATE, momentum=MOMENTUM,
                                   weight_decay=WEIGHT_DECAY)
        self.mean, self.std = normaliser(x, self.model)
        self.epoch, self.batches, self.steps = 0, [], 0
        self.rates: list[list[float]] = []

    @property
    def done(self) -> bool:
        return self.epoch >= EPOCHS and not self.batches

    def step(self, meta: tuple[torch.Tensor, torch.Tensor] | None, net_opt: torch.optim.Optimizer | None,
             lookahead: int) -> float | None:
        """One training step; with ``meta`` (a meta batch of inputs and labels) the net is meta-updated
        first. Returns the meta loss, if any."""
        if not self.batches:
            self.batches = list(torch.randperm(len(self.y), generator=self.gen).split(BATCH))
            self.epoch += 1
            self.rates.append([])
        idx = self.batches.pop(0)
        self.model.train()
        losses = F.cross_entropy(self.model(as_input(self.x[idx], self.mean, self.std)), self.y[idx], reduction="none")
        self.opt.zero_grad(set_to_none=True)
        losses.mean().backward()
        loss = losses.detach().mean()
        bound = self.schedule.bound(float(loss))
        meta_loss = None
        if meta is not None and net_opt is not None:
            ahead = [torch.randint(0, len(self.y), (BATCH,), generator=self.gen) for _ in range(lookahead)]
            value = self.objective(self.schedule.net, self.schedule.state, loss, bound, self.model, self.opt,
                                   meta[0], meta[1], MOMENTUM, WEIGHT_DECAY,
                                   [(as_input(self.x[a], self.mean, self.std), self.y[a]) for a in ahead])
            net_opt.zero_grad(set_to_none=True)
            value.backward()
            net_opt.step()
            meta_loss = float(value.detach())
        rate = self.schedule.rate(float(loss))  # the state advances under the constant rate too
        rate = self.constant if self.constant is not None else rate
        for group in self.opt.param_groups:
            group["lr"] = rate
        self.opt.step()
        self.rates[-1].append(rate)
        self.steps += 1
        return meta_loss

    def accuracy(self, x: torch.Tensor, y: np.ndarray) -> float:
        return round(float((predict(self.model, x, self.mean, self.std).argmax(1) == y).mean()), 4)

    def summary(self) -> dict:
        return {"gamma": self.schedule.gamma, "rate_per_epoch": [round(float(np.mean(r)), 5) for r in self.rates]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--learners", type=int, default=1, help="models training at once, staggered")
    ap.add_argument("--episodes", type=int, default=4, help="training runs in all")
    ap.add_argument("--noisy", action="store_true", help="every other episode with 40%% symmetric noise")
    ap.add_argument("--interval", type=int, default=20, help="meta-update each learner every this many of its steps")
    ap.add_argument("--lookahead", type=int, default=0, help="virtual steps after the first one, on random "
                    "training batches, before the meta loss (0: the official one-step objective)")
    ap.add_argument("--meta-lr", type=float, default=1e-3)
    ap.add_argument("--unrolled", action="store_true", help="differentiate through the look-ahead steps too "
                    "(second order; a variant, not shipped)")
    ap.add_argument("--out", type=Path, default=ROOT / "noiseaudit" / "optim" / SHIPPED)
    ap.add_argument("--log", type=Path, default=RESULTS / "mlr_snet_meta_train.json")
    args = ap.parse_args()
    x_all, y_all = load_fashion_mnist("train")
    pool, meta = splits()
    meta_x, meta_y = torch.from_numpy(x_all[meta][:, None].copy()), torch.from_numpy(y_all[meta].astype(np.int64))
    torch.manual_seed(0)
    net = MLRSNet()
    with torch.no_grad():  # start at the scan's hand-set rate: sigmoid(bias) * gamma(ln 10, 10) = 0.05
        net.out.weight.mul_(0.1)
        net.out.bias.fill_(math.log(START_RATE / (gamma(math.log(10), 10) - START_RATE)))
    net_opt = torch.optim.Adam(net.parameters(), lr=args.meta_lr, weight_decay=1e-4)
    log: dict = {"episodes": [], "args": {k: str(v) for k, v in vars(args).items()}, "meta_split": len(meta),
                 "train_per_episode": 10_000, "torch": torch.__version__}

    def training_set(e: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        rows = np.random.default_rng(100 + e).choice(pool, 10_000, replace=False)
        assert not set(rows.tolist()) & set(meta.tolist())
        labels, noise = y_all[rows].astype(np.int64), "sym40" if args.noisy and e % 2 == 1 else "clean"
        if noise == "sym40":
            labels = inject_noise(labels, 0.4, "symmetric", 10, seed=e).labels
        return torch.from_numpy(x_all[rows][:, None].copy()), torch.from_numpy(labels), noise

    steps_per_episode = EPOCHS * -(-10_000 // BATCH)
    offset = steps_per_episode // args.learners
    learners: list[Learner | None] = [None] * args.learners
    started, t, t0 = 0, 0, time.perf_counter()
    meta_gen = torch.Generator().manual_seed(0)
    while started < args.episodes or any(learners):
        for p in range(args.learners):
            if learners[p] is None and started < args.episodes and t >= p * offset:
                x, y, noise = training_set(started)
                learners[p] = Learner(x, y, seed=started, net=net, unrolled=args.unrolled)
                learners[p].episode, learners[p].noise = started, noise
                started += 1
            learner = learners[p]
            if learner is None:
                continue
            pick = torch.randint(0, len(meta_y), (BATCH,), generator=meta_gen)
            batch = (as_input(meta_x[pick], learner.mean, learner.std), meta_y[pick])
            learner.step(batch if learner.steps % args.interval == 0 else None, net_opt, args.lookahead)
            if learner.done:
                out = {"episode": learner.episode, "noise": learner.noise, **learner.summary(),
                       "meta_split_accuracy": learner.accuracy(meta_x, meta_y.numpy()),
                       "seconds_so_far": round(time.perf_counter() - t0, 1)}
                log["episodes"].append(out)
                print(f"episode {out}", flush=True)
                learners[p] = None
        t += 1
    net.requires_grad_(False)
    save_weights(net, args.out)
    log["weights"] = str(args.out.relative_to(ROOT)) if args.out.is_relative_to(ROOT) else str(args.out)
    log["weights_bytes"] = args.out.stat().st_size
    log["frozen_check"] = frozen_check(net, x_all, y_all, pool, meta_x, meta_y)
    print(f"frozen check: {log['frozen_check']}", flush=True)
    args.log.parent.mkdir(exist_ok=True)
    args.log.write_text(json.dumps(log, indent=1))


def frozen_check(net: MLRSNet, x_all: np.ndarray, y_all: np.ndarray, pool: np.ndarray, meta_x: torch.Tensor,
                 meta_y: torch.Tensor) -> dict:
    """The frozen net against the constant 0.05 on a fresh clean draw from the pool: meta-split accuracy."""
    rows = np.random.default_rng(999).choice(pool, 10_000, replace=False)
    x, y = torch.from_numpy(x_all[rows][:, None].copy()), torch.from_numpy(y_all[rows].astype(np.int64))
    out = {}
    for name, constant in (("mlr-snet", None), ("constant 0.05", START_RATE)):
        learner = Learner(x, y, seed=999, net=net, constant=constant)
        while not learner.done:
            learner.step(None, None, 0)
        out[name] = {"meta_split_accuracy": learner.accuracy(meta_x, meta_y.numpy()), **learner.summary()}
    return out


if __name__ == "__main__":
    main()
