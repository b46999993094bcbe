"""The final model from scratch: the last step's weights against the mean over the last epoch.

    python bench/final_model.py                                   # the detection matrix's 15 noisy cells, seeds 0-2
    python bench/final_model.py --datasets digits --seeds 0       # a quick look

The scan trains from scratch and ranks by the learned rates, which do not depend on the final model.
That model gives each sample's ``predicted_label``, ``given_prob`` and ``suggested_label``, the
disagreements the threshold counts, and the ``--save-model`` file. Each cell trains the scan's
learned-rate run once (``common.run``, the scan's defaults) with ``average_last_epoch`` and keeps the last
step's weights before the average is copied in, so both final models come from one run with the same
rates. For each: the scan's count and flag F1, the share of training samples whose prediction is their
true label, and on Fashion-MNIST the accuracy on its clean test split.

Results: bench/results/final_model.json (per cell and seed, and the means).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from common import EPOCHS, load, make_noise, run

from noiseaudit.metrics import precision_recall_f1
from noiseaudit.optim import averaging
from noiseaudit.report.threshold import choose_threshold
from noiseaudit.scan import ranking_score
from noiseaudit.train import TrainConfig, normaliser, predict

RESULTS = Path(__file__).resolve().parent / "results"
_LAST: dict[str, dict] = {}
_copy_to = averaging.WeightAverage.copy_to


def _keep_last_step(self: averaging.WeightAverage, model: torch.nn.Module) -> None:
    _LAST["state"] = copy.deepcopy(model.state_dict())
    _copy_to(self, model)


def score(model: torch.nn.Module, inputs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, rate: np.ndarray,
          loss: np.ndarray, given: np.ndarray, truth: np.ndarray, true: np.ndarray, seed: int,
          test: tuple[torch.Tensor, np.ndarray] | None) -> dict:
    predicted = predict(model, inputs, mean, std).argmax(1)
    t = choose_threshold(rate, loss, predicted != given, seed=seed)
    flagged = np.zeros(given.size, dtype=bool)
    flagged[t.order[: t.n_flagged]] = True
    out = {"f1": precision_recall_f1(truth, flagged)[2], "flagged": t.n_flagged / given.size,
           "predictions_true": float((predicted == true).mean())}
    if test is not None:
        out["test_accuracy"] = float((predict(model, test[0], mean, std).argmax(1) == test[1]).mean())
    return out


def run_cell(name: str, x: np.ndarray, y: np.ndarray, cell: str, seed: int,
             test: tuple[torch.Tensor, np.ndarray] | None) -> dict:
    noisy = make_noise(x, y, cell, seed)
    r = run(x, noisy.labels, TrainConfig(epochs=EPOCHS[name], average_last_epoch=True), seed)
    rate, loss = ranking_score(r.result.signals, "learned-lr"), r.result.signals["loss"]
    mean, std = normaliser(r.data.inputs, r.model)
    last = copy.deepcopy(r.model)
    last.load_state_dict(_LAST.pop("state"))
    args = (r.data.inputs, mean, std, rate, loss, noisy.labels, noisy.is_noisy, y, seed, test)
    return {"dataset": name, "noise": cell, "seed": seed, "last_step": score(last, *args),
            "last_epoch_mean": score(r.model, *args)}


def summarise(cells: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["noise"]), []).append(c)
    return [{"dataset": d, "noise": n, "seeds": len(cs),
             **{f"{k}_{model}": float(np.mean([c[model][k] for c in cs])) for model in ("last_step", "last_epoch_mean")
                for k in cs[0][model]}} for (d, n), cs in groups.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,mnist5k,fmnist10k")
    ap.add_argument("--noise", default="sym20,sym40,asym20,asym40,inst20")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=RESULTS / "final_model.json")
    args = ap.parse_args()
    averaging.WeightAverage.copy_to = _keep_last_step  # the trainer copies the average in at the very end
    cells = []
    for name in args.datasets.split(","):
        x, y = load(name)
        test = None
        if name.startswith("fmnist"):
            from fashion_mnist import load_fashion_mnist

            tx, ty = load_fashion_mnist("test")
            test = (torch.from_numpy(tx[:, None].copy()), ty)
        for cell in args.noise.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                cells.append(run_cell(name, x, y, cell, seed, test))
                print(json.dumps(cells[-1]), flush=True)
    out = {"cells": cells, "summary": summarise(cells)}
    args.out.write_text(json.dumps(out, indent=1))
    for row in out["summary"]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
