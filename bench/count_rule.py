"""The count of flags: the scan's rule against confident-learning counts on the same final model.

    python bench/count_rule.py            # about 5 minutes on 2 CPU cores; writes results/count_rule.json

A first-hour tester found many flags on clean labels (6% of sklearn digits as feature vectors, 16-22% of 4,000
Fashion-MNIST vectors), and more flags than wrong labels on noisy vectors. cleanlab estimates the count from
its confident joint (``num_label_issues``, off-diagonal, plain and calibrated). Here both counts come from the
scan's own final model (its in-sample probabilities: the scan has no held-out ones), and each count is scored as
the F1 of the scan's ranking cut at that many. Cells:

- feature vectors through ``scan_features`` (its defaults): sklearn digits (64 pixels) and the first 4,000
  Fashion-MNIST test images (PCA to 128), clean and at 20/40% symmetric, 20/40% pair-flip and 20% instance
  noise (drawn from 5-fold logistic-regression probabilities), seeds 0-1;
- images from scratch (``common.run``, the scan's training): sklearn digits, the same noise (instance noise as
  the detection matrix draws it), seeds 0-1.

Bench-only: needs ``pip install cleanlab==2.9.0``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from cleanlab.count import num_label_issues
from common import EPOCHS, load, make_noise, run
from fashion_mnist import load_fashion_mnist
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from noiseaudit import load_model, scan_features
from noiseaudit.metrics import precision_recall_f1
from noiseaudit.noise import inject_noise
from noiseaudit.report.threshold import choose_threshold
from noiseaudit.scan import ranking_score
from noiseaudit.train import TrainConfig, normaliser, predict

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = {"clean": None, "sym20": ("symmetric", 0.2), "sym40": ("symmetric", 0.4), "asym20": ("asymmetric", 0.2),
         "asym40": ("asymmetric", 0.4), "inst20": ("instance", 0.2)}
SEEDS = (0, 1)


def f1_at(order: np.ndarray, truth: np.ndarray, k: int) -> float | None:
    if not truth.any():
        return None
    flagged = np.zeros(truth.size, dtype=bool)
    flagged[order[:k]] = True
    return round(precision_recall_f1(truth, flagged)[2], 4)


def row(kind: str, name: str, cell: str, seed: int, truth: np.ndarray, rule: str, n_rule: int, order: np.ndarray,
        given: np.ndarray, probs: np.ndarray) -> dict:
    counts = {"rule": n_rule, "cl": int(num_label_issues(given, probs, estimation_method="off_diagonal")),
              "cl_calibrated": int(num_label_issues(given, probs, estimation_method="off_diagonal_calibrated")),
              "disagreements": int((probs.argmax(1) != given).sum())}
    out = {"input": kind, "dataset": name, "noise": cell, "seed": seed, "wrong": int(truth.sum()), "rule": rule,
           "counts": counts, "f1": {k: f1_at(order, truth, v) for k, v in counts.items()},
           "f1_at_true_count": f1_at(order, truth, int(truth.sum()))}
    print(json.dumps(out), flush=True)
    return out


def vectors() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    digits = load_digits()
    x, y = load_fashion_mnist("test")
    flat = x[:4000].reshape(4000, -1) / 255.0
    return {"digits": (digits.data, digits.target), "fmnist4k": (PCA(128, random_state=0).fit_transform(flat),
                                                                 y[:4000].astype(int))}


def feature_cells(folder: Path) -> list[dict]:
    rows = []
    for name, (x, y) in vectors().items():
        probs_for_instance = cross_val_predict(LogisticRegression(max_iter=300), x / np.abs(x).max(), y, cv=5,
                                               method="predict_proba")
        for cell, noise in CELLS.items():
            for seed in SEEDS:
                labels = y.copy() if noise is None else np.asarray(inject_noise(
                    y, noise[1], noise[0], 10, seed=seed,
                    probs=probs_for_instance if noise[0] == "instance" else None).labels)
                model = folder / "model.pt"
                report = scan_features(x, pd.DataFrame({"label": labels}), seed=seed, device="cpu",
                                       save_model=model, overwrite=True)
                probs = load_model(model).predict(x)[[f"prob_{c}" for c in range(10)]].to_numpy()
                order = report.sort_values("rank")["sample_id"].to_numpy()
                rows.append(row("vectors", name, cell, seed, labels != y, report.attrs["noiseaudit"]["threshold"]
                                ["rule"], int(report["is_suspect"].sum()), order, labels, probs))
    return rows


def image_cells() -> list[dict]:
    rows = []
    x, y = load("digits")[:2]
    for cell in CELLS:
        for seed in SEEDS:
            if cell == "clean":
                labels, truth = y.copy(), np.zeros(y.size, dtype=bool)
            else:
                noisy = make_noise(x, y, cell, seed)
                labels, truth = np.asarray(noisy.labels), np.asarray(noisy.is_noisy)
            r = run(x, labels, TrainConfig(epochs=EPOCHS["digits"], average_last_epoch=True), seed)
            rate, loss = ranking_score(r.result.signals, "learned-lr"), r.result.signals["loss"]
            probs = predict(r.model, r.data.inputs, *normaliser(r.data.inputs, r.model))
            given = np.asarray(r.data.targets)
            t = choose_threshold(rate, loss, probs.argmax(1) != given, seed=seed)
            rows.append(row("images", "digits", cell, seed, truth, t.rule, t.n_flagged, t.order, given, probs))
    return rows


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        rows = feature_cells(Path(folder)) + image_cells()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "count_rule.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
