"""The trained model as a product: clean-test accuracy after training on noisy labels.

    python bench/robust.py                               # Fashion-MNIST 10k: clean, sym40, asym40, inst20 x 3 seeds
    python bench/robust.py --cells cifar10n-worse        # CIFAR-10N worse through the backbone (slow on CPU)
    python bench/robust.py --cells sym40 --seeds 0       # one cell, one seed
    python bench/robust.py --cells sym40,clean --methods learned-lr-cosine,sgd-cosine   # both under a cosine decay
    python bench/robust.py --cells sym40 --methods learned-lr,sgd --sweeps bench/results/robust.json \
        --out bench/results/robust_rerun.json            # train again at the settings chosen there

Three ways to train the same model on the same noisy labels, each at its best measured learning rate:

- ``learned-lr``: the scan's trainer (per-sample learned rates on SGD with momentum, every default);
- ``sgd``: plain SGD with momentum (``method="plain"``), the same model, epochs and batches;
- ``adam``: plain Adam (``TrainConfig(optimizer="adam")``);
- ``learned-lr-cosine`` and ``sgd-cosine`` (``--methods``, Fashion-MNIST only): the first two under a
  cosine decay of the base rate, to see whether the per-sample rates add anything to a decaying schedule.

The learning rate of each is picked per cell by a sweep on seed 0: train on 90% of the noisy training
set, score the accuracy on the other 10% against its *noisy* labels (what a user could measure), keep
the best. With that rate each method then trains on the whole noisy set with seeds 0, 1, 2 (the seed
draws the noise, the initial weights and the batch order) and is scored on the clean test split.

Cells: Fashion-MNIST 10k (``common.load("fmnist10k")``, the small CNN, 10 epochs, the final model the mean
of the last epoch's weights as the scan's is; tested on the 10,000 Fashion-MNIST test images) with clean labels, 40% symmetric, 40% pair-flip and 20% instance
noise (``common.make_noise``); and ``cifar10n-worse``: the first 10,000 CIFAR-10 training photos with
CIFAR-10N's ``worse`` labels (40.2% wrong, real human noise) through the scan's default backbone path
(``--finetune auto``: the frozen EfficientNet-Lite0 bottom computed once per photo and its mirror image,
the last stages trained as the scan trains them, the final model the mean of the last epoch's weights,
for every method alike), tested on CIFAR-10's 10,000 test photos. Its noise is fixed, so its seeds vary
the training only. Stored CIFAR results of another model (``model`` differs) are kept under
``superseded`` and shown as such, never mixed with the new sweep.

Results are merged cell by cell into bench/results/robust.json and summarised in robust.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import EPOCHS, as_dataset, load, make_noise

from noiseaudit.backbone import (BackbonePlan, autocast_precision, build_top, encoder, finetune_settings,
                                 training_defaults)
from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.dataset import SampleData, load_dataset
from noiseaudit.data.source import load_source
from noiseaudit.errors import NoiseAuditError
from noiseaudit.models import build_model, default_model
from noiseaudit.models.efficientnet import NAME
from noiseaudit.runtime import seed_everything
from noiseaudit.train import TrainConfig, autocast, normaliser, predict, train

RESULTS = Path(__file__).resolve().parent / "results"
FMNIST_CELLS = ("sym40", "asym40", "clean", "inst20")
CIFAR_CELL = "cifar10n-worse"
METHODS = ("learned-lr", "sgd", "adam")
# the same two trainers under a cosine decay of the base rate (the best hand-designed schedule for SGD at 40%
# symmetric noise in bench/results/schedules.md): do the per-sample rates add anything to a decaying schedule?
COSINE_METHODS = ("learned-lr-cosine", "sgd-cosine")
# settings swept on seed 0: SGD around the scan's default lr, Adam around its usual 1e-3, and the learned rates
# at the same lrs with the scan's rate step (hyper-lr) and larger ones. The fmnist grid was widened once where a
# method's best sat on its edge (SGD 0.01, Adam 1e-4, hyper-lr 0.5, and lr 0.2 for learned-lr-cosine); the cifar
# grid gained lr 0.005 for SGD and the learned rates with the default model (the picks of the earlier model sat
# there), Adam 3e-3 when its pick sat on 1e-3, and hyper-lr 0.05 when the learned rates' sat on 0.2
SWEEP = {
    "fmnist": {"learned-lr": [{"lr": lr, "hyper_lr": h} for h in (0.05, 0.2, 0.5) for lr in (0.02, 0.05, 0.1)],
               "sgd": [{"lr": lr} for lr in (0.01, 0.02, 0.05, 0.1)],
               "adam": [{"lr": lr} for lr in (1e-4, 3e-4, 1e-3, 3e-3)],
               "learned-lr-cosine": [{"lr": lr, "hyper_lr": 0.2} for lr in (0.02, 0.05, 0.1, 0.2)],
               "sgd-cosine": [{"lr": lr} for lr in (0.02, 0.05, 0.1)]},
    "cifar": {"learned-lr": [{"lr": lr, "hyper_lr": h} for h in (0.05, 0.2, 0.8) for lr in (0.005, 0.01, 0.02, 0.05)],
              "sgd": [{"lr": lr} for lr in (0.005, 0.01, 0.02, 0.05)],
              "adam": [{"lr": lr} for lr in (1e-4, 3e-4, 1e-3, 3e-3)]},
}
SWEEP_CELL = {"fmnist": "sym40", "cifar": CIFAR_CELL}  # the cell each family's settings are picked on
VALIDATION = 0.1  # share of the noisy training set held out by the sweep


def train_config(method: str, setting: dict, base: TrainConfig) -> TrainConfig:
    """``base`` (epochs, precision, hyper-lr) with the method's trainer and optimizer at ``setting``."""
    return TrainConfig(epochs=base.epochs, lr=setting["lr"], hyper_lr=setting.get("hyper_lr", base.hyper_lr),
                       precision=base.precision, method="learned-lr" if method.startswith("learned-lr") else "plain",
                       optimizer="adam" if method == "adam" else "sgd",
                       schedule="cosine" if method.endswith("-cosine") else "constant",
                       average_last_epoch=base.average_last_epoch)


def label(setting: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in setting.items())


def fit_and_score(data: SampleData, model: torch.nn.Module, cfg: TrainConfig, seed: int, test_x: torch.Tensor,
                  test_y: np.ndarray) -> dict:
    """Train ``model`` on ``data`` as the scan's trainer does; its accuracy on (test_x, test_y) and the time."""
    gen = seed_everything(seed)
    t0 = time.perf_counter()
    train(data, model, cfg, torch.device("cpu"), gen)
    seconds = time.perf_counter() - t0
    mean, std = normaliser(data.inputs, model)
    with autocast(torch.device("cpu"), cfg.precision):
        probs = predict(model, test_x, mean, std)
    return {"accuracy": float((probs.argmax(axis=1) == test_y).mean()), "train_s": round(seconds, 1)}


class Fmnist:
    """Fashion-MNIST 10k: the small CNN from scratch, its final model the mean of the last epoch's weights (as
    the scan's, for every method alike)."""

    family = "fmnist"
    model = "small CNN from scratch, last epoch's mean weights"

    def __init__(self) -> None:
        from fashion_mnist import load_fashion_mnist

        self.x, self.y = load("fmnist10k")
        tx, ty = load_fashion_mnist("test")
        self.test_x, self.test_y = torch.from_numpy(tx[:, None].copy()), ty
        self.base = TrainConfig(epochs=EPOCHS["fmnist10k"], average_last_epoch=True)

    def labels(self, cell: str, seed: int) -> np.ndarray:
        return self.y.copy() if cell == "clean" else make_noise(self.x, self.y, cell, seed).labels

    def run(self, rows: np.ndarray, labels: np.ndarray, cfg: TrainConfig, seed: int, test_x: torch.Tensor,
            test_y: np.ndarray) -> dict:
        data = as_dataset(self.x[rows], labels[rows])
        seed_everything(seed)
        model = build_model(default_model(data.channels, data.image_size), data.channels, data.image_size, 10)
        return fit_and_score(data, model, cfg, seed, test_x, test_y)


class CifarWorse:
    """CIFAR-10N worse, 10k photos: the cached frozen bottom of EfficientNet-Lite0 and its trained top."""

    family = "cifar"

    def __init__(self, work: Path, n: int = 10_000) -> None:
        from real import extract, write_labels

        images = extract(work / "cifar")
        csv = write_labels(images, n, "worse", work)
        device = torch.device("cpu")
        finetune, size, epochs, _ = finetune_settings("auto", n)
        self.plan = BackbonePlan(NAME, finetune, image_size=size, precision=autocast_precision(device), epochs=epochs)
        self.model = f"{NAME} {finetune}, {size} px, {epochs} epochs, the last epoch's mean weights"
        frozen = encoder(self.plan, device, mirrored=True)
        cache = DecodeCache(work / "cache")
        train_data = load_dataset(load_source(images, csv), image_size=self.plan.image_size, workers=2, cache=cache,
                                  encoder=frozen)
        test_data = load_dataset(load_source(images / "test"), image_size=self.plan.image_size, workers=2,
                                 cache=cache, encoder=frozen)
        assert train_data.classes == test_data.classes, (train_data.classes, test_data.classes)
        self.x, self.classes = train_data.inputs, train_data.classes
        self.noisy = train_data.targets.numpy()
        clean = pd.read_csv(csv)["original_label"]
        self.clean = clean.map({c: k for k, c in enumerate(self.classes)}).to_numpy()
        self.test_x, self.test_y = test_data.inputs, test_data.targets.numpy()
        epochs, _, hyper_lr = training_defaults(self.plan, None, None, None)
        self.base = TrainConfig(epochs=epochs, hyper_lr=hyper_lr, precision=self.plan.precision,
                                average_last_epoch=True)

    def labels(self, cell: str, seed: int) -> np.ndarray:
        return self.noisy

    def run(self, rows: np.ndarray, labels: np.ndarray, cfg: TrainConfig, seed: int, test_x: torch.Tensor,
            test_y: np.ndarray) -> dict:
        data = SampleData(self.x[rows], torch.from_numpy(labels[rows]), self.classes, self.plan.image_size)
        seed_everything(seed)
        return fit_and_score(data, build_top(self.plan, len(self.classes)), cfg, seed, test_x, test_y)


def sweep(bench: Fmnist | CifarWorse, methods: list[str], previous: dict, save: Callable[[dict], None]) -> dict:
    """Seed 0 on the family's sweep cell: each method at each setting trained on 90% of the noisy set and scored
    on the held-out noisy 10%; the best setting of each method. ``previous`` scores are kept."""
    cell = SWEEP_CELL[bench.family]
    unknown = [m for m in methods if m not in SWEEP[bench.family]]
    if unknown:
        raise SystemExit(f"{', '.join(unknown)}: not swept for {bench.family} (choose from "
                         f"{', '.join(SWEEP[bench.family])})")
    labels = bench.labels(cell, 0)
    order = np.random.default_rng(0).permutation(len(labels))
    held, fit = np.sort(order[:int(VALIDATION * len(order))]), np.sort(order[int(VALIDATION * len(order)):])
    held_x = bench.x[held] if isinstance(bench.x, torch.Tensor) else torch.from_numpy(bench.x[held])
    out = {"cell": cell, "model": bench.model, "seed": 0,
           "selection": f"best accuracy on a held-out noisy {VALIDATION:.0%} of the training set of {cell}, seed 0",
           "scores": previous.get("scores", {}), "chosen": dict(previous.get("chosen", {}))}
    for method in methods:
        scores = out["scores"].setdefault(method, {})
        for setting in SWEEP[bench.family][method]:
            if label(setting) not in scores:
                try:
                    res = bench.run(fit, labels, train_config(method, setting, bench.base), 0, held_x, labels[held])
                except NoiseAuditError as err:  # the trainer refuses a collapsed model: this setting loses
                    res = {"accuracy": 0.0, "refused": str(err)}
                scores[label(setting)] = {**setting, **res}
                print(f"sweep {cell} {method} {label(setting)}: noisy-val acc {res['accuracy']:.4f} "
                      f"({res.get('train_s', '-')} s)", flush=True)
                save(out)
        best = max(scores.values(), key=lambda r: r["accuracy"])
        out["chosen"][method] = {k: best[k] for k in ("lr", "hyper_lr") if k in best}
    save(out)
    return out


def run_cell(bench: Fmnist | CifarWorse, cell: str, chosen: dict, methods: list[str], seeds: list[int],
             previous: dict, save: Callable[[dict], None]) -> dict:
    """Each method at its chosen setting, seed by seed, on the whole noisy training set; clean-test accuracy."""
    # runs at a setting other than the one now chosen (the sweep was widened since) are trained again
    runs = {m: [r for r in rs if {k: r.get(k) for k in chosen.get(m, {})} == chosen.get(m)]
            for m, rs in previous.get("runs", {}).items()}
    out = {"runs": runs, "model": bench.model, "epochs": bench.base.epochs, "chosen": chosen}
    everything = np.arange(len(bench.labels(cell, 0)))
    for seed in seeds:
        labels = bench.labels(cell, seed)
        for method in methods:
            if any(r["seed"] == seed for r in out["runs"].get(method, [])):
                continue
            setting = chosen[method]
            res = bench.run(everything, labels, train_config(method, setting, bench.base), seed, bench.test_x,
                            bench.test_y)
            out["runs"].setdefault(method, []).append({"seed": seed, **setting, **res})
            print(f"{cell} {method} seed {seed} {label(setting)}: clean-test acc {res['accuracy']:.4f} "
                  f"({res['train_s']} s)", flush=True)
            out["summary"] = summarise(out["runs"])
            save(out)
    out["summary"] = summarise(out["runs"])
    return out


def summarise(runs: dict) -> dict:
    """Mean and std of each method's clean-test accuracy over its seeds; a method with no runs yet (its setting
    changed when a sweep was widened) is left out, not summarised as NaN."""
    return {m: {"mean": float(np.mean([r["accuracy"] for r in rs])), "std": float(np.std([r["accuracy"] for r in rs])),
                "n": len(rs), "seeds": sorted(r["seed"] for r in rs)} for m, rs in runs.items() if rs}


def accuracy(summary: dict, method: str) -> str:
    """A method's mean ± std clean-test accuracy in % with its seed count, or a dash."""
    if method not in summary:
        return "–"
    m = summary[method]
    return f"{100 * m['mean']:.2f} ± {100 * m['std']:.2f} ({m['n']})"


def difference(summary: dict, a: str, b: str) -> str:
    """Method a's mean accuracy minus method b's, in points, or a dash."""
    return f"{100 * (summary[a]['mean'] - summary[b]['mean']):+.2f}" if {a, b} <= set(summary) else "–"


def markdown(results: dict, source: str = "robust.json") -> str:
    lines = ["# Clean-test accuracy after training on noisy labels (bench/robust.py)", "",
             f"{results['machine']}; torch {results['torch']}. Mean ± std over seeds, clean test split; the "
             "learning rate of each method picked on seed 0 by a held-out noisy 10% of the training set.", "",
             "| cell | learned-lr (scan) | SGD | Adam | learned-lr − SGD | setting: learned / SGD / Adam |",
             "|---|---|---|---|---|---|"]
    cells = [(cell, results["cells"].get(cell)) for cell in (*FMNIST_CELLS, CIFAR_CELL)]
    for old in results.get("superseded", []):  # one cell each in the older format, every stale cell in the newer
        cells += list(old["cells"].items()) if "cells" in old else [(CIFAR_CELL, old["cell"])]
    for cell, c in cells:
        if c is None or "summary" not in c:
            continue
        s = c["summary"]
        rates = " / ".join(label(c["chosen"][m]) if m in c.get("chosen", {}) else "–" for m in METHODS)
        name = "Fashion-MNIST 10k " + cell if cell in FMNIST_CELLS else f"CIFAR-10N worse 10k ({c['model']})"
        if c.get("superseded_at"):
            name += (f" ({c['model']})" if cell in FMNIST_CELLS else "") + f", superseded at {c['superseded_at']}"
        lines.append(f"| {name} | {accuracy(s, 'learned-lr')} | {accuracy(s, 'sgd')} | {accuracy(s, 'adam')} | "
                     f"{difference(s, 'learned-lr', 'sgd')} | {rates} |")
    cosine = [cell for cell in FMNIST_CELLS
              if set(COSINE_METHODS) <= set(results["cells"].get(cell, {}).get("summary", {}))]
    if cosine:
        lines += ["", "Under a cosine decay of the base rate (same sweep protocol, lr picked on seed 0):", "",
                  "| cell | learned-lr + cosine | SGD + cosine | difference | learned-lr (constant) − SGD + cosine | "
                  "setting: learned / SGD |", "|---|---|---|---|---|---|"]
        for cell in cosine:
            c = results["cells"][cell]
            s = c["summary"]
            lines.append(f"| Fashion-MNIST 10k {cell} | {accuracy(s, 'learned-lr-cosine')} | "
                         f"{accuracy(s, 'sgd-cosine')} | {difference(s, 'learned-lr-cosine', 'sgd-cosine')} | "
                         f"{difference(s, 'learned-lr', 'sgd-cosine')} | "
                         + " / ".join(label(c["chosen"][m]) for m in COSINE_METHODS) + " |")
    lines += ["", "Accuracy in %, (n) = seeds. Sweeps (noisy held-out accuracy per lr) and per-seed figures with "
              f"training times are in {source}."]
    return "\n".join(lines) + "\n"


def supersede(results: dict, family: str, cell: str, model: str) -> None:
    """Move a family's stored sweep and every cell measured with it aside (to ``results["superseded"]``) when
    they were measured with another model than the one the bench now trains, so the two are never mixed."""
    stored = results["sweeps"].get(family)
    if stored is None or stored.get("model") == model:
        return
    old = {name: results["cells"].pop(name) for name in
           [name for name, c in results["cells"].items() if c.get("model") == stored.get("model")]}
    for c in old.values():
        c.setdefault("superseded_at", "a later default")
    results.setdefault("superseded", []).append({"sweep": results["sweeps"].pop(family), "cells": old})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default=",".join(FMNIST_CELLS), help=f"of {', '.join((*FMNIST_CELLS, CIFAR_CELL))}")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"of {', '.join((*METHODS, *COSINE_METHODS))}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=RESULTS / "robust.json")
    ap.add_argument("--sweeps", type=Path, help="take the sweeps (and so the chosen settings) from this results file: "
                    "with a new --out, the runs are trained again at those settings (a rerun on another machine)")
    args = ap.parse_args()
    cells, methods = args.cells.split(","), args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("sweeps", {})
    if args.sweeps:
        results["sweeps"] = json.loads(args.sweeps.read_text())["sweeps"]
    results.setdefault("cells", {})
    results.update(machine=f"{platform.machine()}, {torch.get_num_threads()} threads", torch=torch.__version__)

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        args.out.with_suffix(".md").write_text(markdown(results, args.out.name))

    fmnist = None
    with tempfile.TemporaryDirectory() as work:
        for cell in cells:
            if cell == CIFAR_CELL:
                bench: Fmnist | CifarWorse = CifarWorse(Path(work))
            else:
                bench = fmnist = fmnist or Fmnist()
            family = bench.family
            supersede(results, family, cell, bench.model)

            def keep_sweep(part: dict, family: str = family) -> None:
                results["sweeps"][family] = part
                write()

            chosen = sweep(bench, methods, results["sweeps"].get(family, {}), keep_sweep)["chosen"]

            def keep_cell(part: dict, cell: str = cell) -> None:
                results["cells"][cell] = part
                write()

            keep_cell(run_cell(bench, cell, chosen, methods, seeds, results["cells"].get(cell, {}), keep_cell))
    print(markdown(results, args.out.name))


if __name__ == "__main__":
    main()
