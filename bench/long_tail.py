"""Long-tailed data: the default scan against ``--balance-classes`` (logit adjustment), side by side.

    python bench/long_tail.py                     # both sets, seeds 0-2, about 15 minutes on 2 CPU cores
    python bench/long_tail.py --sets fm --seeds 0

Two long tails, each scanned as a user would (``noiseaudit scan ... --json``, every default, then the same with
``--balance-classes``):

- ``cifar``: 3,105 CIFAR-10 training photos from ``../shared/data/cifar10/`` (never copied here) in ten classes of
  1,200 down to 5, drawn by one annotator's CIFAR-10N label (``random1``: real human noise, 19.9% wrong here), the
  set a first-hour tester built (their contractor-style folder names aside). Beside it cleanlab 2.9 on 5-fold
  cross-validated logistic regression of the frozen pooled embeddings and a 20-NN vote (``real.baselines``).
- ``fm``: 1,220 of ``sample_data``'s Fashion-MNIST images in classes of 400 down to 8 (by their true class), 20% of
  them flipped to a uniformly drawn other class: symmetric noise over a long tail, which fills the small classes
  with wrong labels (from scratch: the images are grayscale).

Every figure is against the known truth; per class, the flags of the three smallest given classes. Results go to
bench/results/long_tail.json and long_tail.md. Needs ``pip install -e ".[pretrained]" cleanlab==2.9.0``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from real import RESULTS, ROOT, SHARED, baselines, cli_scan, extract, report_metrics

from noiseaudit import read_report

CIFAR_SIZES = {"automobile": 1200, "dog": 800, "airplane": 500, "frog": 300, "bird": 150, "horse": 80, "ship": 40,
               "deer": 20, "cat": 10, "truck": 5}
FM_SIZES = (400, 300, 200, 120, 80, 50, 30, 20, 12, 8)
SETTINGS = {"default": (), "balanced": ("--balance-classes",)}


def cifar_set(work: Path) -> tuple[Path, Path]:
    """The photos (extracted) and a labels CSV: path, the annotator's label, CIFAR-10's clean one."""
    images = extract(work / "cifar")
    table = pd.read_csv(SHARED / "cifar10n_train_labels.csv")
    rng = np.random.default_rng(0)
    parts = [table[table["random1"] == c].sample(n=n, random_state=int(rng.integers(1 << 30)))
             for c, n in CIFAR_SIZES.items()]
    chosen = pd.concat(parts).sample(frac=1, random_state=1)
    csv = work / "cifar_long_tail.csv"
    chosen.rename(columns={"random1": "label", "clean": "original_label"})[["path", "label", "original_label"]] \
        .to_csv(csv, index=False)
    return images, csv


def fm_set(work: Path) -> tuple[Path, Path]:
    """sample_data's images in a long tail of true classes, 20% flipped to another class of the tail."""
    table = pd.read_csv(ROOT / "sample_data" / "labels.csv")
    rng = np.random.default_rng(0)
    classes = list(rng.permutation(sorted(table["original_label"].unique())))
    chosen = pd.concat([table[table["original_label"] == c].sample(n, random_state=0)
                        for c, n in zip(classes, FM_SIZES)])
    truth = chosen["original_label"].to_numpy()
    given = truth.copy()
    for i in np.flatnonzero(rng.random(len(truth)) < 0.2):
        given[i] = rng.choice([c for c in classes if c != truth[i]])
    csv = work / "fm_long_tail.csv"
    pd.DataFrame({"path": chosen["path"], "label": given, "original_label": truth}).to_csv(csv, index=False)
    return ROOT / "sample_data" / "images", csv


def smallest_classes(report_path: Path, n: int = 3) -> dict:
    """For the ``n`` smallest given classes: samples, known wrong, flagged, flagged and wrong, predicted."""
    report, _ = read_report(report_path)
    report = report[report["status"] == "ok"]
    wrong = report["given_label"].astype(str) != report["original_label"].astype(str)
    out = {}
    for label in report["given_label"].value_counts().index[::-1][:n]:
        mine = report["given_label"] == label
        out[str(label)] = {"n": int(mine.sum()), "wrong": int((mine & wrong).sum()),
                           "flagged": int((mine & report["is_suspect"]).sum()),
                           "flagged_wrong": int((mine & report["is_suspect"] & wrong).sum()),
                           "predicted": int((report["predicted_label"] == label).sum())}
    return out


def run_set(name: str, images: Path, csv: Path, work: Path, seeds: list[int]) -> dict:
    cell: dict = {"runs": {}}
    for seed in seeds:
        for setting, extra in SETTINGS.items():
            out = work / f"{name}_{setting}_{seed}.parquet"
            summary, wall = cli_scan(images, csv, out, work / f"cache_{name}", "--seed", str(seed), *extra)
            metrics = report_metrics(out)
            cell["runs"][f"{setting}/{seed}"] = {
                **{k: metrics[k] for k in ("average_precision", "auroc", "precision", "recall", "f1", "n_flagged",
                                           "n", "n_noisy")},
                "seconds": round(wall, 1), "smallest": smallest_classes(out),
                "unlearned_classes": [c["given_label"] for c in summary.get("unlearned_classes", [])]}
            print(name, setting, seed, {k: round(v, 3) for k, v in metrics.items() if k in ("average_precision", "f1")},
                  flush=True)
    for setting in SETTINGS:
        runs = [cell["runs"][f"{setting}/{s}"] for s in seeds]
        cell[setting] = {k: float(np.mean([r[k] for r in runs])) for k in ("average_precision", "auroc", "f1")}
    if name == "cifar":
        cell["baselines"] = baselines(images, csv, work / f"cache_{name}", with_head_cv=False)
    return cell


def markdown(results: dict) -> str:
    lines = ["| set | setting | AP | AUROC | F1 | flags in the 3 smallest classes (wrong among them) |",
             "|---|---|---|---|---|---|"]
    for name, cell in results["sets"].items():
        for setting in SETTINGS:
            first = cell["runs"][f"{setting}/{results['seeds'][0]}"]["smallest"]
            small = ", ".join(f"{c} {v['flagged']}/{v['n']} ({v['flagged_wrong']})" for c, v in first.items())
            m = cell[setting]
            lines.append(f"| {name} | {setting} | {m['average_precision']:.3f} | {m['auroc']:.3f} | {m['f1']:.3f} | "
                         f"{small} |")
        for base, m in cell.get("baselines", {}).items():
            f1 = f"{m['f1']:.3f}" if "f1" in m else "–"
            lines.append(f"| {name} | {base} | {m['average_precision']:.3f} | {m['auroc']:.3f} | {f1} | – |")
    return "\n".join(lines) + f"\n\nMeans over seeds {results['seeds']}; the smallest classes from seed " \
        f"{results['seeds'][0]}. {results['machine']}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="cifar,fm")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {"seeds": seeds, "machine": f"{platform.processor() or platform.machine()}, 2 CPU cores", "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        makers = {"cifar": cifar_set, "fm": fm_set}
        for name in args.sets.split(","):
            images, csv = makers[name](work)
            results["sets"][name] = run_set(name, images, csv, work, seeds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "long_tail.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "long_tail.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
