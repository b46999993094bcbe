"""Seeded detection on real data (sklearn digits) with injected noise: real training, asserted thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from noiseaudit import scan
from noiseaudit.metrics import ranking_metrics
from noiseaudit.report.io import read_report


def test_digits_symmetric_20_learned_rate_ranking(noisy_digits, tmp_path):
    image_dir, csv = noisy_digits
    out = tmp_path / "report.parquet"
    report = scan(image_dir, csv, output=out, label_col="digit", epochs=20, seed=0, device="cpu", workers=2)
    truth = report["is_noisy"].to_numpy()
    assert truth.sum() == round(0.2 * len(report))
    by_rank = ranking_metrics(truth, -report["rank"].to_numpy(float))
    assert by_rank["average_precision"] >= 0.95, by_rank
    assert by_rank["auroc"] >= 0.98, by_rank
    # The learned rates of wrong labels are driven down, those of clean ones up.
    lr = report["learned_lr"].to_numpy()
    assert np.median(lr[truth]) < 1.0 < np.median(lr[~truth])
    # The automatic threshold flags roughly the injected fraction.
    assert abs(report["is_suspect"].mean() - 0.2) <= 0.08
    # Suggested labels recover most true labels of the flagged wrong ones.
    caught = report[report["is_suspect"] & report["is_noisy"]]
    assert (caught["suggested_label"] == caught["original_label"]).mean() >= 0.8
    saved, meta = read_report(out)
    pd.testing.assert_frame_equal(saved, report.reset_index(drop=True), check_like=False)
    assert meta["seed"] == 0 and meta["config"]["epochs"] == 20


def test_same_seed_same_report_on_cpu(noisy_digits):
    image_dir, csv = noisy_digits
    a = scan(image_dir, csv, label_col="digit", epochs=2, seed=3, device="cpu")
    b = scan(image_dir, csv, label_col="digit", epochs=2, seed=3, device="cpu")
    pd.testing.assert_frame_equal(a, b)
    c = scan(image_dir, csv, label_col="digit", epochs=2, seed=4, device="cpu")
    assert not np.array_equal(a["learned_lr"].to_numpy(), c["learned_lr"].to_numpy())
