"""Does retraining after the scan reach bench/robust.py's missed floor? A probe of issue 16's robust model.

    python bench/refit_probe.py                     # Fashion-MNIST 10k, sym40, seeds 0 and 1 (about 12 minutes a seed)
    python bench/refit_probe.py --seeds 0 --threads 2

The scan's model already trains with the learned rates. A two-pass recipe (cleanlab's ``CleanLearning``: find
the wrong labels, then train again without them) might do more. Per seed, side by side on one machine, every
model the mean of its last epoch's weights, at the settings bench/robust.py chose (results/robust.json):

- ``scan``: the learned-rate trainer on every row; its flags are the scan's (the rate ranking and the
  automatic threshold), its suggestion the likeliest other class;
- ``sgd``: plain SGD on every row (robust.py's baseline);
- ``drop``: plain SGD on the rows not flagged;
- ``relabel``: plain SGD on every row, the flagged ones relabelled to the suggestion;
- ``right_not_flagged`` and ``right_and_missed``: the right labels the scan did not flag, and every right
  label plus the wrong ones it missed (what each half of its mistakes costs);
- ``oracle``: plain SGD on the right labels alone, at SGD's rate.

Clean-test accuracy; results in bench/results/refit_probe.json. Seeds run one after another; for speed run
one process a seed (``--seeds 0 --out a.json`` and ``--seeds 1 --out b.json``) with ``--threads 1`` each.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from common import as_dataset
from robust import Fmnist, train_config

from noiseaudit.models import build_model, default_model
from noiseaudit.report.threshold import choose_threshold
from noiseaudit.runtime import seed_everything
from noiseaudit.scan import ranking_score
from noiseaudit.train import normaliser, predict, train

RESULTS = Path(__file__).resolve().parent / "results"


def scan_flags(bench: Fmnist, labels: np.ndarray, setting: dict, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    """The learned-rate run on every row: its clean-test accuracy, its flags and its suggested labels."""
    data = as_dataset(bench.x, labels)
    seed_everything(seed)
    model = build_model(default_model(data.channels, data.image_size), data.channels, data.image_size, 10)
    result = train(data, model, train_config("learned-lr", setting, bench.base), torch.device("cpu"),
                   seed_everything(seed))
    mean, std = normaliser(data.inputs, model)
    accuracy = float((predict(model, bench.test_x, mean, std).argmax(axis=1) == bench.test_y).mean())
    score = ranking_score(result.signals, "learned-lr")
    disagrees = result.probs.argmax(axis=1) != labels
    threshold = choose_threshold(score, result.signals["loss"], disagrees, seed=seed)
    flags = np.zeros(labels.size, dtype=bool)
    flags[threshold.order[:threshold.n_flagged]] = True
    others = result.probs.copy()
    others[np.arange(labels.size), labels] = -1.0
    return accuracy, flags, others.argmax(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="sym40")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "refit_probe.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen = json.loads((RESULTS / "robust.json").read_text())["sweeps"]["fmnist"]["chosen"]
    bench = Fmnist()
    out: dict = {"cell": args.cell, "chosen": {m: chosen[m] for m in ("sgd", "learned-lr")},
                 "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                 "threads": args.threads, "runs": {}}
    for seed in map(int, args.seeds.split(",")):
        t0 = time.perf_counter()
        labels = bench.labels(args.cell, seed)
        right = labels == bench.y
        scan_acc, flags, suggested = scan_flags(bench, labels, chosen["learned-lr"], seed)
        relabelled = np.where(flags, suggested, labels)
        sgd = train_config("sgd", chosen["sgd"], bench.base)

        def acc(rows: np.ndarray, y: np.ndarray = labels) -> float:
            return bench.run(np.flatnonzero(rows), y, sgd, seed, bench.test_x, bench.test_y)["accuracy"]

        everything = np.ones(labels.size, dtype=bool)
        run = {"n_flagged": int(flags.sum()), "precision": float((~right[flags]).mean()),
               "recall": float(flags[~right].mean()), "kept_noise": float((~right[~flags]).mean()),
               "relabelled_noise": float((relabelled != bench.y).mean()),
               "accuracy": {"scan": scan_acc, "sgd": acc(everything), "drop": acc(~flags),
                            "relabel": acc(everything, relabelled), "right_not_flagged": acc(right & ~flags),
                            "right_and_missed": acc(right | ~flags), "oracle": acc(right)}}
        run["seconds"] = round(time.perf_counter() - t0)
        out["runs"][str(seed)] = run
        print(seed, json.dumps(run), flush=True)
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
