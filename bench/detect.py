"""Detection benchmark: learned rate vs loss, AUM margin and cleanlab (5-fold CV), per noise cell.

    python bench/detect.py                       # CPU matrix: fmnist10k, mnist5k, digits x 5 noises x 3 seeds
    python bench/detect.py --datasets digits --seeds 0 --no-cleanlab   # a quick look
    python bench/detect.py --datasets cifar10-lite0 --out bench/results/detect_features.json   # feature vectors
    python bench/detect.py --trusted 0.01,0.02,0.05   # learned rates with a trusted set (bench/trusted_cells.py)

For every (dataset, noise, seed) cell it trains, at the same epoch budget:
- learned-lr: the scan's trainer with per-sample rates; signal = learned_lr;
- plain: uniform rates; signals = mean loss and mean AUM margin;
- cleanlab 2.x: 5-fold cross-validated probabilities from the same model (plain training),
  then find_label_issues (flags) and get_label_quality_scores (ranking).
Each signal gets AUROC, AP, precision@k (k = true noisy count) and the F1 of its automatic
flags (the scan's threshold for our signals; find_label_issues for cleanlab), the estimated
noise rate, and the wall time of its runs. Results are appended cell by cell to
bench/results/detect.json (``--resume`` skips cells already there) and summarised in
bench/results/detect.md. cleanlab and mlxtend are bench-only dependencies:
pip install cleanlab==2.9.0 mlxtend
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from common import EPOCHS, FEATURE_SETS, NOISE_CELLS, as_dataset, load, make_noise, run
from features_cells import run_features_cell, summarise_features
from trusted_cells import add_trusted
from sklearn.model_selection import StratifiedKFold

from noiseaudit.metrics import precision_recall_f1, ranking_metrics
from noiseaudit.models import build_model, default_model
from noiseaudit.report.threshold import choose_threshold
from noiseaudit.runtime import seed_everything
from noiseaudit.scan import ranking_score
from noiseaudit.train import TrainConfig, normaliser, predict, train

RESULTS = Path(__file__).resolve().parent / "results"
SCORES = Path(__file__).resolve().parent / ".data" / "detect_scores"  # per-sample scores of each cell (not committed)


def score_signal(truth: np.ndarray, score: np.ndarray, loss: np.ndarray, disagrees: np.ndarray,
                 seed: int) -> dict:
    """``score``: lower = more suspect. Ranking metrics plus the scan's automatic threshold."""
    m = ranking_metrics(truth, -score)
    t = choose_threshold(score, loss, disagrees, seed=seed)
    flagged = np.zeros(truth.size, dtype=bool)
    flagged[t.order[: t.n_flagged]] = True
    m["f1"] = precision_recall_f1(truth, flagged)[2]
    m["estimated_noise_rate"] = t.estimated_noise_rate
    for name, count in zip(("upper", "lower"), t.counts):  # the two counts the threshold brackets with
        top = np.zeros(truth.size, dtype=bool)
        top[t.order[:count]] = True
        m[f"f1_{name}_count"] = precision_recall_f1(truth, top)[2]
        m[f"{name}_count_rate"] = count / truth.size
    return m


def score_cell(scores: dict[str, np.ndarray], seed: int) -> dict[str, dict]:
    """Metrics of every signal of a cell from its per-sample scores (lower = more suspect for each)."""
    truth = scores["truth"]
    out = {}
    for tag in ("learned_run_", ""):
        loss, disagrees = scores[f"{tag}loss"], scores[f"{tag}disagrees"]
        if tag:
            out["learned_lr"] = score_signal(truth, scores["learned_lr"], loss, disagrees, seed)
        for sig, score in (("loss", -loss), ("margin", scores[f"{tag}margin"])):
            out[f"{tag}{sig}"] = score_signal(truth, score, loss, disagrees, seed)
    return out


def scores_path(cell: dict) -> Path:
    return SCORES / f"{cell['dataset']}_{cell['noise']}_{cell['seed']}.npz"


def save_scores(cell: dict, scores: dict[str, np.ndarray]) -> None:
    SCORES.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(scores_path(cell), **scores)


def rescore(cells: list[dict]) -> int:
    """Recompute our signals' metrics (the threshold's F1 and rate too) from the saved per-sample scores."""
    done = 0
    for cell in cells:
        path = scores_path(cell)
        if path.exists():
            with np.load(path) as saved:
                cell["signals"].update(score_cell(dict(saved), cell["seed"]))
            done += 1
    return done


def cleanlab_cv(x: np.ndarray, labels: np.ndarray, cfg: TrainConfig, seed: int,
                device: str) -> tuple[np.ndarray, float]:
    """Out-of-fold probabilities from 5 plain trainings of the same model."""
    probs = np.zeros((labels.size, int(labels.max()) + 1), dtype=np.float32)
    t0 = time.perf_counter()
    for fold, (tr, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=seed).split(x, labels)):
        data = as_dataset(x[tr], labels[tr])
        data.classes = list(range(probs.shape[1]))
        gen = seed_everything(seed * 100 + fold)
        model = build_model(default_model(1, data.image_size), 1, data.image_size, probs.shape[1])
        train(data, model, cfg, torch.device(device), gen)
        mean, std = (t.to(device) for t in normaliser(data.inputs))
        probs[te] = predict(model, torch.from_numpy(x[te]).to(device), mean, std)
    return probs, time.perf_counter() - t0


def run_cell(name: str, x: np.ndarray, y: np.ndarray, cell: str, seed: int, epochs: int, device: str,
             with_cleanlab: bool, meta: str) -> dict:
    noisy = make_noise(x, y, cell, seed, device)
    truth, labels = noisy.is_noisy, noisy.labels
    out: dict = {"dataset": name, "noise": cell, "seed": seed, "n": int(labels.size), "n_noisy": int(truth.sum()),
                 "epochs": epochs, "signals": {}, "seconds": {}}
    learned = run(x, labels, TrainConfig(epochs=epochs, method="learned-lr", meta=meta), seed, device)
    plain = run(x, labels, TrainConfig(epochs=epochs, method="plain"), seed, device)
    out["seconds"]["learned_lr"], out["seconds"]["plain"] = learned.seconds, plain.seconds
    out["rate_choice"] = learned.result.rate_choice
    scores = {"truth": truth}
    for tag, r in (("learned_run_", learned), ("", plain)):
        s = r.result.signals
        scores[f"{tag}disagrees"] = r.result.probs.argmax(1) != labels
        scores[f"{tag}loss"], scores[f"{tag}margin"] = s["loss"], s["margin"]
    scores["learned_lr"] = ranking_score(learned.result.signals, "learned-lr")
    save_scores(out, scores)
    out["signals"].update(score_cell(scores, seed))
    if with_cleanlab:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        probs, seconds = cleanlab_cv(x, labels, TrainConfig(epochs=epochs, method="plain"), seed, device)
        quality = get_label_quality_scores(labels, probs)
        m = ranking_metrics(truth, -quality)
        flagged = find_label_issues(labels, probs)
        m["f1"] = precision_recall_f1(truth, flagged)[2]
        m["estimated_noise_rate"] = float(flagged.mean())
        out["signals"]["cleanlab"] = m
        out["seconds"]["cleanlab_cv"] = seconds
    return out


# Extra rows (two-regime and DBA; MLR-SNet and layer-wise): name -> (method, TrainConfig fields); signals are
# scored as name[_suffix].
EXTRAS = {"two-regime": ("learned-lr", {"schedule": "two-regime"}), "cosine": ("learned-lr", {"schedule": "cosine"}),
          "step": ("learned-lr", {"schedule": "step"}), "dba": ("dba", {}),
          "mlr-snet": ("learned-lr", {"schedule": "mlr-snet"}), "layerwise": ("learned-lr", {"layerwise": True}),
          # a diagnostic: the constant schedule at the level the frozen MLR-SNet settles to (0.034-0.035 whatever the
          # loss it reads), to tell its level from its shape
          "mlr-snet-level": ("learned-lr", {"lr": 0.0345}),
          # logit adjustment (scan --balance-classes): on these near-balanced cells, whether it could be the default
          "balanced": ("learned-lr", {"balance_classes": True}),
          # the constant-schedule row again, for a side-by-side run on this machine (the cells may come from another)
          "rerun": ("learned-lr", {})}


def run_extra(cell: dict, x: np.ndarray, y: np.ndarray, extra: str, device: str) -> None:
    """Add one extra method's signals to an existing cell (same noise, seed and epochs)."""
    noisy = make_noise(x, y, cell["noise"], cell["seed"], device)
    truth, labels = noisy.is_noisy, noisy.labels
    method, options = EXTRAS[extra]
    r = run(x, labels, TrainConfig(epochs=cell["epochs"], method=method, **options), cell["seed"], device)
    s, disagrees = r.result.signals, r.result.probs.argmax(1) != labels
    cell["signals"][extra] = score_signal(truth, ranking_score(s, method), s["loss"], disagrees, cell["seed"])
    for part in ("large", "small"):
        if f"learned_lr_{part}" in s:
            cell["signals"][f"{extra}_{part}"] = score_signal(truth, np.log(s[f"learned_lr_{part}"]), s["loss"],
                                                              disagrees, cell["seed"])
    cell["seconds"][extra] = r.seconds
    if r.result.switch_epoch is not None:
        cell.setdefault("switch_epoch", {})[extra] = r.result.switch_epoch


ISSUE_BASELINES = ("loss", "margin", "cleanlab")  # plain training's loss and AUM margin, cleanlab on 5-fold CV
SAME_RUN = ("learned_run_loss", "learned_run_margin")  # loss and margin recorded by the learned-lr run itself


def summarise(cells: list[dict]) -> str:
    """Markdown: per dataset x noise, mean over seeds, and the issue's floors."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["noise"]), []).append(c)
    lines = ["| dataset | noise | seeds | AP learned_lr (± sd) | AP loss | AP margin | AP cleanlab | "
             "AP best baseline | Δ AP | floor | Δ AP vs same-run loss/margin | rates ranked | AUROC learned_lr | "
             "P@k learned_lr | F1 learned_lr | F1 cleanlab | est. rate (true) | time learned/plain | "
             "time learned/cleanlab-CV |",
             "|---|---|---|" + "---|" * 16]
    for (ds, noise), cs in sorted(groups.items()):
        def mean(sig: str, key: str) -> float:
            vals = [c["signals"][sig][key] for c in cs if sig in c["signals"]]
            return float(np.mean(vals)) if vals else float("nan")

        have = [b for b in ISSUE_BASELINES if all(b in c["signals"] for c in cs)]
        ap = mean("learned_lr", "average_precision")
        sd = float(np.std([c["signals"]["learned_lr"]["average_precision"] for c in cs]))
        best = max(mean(b, "average_precision") for b in have)
        same_run = max(mean(b, "average_precision") for b in SAME_RUN if all(b in c["signals"] for c in cs))
        hard = NOISE_CELLS[noise][0] != "symmetric"
        floor_ok = ap - best >= 0.03 if hard else ap - best >= -0.005
        t_ratio = np.median([c["seconds"]["learned_lr"] / c["seconds"]["plain"] for c in cs])
        cv = [c["seconds"]["learned_lr"] / c["seconds"]["cleanlab_cv"] for c in cs if "cleanlab_cv" in c["seconds"]]
        reused = sum("cleanlab_reused_from" in c for c in cs)
        chosen = [c.get("rate_choice", {}).get("meta", "?") for c in cs]
        ranked = ", ".join(f"{m} ×{chosen.count(m)}" for m in sorted(set(chosen)))
        rate, true_rate = mean("learned_lr", "estimated_noise_rate"), NOISE_CELLS[noise][1]
        f1, f1_cl = mean("learned_lr", "f1"), mean("cleanlab", "f1")
        f1_mark = "" if "cleanlab" not in have else (" ok" if f1 >= f1_cl else " MISSED")
        lines.append(
            f"| {ds} | {noise} | {len(cs)} | {ap:.3f} ± {sd:.3f} | {mean('loss', 'average_precision'):.3f} | "
            f"{mean('margin', 'average_precision'):.3f} | "
            f"{_fmt(mean('cleanlab', 'average_precision'))}{'*' if reused else ''} | {best:.3f} | {ap - best:+.3f} | "
            f"{'≥ +0.03' if hard else '≥ -0.005'} {'ok' if floor_ok else 'MISSED'} | {ap - same_run:+.3f} | "
            f"{ranked} | {mean('learned_lr', 'auroc'):.3f} | {mean('learned_lr', 'precision_at_k'):.3f} | "
            f"{f1:.3f}{f1_mark} | {_fmt(f1_cl)} | "
            f"{rate:.3f} ({true_rate:.2f}, {'ok' if abs(rate - true_rate) <= 0.03 else 'off'}) | {t_ratio:.2f} | "
            + (f"{np.median(cv):.2f} {'ok' if np.median(cv) <= 0.3 else 'MISSED'} |" if cv else "- |"))
    if any("cleanlab_reused_from" in c for c in cells):
        lines.append("\n\\* cleanlab's figures copied from an earlier run of the same cells (`--reuse-cleanlab`: plain "
                     "training and the injected noise are unchanged since); no cleanlab time ratio for them.")
    return "\n".join(lines) + "\n" + summarise_extras(groups, ISSUE_BASELINES)


def _fmt(v: float) -> str:
    return f"{v:.3f}" if np.isfinite(v) else "-"


def summarise_extras(groups: dict[tuple[str, str], list[dict]], baselines: tuple[str, ...]) -> str:
    """AP of each extra row beside learned-lr (constant schedule) and the best baseline, per cell."""
    names = [e for e in ("two-regime", "two-regime_large", "two-regime_small", "cosine", "step", "dba", "mlr-snet",
                         "mlr-snet-level", "layerwise", "balanced", "rerun")
             if any(e in c["signals"] for cs in groups.values() for c in cs)]
    if not names:
        return ""
    lines = ["", "Extra rows: AP, mean over the seeds that have them (seeds in brackets); Δ against the best "
             "baseline of those seeds.", "",
             "| dataset | noise | AP learned_lr (constant) | AP best baseline | " +
             " | ".join(f"AP {n} (Δ)" for n in names) + " |", "|---|---|---|---|" + "---|" * len(names)]
    for (ds, noise), cs in sorted(groups.items()):
        cells = []
        for name in names:
            have = [c for c in cs if name in c["signals"]]
            if not have:
                cells.append("-")
                continue
            ap_extra = np.mean([c["signals"][name]["average_precision"] for c in have])
            best = np.mean([max(c["signals"][b]["average_precision"] for b in baselines if b in c["signals"])
                            for c in have])
            cells.append(f"{ap_extra:.3f} ({ap_extra - best:+.3f}) [{len(have)}]")
        ap_lr = np.mean([c["signals"]["learned_lr"]["average_precision"] for c in cs])
        best_all = np.mean([max(c["signals"][b]["average_precision"] for b in baselines if b in c["signals"])
                            for c in cs])
        lines.append(f"| {ds} | {noise} | {ap_lr:.3f} | {best_all:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,mnist5k,fmnist10k")
    ap.add_argument("--noise", default=",".join(NOISE_CELLS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--meta", default="auto")
    ap.add_argument("--no-cleanlab", action="store_true")
    ap.add_argument("--reuse-cleanlab", type=Path, metavar="JSON", help="with --no-cleanlab: copy each cell's "
                    "cleanlab figures from this earlier results file (only valid while plain training and "
                    "the noise are unchanged); such cells are marked and get no cleanlab time ratio")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--rescore", action="store_true", help="recompute the metrics of our signals (threshold "
                    "included) from the per-sample scores saved by an earlier run; no training")
    ap.add_argument("--trusted", default="", help="instead: learned rates with these trusted fractions, drawn from "
                    "the truth (bench/trusted_cells.py; results in --trusted-out)")
    ap.add_argument("--trusted-weight", type=float, default=None, help="with --trusted: the references' weight")
    ap.add_argument("--trusted-out", type=Path, default=RESULTS / "detect_trusted.json",
                    help="with --trusted: merge the rows into this JSON (and its .md)")
    ap.add_argument("--extra", default="", help="add these rows to cells already in the JSON instead: "
                    f"comma-separated from {', '.join(EXTRAS)}")
    ap.add_argument("--out", type=Path, default=RESULTS / "detect.json")
    args = ap.parse_args()
    datasets = args.datasets.split(",")
    if args.device.startswith("cuda") and "fmnist60k" not in datasets:
        datasets.append("fmnist60k")
    keep = args.resume or args.extra or args.rescore
    saved = json.loads(args.out.read_text()) if keep and args.out.exists() else {"cells": []}
    done = saved["cells"]
    key = lambda c: (c["dataset"], c["noise"], c["seed"])  # noqa: E731
    seen = {key(c) for c in done}
    meta = {"device": args.device, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "meta_objective": args.meta}
    if args.trusted:
        extra = {} if args.trusted_weight is None else {"weight": args.trusted_weight}
        add_trusted(args.datasets.split(","), args.noise.split(","), list(map(int, args.seeds.split(","))),
                    list(map(float, args.trusted.split(","))), EPOCHS, load, args.device,
                    args.trusted_out, **extra)
        return
    if args.extra:
        add_extras(args, done)
        return
    if args.rescore:
        print(f"rescored {rescore(done)} of {len(done)} cells", flush=True)
        args.out.write_text(json.dumps({"meta": saved.get("meta", meta), "cells": done}, indent=1))
        table = summarise(with_extras(done, args.out))
        args.out.with_suffix(".md").write_text(table)
        print(table)
        return
    earlier = None if args.reuse_cleanlab is None else json.loads(args.reuse_cleanlab.read_text())["cells"]
    warm_up(args.device)
    for name in datasets:
        x, y = load(name)
        for noise in args.noise.split(","):
            for seed in map(int, args.seeds.split(",")):
                if (name, noise, seed) in seen:
                    continue
                if name in FEATURE_SETS:  # scan_features against cleanlab on logistic regression (features_cells)
                    cell = run_features_cell(name, x, y, noise, seed, args.device)
                else:
                    cell = run_cell(name, x, y, noise, seed, EPOCHS[name], args.device, not args.no_cleanlab,
                                    args.meta)
                if earlier is not None:
                    reuse_cleanlab(cell, earlier, args.reuse_cleanlab.name)
                done.append(cell)
                s = cell["signals"]
                print(f"{name} {noise} seed {seed}: AP learned_lr {s['learned_lr']['average_precision']:.3f} "
                      f"loss {s['loss']['average_precision']:.3f} margin {s['margin']['average_precision']:.3f}"
                      + (f" cleanlab {s['cleanlab']['average_precision']:.3f}" if "cleanlab" in s else "")
                      + f" | {cell['seconds']}", flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"meta": meta, "cells": done}, indent=1))
                (args.out.with_suffix(".md")).write_text(summary(done, args.out))
    print(summary(done, args.out))


def summary(cells: list[dict], out: Path) -> str:
    """The image matrix's table, and the feature-vector rows' own table (their floor is against cleanlab)."""
    images = [c for c in cells if c["dataset"] not in FEATURE_SETS]
    features = [c for c in cells if c["dataset"] in FEATURE_SETS]
    return (summarise(with_extras(images, out)) if images else "") + (summarise_features(features) if features else "")


def reuse_cleanlab(cell: dict, earlier: list[dict], source: str) -> None:
    """Copy cleanlab's figures for the same dataset, noise and seed from an earlier run's cells."""
    for old in earlier:
        if (old["dataset"], old["noise"], old["seed"]) == (cell["dataset"], cell["noise"], cell["seed"]):
            if "cleanlab" in old["signals"]:
                cell["signals"]["cleanlab"] = old["signals"]["cleanlab"]
                cell["cleanlab_reused_from"] = source
            return


def warm_up(device: str) -> None:
    """One untimed tiny run of each method, so the first timed run does not pay for thread pools and caches."""
    x, y = load("digits")
    for method in ("learned-lr", "plain"):
        run(x[:512], y[:512], TrainConfig(epochs=1, method=method), 0, device)


def extras_path(out: Path) -> Path:
    return out.with_name(out.stem + "_extras.json")


def with_extras(cells: list[dict], out: Path) -> list[dict]:
    """The cells with the extra rows (kept in a separate file, so both passes can run at once) merged in."""
    path = extras_path(out)
    extra = json.loads(path.read_text()) if path.exists() else {}
    merged = []
    for c in cells:
        e = extra.get(f"{c['dataset']}/{c['noise']}/{c['seed']}", {})
        merged.append({**c, "signals": {**c["signals"], **e.get("signals", {})},
                       "seconds": {**c["seconds"], **e.get("seconds", {})},
                       **({"switch_epoch": e["switch_epoch"]} if "switch_epoch" in e else {})})
    return merged


def add_extras(args: argparse.Namespace, done: list[dict]) -> None:
    """Run the extra rows for the selected cells that lack them, saving after each."""
    extras = args.extra.split(",")
    unknown = set(extras) - set(EXTRAS)
    if unknown:
        raise SystemExit(f"unknown extra rows {sorted(unknown)}; choose from {', '.join(EXTRAS)}")
    seeds, noises = set(map(int, args.seeds.split(","))), set(args.noise.split(","))
    path = extras_path(args.out)
    for name in args.datasets.split(","):
        x, y = load(name)
        for cell in done:
            if cell["dataset"] != name or cell["seed"] not in seeds or cell["noise"] not in noises:
                continue
            store = json.loads(path.read_text()) if path.exists() else {}
            key = f"{cell['dataset']}/{cell['noise']}/{cell['seed']}"
            for extra in extras:
                entry = store.setdefault(key, {"signals": {}, "seconds": {}})
                if extra in entry["signals"]:
                    continue
                probe = {**cell, "signals": {}, "seconds": {}}
                run_extra(probe, x, y, extra, args.device)
                entry["signals"].update(probe["signals"])
                entry["seconds"].update(probe["seconds"])
                if "switch_epoch" in probe:
                    entry.setdefault("switch_epoch", {}).update(probe["switch_epoch"])
                print(f"{key} {extra}: AP {probe['signals'][extra]['average_precision']:.3f}", flush=True)
                path.write_text(json.dumps(store, indent=1))
                base = json.loads(args.out.read_text())["cells"]
                args.out.with_suffix(".md").write_text(summarise(with_extras(base, args.out)))


if __name__ == "__main__":
    main()
