"""Training quality of the learning-rate methods: clean-test accuracy and epochs to a fixed training loss.

    python bench/schedules.py                                    # every dataset, clean and sym40, seeds 0-2
    python bench/schedules.py --datasets digits --seeds 0        # one dataset, one seed

Methods (all with uniform per-sample rates, ``method="plain"``, so that only the optimizer differs;
bench/detect.py --extra measures them under the learned rates):

- ``sgd-constant``, ``sgd-step``, ``sgd-cosine``, ``two-regime``: SGD, momentum 0.9, weight decay 5e-4,
  at the scan's default rate (0.05 from scratch, 0.01 on feature vectors) under that schedule;
- ``mlr-snet``: SGD at the rate of the shipped MLR-SNet (meta-trained on Fashion-MNIST images that
  no cell here trains or tests on; bench/meta_train_mlr_snet.py), so every cell tests its transfer;
- ``layerwise`` (grad-norm, the shipped rule) and ``layerwise-secant`` (the alternative curvature
  estimate), on the constant schedule;
- ``adam``: Adam at 1e-3 (3e-4 on feature vectors).

Data: Fashion-MNIST 10k (``common.load("fmnist10k")``; tested on the 10,000 test images), MNIST-5k
(4,000 train / 1,000 test, fixed split), sklearn digits (1,297 / 500), and ``cifar10-lite0`` (the
frozen Lite0 embeddings of 10,000 CIFAR-10 photos, 8,000 / 2,000; the MLP head). Each clean and with
40% symmetric noise injected into the training labels only; seeds 0, 1, 2 (noise, initialisation,
batch order). The scan's epochs for each dataset (``common.EPOCHS``).

"Epochs to the target loss": the first epoch whose mean training loss (on the given labels) is at
most the target, which is the final-epoch training loss of ``sgd-constant`` on that cell (the
highest over its seeds, so that every seed of it gets there): how soon a method gets to where plain
SGD ends. ``>E`` if a seed never does.

Results merge into bench/results/schedules.json (one record per dataset/noise/seed/method) and
bench/results/schedules.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from common import EPOCHS, FEATURE_SETS, as_dataset, load, make_noise

from noiseaudit.models import build_feature_model, build_model, default_model
from noiseaudit.runtime import seed_everything
from noiseaudit.config import FEATURE_DEFAULTS
from noiseaudit.train import TrainConfig, normaliser, predict, train

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = {  # name -> TrainConfig fields
    "sgd-constant": {}, "sgd-step": {"schedule": "step"}, "sgd-cosine": {"schedule": "cosine"},
    "two-regime": {"schedule": "two-regime"}, "mlr-snet": {"schedule": "mlr-snet"},
    "layerwise": {"layerwise": True}, "layerwise-secant": {"layerwise": True, "layerwise_rule": "secant"},
    "adam": {"optimizer": "adam"},
}
HAND_DESIGNED = ("sgd-constant", "sgd-step", "sgd-cosine", "two-regime")
TEST_SPLIT = {"mnist5k": 1_000, "digits": 500, "cifar10-lite0": 2_000}


def split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, test x, test y) of a dataset."""
    if name == "fmnist10k":
        from fashion_mnist import load_fashion_mnist

        x, y = load(name)
        tx, ty = load_fashion_mnist("test")
        return x, y, tx[:, None].copy(), ty.astype(np.int64)
    x, y = load(name)
    order = np.random.default_rng(0).permutation(len(y))
    test, rest = order[:TEST_SPLIT[name]], order[TEST_SPLIT[name]:]
    return x[rest], y[rest], x[test], y[test]


def one_run(name: str, x: np.ndarray, labels: np.ndarray, tx: np.ndarray, ty: np.ndarray, method: str,
            seed: int) -> dict:
    features = name in FEATURE_SETS
    data = as_dataset(x, labels)
    gen = seed_everything(seed)
    if features:
        model = build_feature_model("mlp", x.shape[1], 10)
        lr = 3e-4 if method == "adam" else FEATURE_DEFAULTS[1]
    else:
        model = build_model(default_model(data.channels, data.image_size), data.channels, data.image_size, 10)
        lr = 1e-3 if method == "adam" else 0.05
    cfg = TrainConfig(epochs=EPOCHS[name], lr=lr, method="plain", **METHODS[method])
    t0 = time.perf_counter()
    result = train(data, model, cfg, torch.device("cpu"), gen)
    seconds = time.perf_counter() - t0
    mean, std = normaliser(data.inputs, model)
    probs = predict(model, torch.from_numpy(tx), mean, std)
    return {"dataset": name, "noise": "", "seed": seed, "method": method, "lr": lr,
            "test_accuracy": float((probs.argmax(1) == ty).mean()), "epoch_losses": result.epoch_losses,
            "seconds": round(seconds, 2), "layer_multipliers": result.layer_multipliers,
            "switch_epoch": result.switch_epoch}


def epochs_to(losses: list[float], target: float) -> int | None:
    return next((e + 1 for e, loss in enumerate(losses) if loss <= target + 1e-12), None)


def summarise(records: list[dict]) -> str:
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        cells.setdefault((r["dataset"], r["noise"]), []).append(r)
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    lines = ["Test accuracy (%, mean ± sd over seeds) · epochs to the target training loss (the final loss of "
             "sgd-constant, the highest over its seeds; mean over seeds, `>E` where a seed never got there).", "",
             "| dataset | noise | seeds | " + " | ".join(methods) + " | MLR-SNet vs best hand-designed |",
             "|---|---|---|" + "---|" * (len(methods) + 1)]
    for (ds, noise), rs in sorted(cells.items()):
        by = {m: [r for r in rs if r["method"] == m] for m in methods}
        base = by.get("sgd-constant", [])
        target = max(r["epoch_losses"][-1] for r in base) if base else float("nan")
        row = []
        for m in methods:
            if not by[m]:
                row.append("-")
                continue
            acc = 100 * np.array([r["test_accuracy"] for r in by[m]])
            reach = [epochs_to(r["epoch_losses"], target) for r in by[m]]
            epochs = len(by[m][0]["epoch_losses"])
            when = f">{epochs}" if any(e is None for e in reach) else f"{np.mean(reach):.1f}"
            row.append(f"{acc.mean():.2f} ± {acc.std():.2f} · {when}")
        hand = [100 * np.mean([r["test_accuracy"] for r in by[m]]) for m in HAND_DESIGNED if by.get(m)]
        gap = (100 * np.mean([r["test_accuracy"] for r in by["mlr-snet"]]) - max(hand)
               if by.get("mlr-snet") and hand else float("nan"))
        seeds = len({r["seed"] for r in rs})
        lines.append(f"| {ds} | {noise} | {seeds} | " + " | ".join(row) +
                     (f" | {gap:+.2f} {'ok' if gap >= -0.5 else 'MISSED'} |" if np.isfinite(gap) else " | - |"))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,mnist5k,fmnist10k,cifar10-lite0")
    ap.add_argument("--noise", default="clean,sym40")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, default=RESULTS / "schedules.json")
    args = ap.parse_args()
    saved = json.loads(args.out.read_text()) if args.out.exists() else {"records": []}
    records = saved["records"]
    done = {(r["dataset"], r["noise"], r["seed"], r["method"]) for r in records}
    meta = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads()}
    for name in args.datasets.split(","):
        x, y, tx, ty = split(name)
        for noise in args.noise.split(","):
            for seed in map(int, args.seeds.split(",")):
                labels = y if noise == "clean" else make_noise(x, y, noise, seed).labels
                for method in args.methods.split(","):
                    if (name, noise, seed, method) in done:
                        continue
                    r = one_run(name, x, labels, tx, ty, method, seed)
                    r["noise"] = noise
                    records.append(r)
                    print(f"{name} {noise} seed {seed} {method}: acc {r['test_accuracy']:.4f} "
                          f"loss {r['epoch_losses'][-1]:.4f} ({r['seconds']} s)", flush=True)
                    args.out.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
                    args.out.with_suffix(".md").write_text(summarise(records))
    print(summarise(records))


if __name__ == "__main__":
    main()
