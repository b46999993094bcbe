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
- plain + fine-tune: the same model, then 20 epochs on the 200 alone at a tenth of the rate;
- learned rates + target set: the 200 as trusted samples (``--trusted``), whose class
  references steer every rate toward what target-domain data of that class looks like.

Results: bench/results/personalize.json and .md.
"""

from __future__ import annotations

import argparse
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
N_TRAIN, N_TARGET = 10_000, 200


def domains(seed: int) -> dict[str, np.ndarray]:
    """Training images (half inverted), the target set (inverted), and both test splits."""
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    order = np.random.default_rng(seed).permutation(len(y))
    train_rows, target_rows = order[:N_TRAIN], order[N_TRAIN:N_TRAIN + N_TARGET]
    images = x[train_rows].copy()
    inverted = np.zeros(N_TRAIN, dtype=bool)
    inverted[np.random.default_rng(seed + 1).permutation(N_TRAIN)[: N_TRAIN // 2]] = True
    images[inverted] = 255 - images[inverted]
    return {"x": images[:, None], "y": y[train_rows], "inverted": inverted,
            "x_target": (255 - x[target_rows])[:, None], "y_target": y[target_rows],
            "x_test_target": (255 - xt)[:, None], "x_test_source": xt[:, None], "y_test": yt}


def accuracy(model: torch.nn.Module, data, x: np.ndarray, y: np.ndarray) -> float:
    mean, std = normaliser(data.inputs, model)
    return float((predict(model, torch.from_numpy(x), mean, std).argmax(1) == y).mean())


def run(d: dict, labels: np.ndarray, how: str, seed: int, epochs: int, weight: float) -> dict:
    x = np.concatenate([d["x"], d["x_target"]])
    y = np.concatenate([labels, d["y_target"]])
    data = as_dataset(x, y)
    trusted = np.zeros(len(y), dtype=bool)
    trusted[N_TRAIN:] = True
    if how == "learned-target":
        data.trusted = torch.from_numpy(trusted)
    gen = seed_everything(seed)
    model = build_model(default_model(1, 28), 1, 28, 10)
    method = "learned-lr" if how == "learned-target" else "plain"
    result = train(data, model, TrainConfig(epochs=epochs, method=method, trusted_weight=weight),
                   torch.device("cpu"), gen)
    if how == "plain-finetune":  # then the 200 alone, standardised as the whole set was
        mean, std = normaliser(data.inputs, model)
        model.input_normalization = (float(mean.flatten()[0]), float(std.flatten()[0]))
        train(as_dataset(d["x_target"], d["y_target"]), model, TrainConfig(epochs=20, method="plain", lr=0.005),
              torch.device("cpu"), gen)
    out = {"how": how, "seed": seed, "target_acc": accuracy(model, data, d["x_test_target"], d["y_test"]),
           "source_acc": accuracy(model, data, d["x_test_source"], d["y_test"])}
    if how == "learned-target":
        rates = result.signals["learned_lr"][:N_TRAIN]
        out["mean_rate_target_domain"] = float(rates[d["inverted"]].mean())
        out["mean_rate_source_domain"] = float(rates[~d["inverted"]].mean())
    return out


def markdown(rows: list[dict]) -> str:
    hows = ("plain", "plain-finetune", "learned-target")
    lines = ["| noise | run | target-domain test acc. (mean ± sd over seeds) | source-domain test acc. | "
             "mean rate: target / source half |", "|---|---|---|---|---|"]
    for noise in sorted({r["noise"] for r in rows}):
        for how in hows:
            rs = [r for r in rows if r["noise"] == noise and r["how"] == how]
            if not rs:
                continue
            t = np.array([r["target_acc"] for r in rs]) * 100
            s = np.array([r["source_acc"] for r in rs]) * 100
            rate = (f"{np.mean([r['mean_rate_target_domain'] for r in rs]):.2f} / "
                    f"{np.mean([r['mean_rate_source_domain'] for r in rs]):.2f}" if how == "learned-target" else "-")
            lines.append(f"| {noise} | {how} | {t.mean():.2f} ± {t.std():.2f} | {s.mean():.2f} | {rate} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--noise", default="none,sym40", help="label noise of the 10,000: none, or a bench cell")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--weight", type=float, default=1.0, help="trusted_weight of the target set's references")
    args = ap.parse_args()
    rows = []
    for noise in args.noise.split(","):
        for seed in map(int, args.seeds.split(",")):
            d = domains(seed)
            labels = d["y"] if noise == "none" else make_noise(d["x"], d["y"], noise, seed).labels
            for how in ("plain", "plain-finetune", "learned-target"):
                rows.append({"noise": noise, **run(d, labels, how, seed, args.epochs, args.weight)})
                print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "personalize.json").write_text(json.dumps({"weight": args.weight, "rows": rows}, indent=1))
    (RESULTS / "personalize.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
