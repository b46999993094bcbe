"""A probe for the CIFAR-10N AP floor: do out-of-fold probabilities added to the learned rates close the gap
to cleanlab on 5-fold cross-validation of our own model?

    python bench/crossfit.py --work /tmp/realbench                  # worse, aggre, random1 at 10k, seeds 0 and 1

Each label set's 10,000 photos (``bench/real.py``'s first 10,000, extracted to ``--work`` if needed) are split
in two fixed halves. Each half is scanned with every default (``noiseaudit.scan``, the default backbone path)
and its model saved; each model predicts the other half (``load_model(...).predict``), so every photo gets
an in-sample learned rate from its own half and an out-of-fold p(given label) from the other half's model:
the same training cost as one scan of the 10,000. One scan of the whole 10,000 is run as well. Scores, all
ranked by AP against the truth:

- ``full-rate``: the scan of the 10,000 (what ships); ``full-margin``: the same run's AUM margin;
- ``half-rate``: each photo's rate from its half's scan;
- ``oof``: 1 - the out-of-fold p(given);
- ``half+oof``, ``full+oof``, ``full+half+oof``, ``full-margin+oof``: sums of the scores' ranks (all but the
  first cost two scans).

The reference is ``cleanlab on 5-fold CV of our model`` from bench/results/real.json. Not shipped (see
bench/README.md, "The AP floor: a cross-fit probe"). Results: bench/results/crossfit.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from real import RESULTS, extract, write_labels
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from noiseaudit import load_model, scan


def scores(work: Path, images: Path, label_set: str, seed: int) -> dict[str, np.ndarray]:
    """Every score of the docstring for one label set and seed, and the truth."""
    csv = write_labels(images, 10_000, label_set, work)
    table = pd.read_csv(csv)
    order = np.random.default_rng(1234).permutation(len(table))
    halves = [np.sort(order[:5000]), np.sort(order[5000:])]
    cache = str(work / "cache_crossfit")
    full = scan(str(images), str(csv), cache_dir=cache, seed=seed)
    half_rate, oof = np.zeros(len(table)), np.zeros(len(table))
    for h, rows in enumerate(halves):
        table.iloc[rows].to_csv(work / f"crossfit_{label_set}_h{h}.csv", index=False)
    for h, rows in enumerate(halves):
        report = scan(str(images), str(work / f"crossfit_{label_set}_h{h}.csv"), cache_dir=cache, seed=seed,
                      save_model=str(work / f"crossfit_{label_set}_h{h}.pt"), overwrite=True)
        half_rate[rows] = report.sort_values("sample_id").learned_lr.to_numpy()
    for h, rows in enumerate(halves):
        other = load_model(work / f"crossfit_{label_set}_h{1 - h}.pt")
        pred = other.predict(str(images), str(work / f"crossfit_{label_set}_h{h}.csv"), cache_dir=cache)
        pred = pred.sort_values("sample_id")
        columns = [f"prob_{g}" for g in table.label.iloc[rows]]
        oof[rows] = pred.to_numpy()[np.arange(len(rows)), pred.columns.get_indexer(columns)].astype(float)
    rank = lambda s: rankdata(s) / len(s)  # noqa: E731
    full = full.sort_values("sample_id")
    full_s, margin_s, half_s, oof_s = -full.learned_lr.to_numpy(), -full.margin.to_numpy(), -half_rate, -oof
    return {"truth": (table.label != table.original_label).to_numpy(), "full-rate": full_s,
            "full-margin": margin_s, "half-rate": half_s, "oof": oof_s, "half+oof": rank(half_s) + rank(oof_s),
            "full+oof": rank(full_s) + rank(oof_s), "full+half+oof": rank(full_s) + rank(half_s) + rank(oof_s),
            "full-margin+oof": rank(margin_s) + rank(oof_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="bench/real.py's work folder (extracted if empty)")
    ap.add_argument("--labels", default="worse,aggre,random1")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", type=Path, default=RESULTS / "crossfit.json")
    args = ap.parse_args()
    images = args.work / "cifar10"
    if not (images / "train").is_dir():
        extract(images)
    reference = json.loads((RESULTS / "real.json").read_text())["cells"]
    out: dict = {"cells": {}}
    for label_set in args.labels.split(","):
        cv = reference[f"10000/{label_set}"]["baselines"]["cleanlab_our_head_cv"]["average_precision"]
        cell = out["cells"][label_set] = {"cleanlab_cv_of_our_model_ap": round(cv, 4), "ap": {}}
        for seed in map(int, args.seeds.split(",")):
            s = scores(args.work, images, label_set, seed)
            truth = s.pop("truth")
            cell["ap"][str(seed)] = {k: round(float(average_precision_score(truth, v)), 4) for k, v in s.items()}
            print(label_set, seed, cell["ap"][str(seed)], "CV of our model", round(cv, 4), flush=True)
            args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
