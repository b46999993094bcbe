"""Personalization toward a target distribution: learned rates steered by a small target set.

    python bench/personalize.py                   # Fashion-MNIST, inverted-contrast target domain, 3 seeds

A two-domain training set from Fashion-MNIST: 10,000 training images, half of them as they
are (the source domain) and half with inverted contrast (255 - x, the target domain: the same
garments as a scanner or a dark-mode UI would render them, a covariate shift in which a small
CNN's first-layer features do not carry over, while the labels mean the same thing). The user
also holds a target set of 200 labelled target-domain images (disjoint from the 10,000).
Optionally (``--noise``) the 10,000 carry symmetric label noise, as bulk data often does;
the 200 are verified. Every run trains the default small CNN on the 10,000 plus the 200, and
is tested on the inverted Fashion-MNIST test split (and, for reference, the plain one):

- plain: uniform rates, 10 epochs;
- plain + fine-tune: the same model, then 20 epochs on the 200 alone at a small rate;
- learned rates + target set: the 200 as trusted samples (``--trusted``), whose class
  references steer every rate toward what target-domain data of that class looks like, at a
  fixed rate of their own (``trusted_rate``: 1 is a sample's starting rate; higher weighs the
  verified 200 up, as fine-tuning does by training on them last);
- learned rates + target set, then the same fine-tune: the two composed.

The two settings, the fine-tune's rate (0.002 / 0.005 / 0.02) and the trusted rate (1 / 4 / 16),
are picked on seed 0 of each noise level by accuracy on a **validation** set of 1,000 further
inverted training images (disjoint from the rest; never the test split), then used for every seed.

Results: bench/results/personalize.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from common import as_dataset, make_noise
from fashion_mnist import load_fashion_mnist

from noiseaudit.models import build_model, default_model
from noiseaudit.runtime import seed_everything
from noiseaudit.train import TrainConfig, normaliser, predict, train

RESULTS = Path(__file__).resolve().parent / "results"
N_TRAIN, N_TARGET, N_VALID = 10_000, 200, 1_000
FINETUNE_LRS, TRUSTED_RATES = (0.002, 0.005, 0.02), (1.0, 4.0, 16.0)
HOWS = ("plain", "plain-finetune", "learned-target", "learned-target-finetune")


def domains(seed: int) -> dict[str, np.ndarray]:
    """Training images (half inverted), the target set and a validation set (inverted), both test splits."""
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    order = np.random.default_rng(seed).permutation(len(y))
    train_rows, target_rows = order[:N_TRAIN], order[N_TRAIN:N_TRAIN + N_TARGET]
    valid_rows = order[N_TRAIN + N_TARGET:N_TRAIN + N_TARGET + N_VALID]
    images = x[train_rows].copy()
    inverted = np.zeros(N_TRAIN, dtype=bool)
    inverted[np.random.default_rng(seed + 1).permutation(N_TRAIN)[: N_TRAIN // 2]] = True
    images[inverted] = 255 - images[inverted]
    return {"x": images[:, None], "y": y[train_rows], "inverted": inverted,
            "x_target": (255 - x[target_rows])[:, None], "y_target": y[target_rows],
            "x_valid": (255 - x[valid_rows])[:, None], "y_valid": y[valid_rows],
            "x_test_target": (255 - xt)[:, None], "x_test_source": xt[:, None], "y_test": yt}


def noisy(d: dict, noise: str, seed: int) -> np.ndarray:
    """The 10,000's labels: clean for ``none``, else with the bench cell's noise drawn by ``seed``."""
    return d["y"] if noise == "none" else make_noise(d["x"], d["y"], noise, seed).labels


def accuracy(model: torch.nn.Module, data, x: np.ndarray, y: np.ndarray) -> float:
    mean, std = normaliser(data.inputs, model)
    return float((predict(model, torch.from_numpy(x), mean, std).argmax(1) == y).mean())


def fit(d: dict, labels: np.ndarray, learned: bool, seed: int, epochs: int, weight: float, trusted_rate: float):
    """The small CNN trained on the 10,000 plus the 200 (trusted if ``learned``): (model, data, result)."""
    data = as_dataset(np.concatenate([d["x"], d["x_target"]]), np.concatenate([labels, d["y_target"]]))
    if learned:
        trusted = np.zeros(len(data.targets), dtype=bool)
        trusted[N_TRAIN:] = True
        data.trusted = torch.from_numpy(trusted)
    gen = seed_everything(seed)
    model = build_model(default_model(1, 28), 1, 28, 10)
    cfg = TrainConfig(epochs=epochs, method="learned-lr" if learned else "plain", trusted_weight=weight,
                      trusted_rate=trusted_rate)
    return model, data, train(data, model, cfg, torch.device("cpu"), gen)


def finetune(model: torch.nn.Module, data, d: dict, lr: float, seed: int) -> torch.nn.Module:
    """A copy of ``model`` trained 20 more epochs on the 200 alone, standardised as the whole set was."""
    tuned = copy.deepcopy(model)
    mean, std = normaliser(data.inputs, tuned)
    tuned.input_normalization = (float(mean.flatten()[0]), float(std.flatten()[0]))
    train(as_dataset(d["x_target"], d["y_target"]), tuned, TrainConfig(epochs=20, method="plain", lr=lr),
          torch.device("cpu"), seed_everything(seed))
    return tuned


def choose(d: dict, labels: np.ndarray, epochs: int, weight: float) -> dict:
    """Seed 0: the fine-tune rate and the trusted rate with the best validation (target-domain) accuracy."""
    model, data, _ = fit(d, labels, False, 0, epochs, weight, 1.0)
    tune = {lr: accuracy(finetune(model, data, d, lr, 0), data, d["x_valid"], d["y_valid"]) for lr in FINETUNE_LRS}
    rates = {}
    for rate in TRUSTED_RATES:
        model, data, _ = fit(d, labels, True, 0, epochs, weight, rate)
        rates[rate] = accuracy(model, data, d["x_valid"], d["y_valid"])
    out = {"finetune_lr": max(tune, key=tune.get), "trusted_rate": max(rates, key=rates.get),
           "validation": {"finetune_lr": {str(k): v for k, v in tune.items()},
                          "trusted_rate": {str(k): v for k, v in rates.items()}}}
    print(json.dumps(out), flush=True)
    return out


def runs(d: dict, labels: np.ndarray, seed: int, epochs: int, weight: float, chosen: dict) -> list[dict]:
    """The four runs of one seed; the fine-tunes start from the plain and the learned-rate models."""
    out = []
    for learned in (False, True):
        model, data, result = fit(d, labels, learned, seed, epochs, weight, chosen["trusted_rate"])
        name = "learned-target" if learned else "plain"
        for how, m in ((name, model), (name + "-finetune", finetune(model, data, d, chosen["finetune_lr"], seed))):
            row = {"how": how, "seed": seed, "target_acc": accuracy(m, data, d["x_test_target"], d["y_test"]),
                   "source_acc": accuracy(m, data, d["x_test_source"], d["y_test"])}
            if learned:
                rates = result.signals["learned_lr"][:N_TRAIN]
                row["mean_rate_target_domain"] = float(rates[d["inverted"]].mean())
                row["mean_rate_source_domain"] = float(rates[~d["inverted"]].mean())
            out.append(row)
    return out


def markdown(rows: list[dict], chosen: dict) -> str:
    lines = ["| noise | run | target-domain test acc. (mean ± sd over seeds) | source-domain test acc. | "
             "mean rate: target / source half |", "|---|---|---|---|---|"]
    for noise in sorted({r["noise"] for r in rows}):
        for how in HOWS:
            rs = [r for r in rows if r["noise"] == noise and r["how"] == how]
            if not rs:
                continue
            t = np.array([r["target_acc"] for r in rs]) * 100
            s = np.array([r["source_acc"] for r in rs]) * 100
            rate = (f"{np.mean([r['mean_rate_target_domain'] for r in rs]):.2f} / "
                    f"{np.mean([r['mean_rate_source_domain'] for r in rs]):.2f}" if "learned" in how else "-")
            lines.append(f"| {noise} | {how} | {t.mean():.2f} ± {t.std():.2f} ({len(rs)}) | {s.mean():.2f} | {rate} |")
    lines += ["", "Settings picked on seed 0 by validation accuracy (1,000 inverted training images): "
              + "; ".join(f"{noise}: fine-tune lr {c['finetune_lr']:g}, trusted rate {c['trusted_rate']:g}"
                          for noise, c in chosen.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--noise", default="none,sym40", help="label noise of the 10,000: none, or a bench cell")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--weight", type=float, default=1.0, help="trusted_weight of the target set's references")
    args = ap.parse_args()
    rows, chosen = [], {}
    for noise in args.noise.split(","):
        d0 = domains(0)
        chosen[noise] = choose(d0, noisy(d0, noise, 0), args.epochs, args.weight)
        for seed in map(int, args.seeds.split(",")):
            d = domains(seed)
            for row in runs(d, noisy(d, noise, seed), seed, args.epochs, args.weight, chosen[noise]):
                rows.append({"noise": noise, **row})
                print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "personalize.json").write_text(json.dumps({"weight": args.weight, "chosen": chosen, "rows": rows},
                                                         indent=1))
    (RESULTS / "personalize.md").write_text(markdown(rows, chosen))
    print(markdown(rows, chosen))


if __name__ == "__main__":
    main()
