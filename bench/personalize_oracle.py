"""How far re-weighting toward the target domain can go on personalize.py's clean cell: an oracle.

    python bench/personalize_oracle.py            # seeds 0-2, about 5 minutes on 2 cores

bench/personalize.py asks the learned rates, steered by 200 verified target-domain images, to lift
target-domain accuracy 2 points over plain training. The rates can only re-weight the 10,000
training images. This script gives plain training what the rates have to learn, which half each
image comes from (the inverted-contrast half is the target domain), and re-weights by hand:

- ``plain``: the 10,000 plus the 200, 10 epochs (personalize.py's plain run);
- ``target-half-only``: only the 5,000 inverted images plus the 200 (weight 0 on the source half),
  10 epochs and 20 (the same number of steps as ``plain``);
- ``target-half-x2``: the inverted half and the 200 listed twice (twice the weight), 10 epochs and 7
  (about the same number of steps as ``plain``).

Same data, seeds, model and tests as personalize.py (``domains``, ``accuracy``); labels are clean.
Results: bench/results/personalize_oracle.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from common import as_dataset
from personalize import accuracy, domains

from noiseaudit.models import build_model, default_model
from noiseaudit.runtime import seed_everything
from noiseaudit.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = {"plain": (10,), "target-half-only": (10, 20), "target-half-x2": (10, 7)}  # epochs


def training_set(d: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    inv = d["inverted"]
    if name == "plain":
        parts = [(d["x"], d["y"]), (d["x_target"], d["y_target"])]
    elif name == "target-half-only":
        parts = [(d["x"][inv], d["y"][inv]), (d["x_target"], d["y_target"])]
    else:
        parts = [(d["x"], d["y"]), (d["x"][inv], d["y"][inv]), (d["x_target"], d["y_target"]),
                 (d["x_target"], d["y_target"])]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def main() -> None:
    rows = []
    for seed in (0, 1, 2):
        d = domains(seed)
        for name, epochs_list in RUNS.items():
            x, y = training_set(d, name)
            data = as_dataset(x, y)
            for epochs in epochs_list:
                gen = seed_everything(seed)
                model = build_model(default_model(1, 28), 1, 28, 10)
                train(data, model, TrainConfig(epochs=epochs, method="plain"), torch.device("cpu"), gen)
                row = {"seed": seed, "run": name, "epochs": epochs, "n_train": len(y),
                       "target_acc": accuracy(model, data, d["x_test_target"], d["y_test"]),
                       "source_acc": accuracy(model, data, d["x_test_source"], d["y_test"])}
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for name, epochs_list in RUNS.items():
        for epochs in epochs_list:
            acc = [r["target_acc"] for r in rows if r["run"] == name and r["epochs"] == epochs]
            summary[f"{name}, {epochs} epochs"] = {"target_acc_mean": float(np.mean(acc)),
                                                   "target_acc_sd": float(np.std(acc, ddof=1)), "seeds": len(acc)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "personalize_oracle.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
