"""Report schema and metadata, the threshold, metrics, and atomic writes."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from noiseaudit import read_report, scan
from noiseaudit.metrics import detection_metrics
from noiseaudit.report.build import REPORT_COLUMNS
from noiseaudit.report.io import atomic_write, check_writable
from noiseaudit.errors import UsageError
from noiseaudit.report.threshold import choose_threshold, density_valley, rank_sum, reranked

REQUIRED = ["sample_id", "path", "given_label", "predicted_label", "pred_prob", "given_prob", "learned_lr",
            "learned_lr_mean", "loss", "margin", "rank", "suspicion", "is_suspect"]


@pytest.fixture(scope="module")
def digits_report(noisy_digits, tmp_path_factory):
    image_dir, csv = noisy_digits
    out = tmp_path_factory.mktemp("report") / "r.parquet"
    report = scan(image_dir, csv, output=out, label_col="digit", epochs=3, seed=1, device="cpu")
    return report, out


def test_schema_and_metadata(digits_report):
    report, out = digits_report
    saved, meta = read_report(out)
    assert set(REQUIRED) <= set(saved.columns)
    assert list(saved.columns[: len(REPORT_COLUMNS)]) == list(REPORT_COLUMNS)
    assert {"original_label", "is_noisy"} <= set(saved.columns)  # carried input columns
    assert saved["is_noisy"].dtype == bool and saved["original_label"].dtype.kind == "i"
    assert len(saved) == 1797 and saved["sample_id"].tolist() == list(range(1797))
    assert sorted(saved["rank"]) == list(range(1, 1798))
    assert saved["suspicion"].between(0, 1).all()
    assert (saved["learned_lr"] > 0).all()
    # Rank 1 has the lowest learned rate; flagged samples are exactly the top of the ranking.
    ordered = saved.sort_values("rank")
    assert ordered["learned_lr"].is_monotonic_increasing
    assert ordered["is_suspect"].tolist() == sorted(ordered["is_suspect"].tolist(), reverse=True)
    assert ordered["suspicion"].is_monotonic_decreasing
    for key in ("version", "config", "seed", "classes", "threshold", "timings"):
        assert key in meta
    assert meta["classes"] == list(range(10)) and meta["config"]["label_col"] == "digit"
    assert meta["threshold"]["n_flagged"] == int(saved["is_suspect"].sum())
    # what a rerun must match to be the same run (a tester could not tell reports of other pixels or threads apart)
    assert re.fullmatch("[0-9a-f]{64}", meta["data_fingerprint"]) and meta["threads"] == torch.get_num_threads()
    assert meta["numpy"] == np.__version__ and meta["python"] and meta["platform"]
    upper, lower = meta["threshold"]["upper_count"], meta["threshold"]["lower_count"]
    assert upper >= lower >= 0 and meta["threshold"]["method"] == "gmm"
    assert meta["threshold"]["rule"] in ("lower: not bimodal", "lower: the model agrees", "upper", "valley",
                                         "midpoint")
    assert b"noiseaudit" in pq.read_schema(out).metadata


def test_noise_rate_sets_flag_count(noisy_digits):
    image_dir, csv = noisy_digits
    report = scan(image_dir, csv, label_col="digit", epochs=1, seed=0, device="cpu", noise_rate=0.1)
    assert report["is_suspect"].sum() == round(0.1 * 1797)
    assert report.attrs["noiseaudit"]["threshold"]["method"] == "noise-rate"


def test_gmm_threshold_finds_a_separated_low_mode():
    rng = np.random.default_rng(0)
    lr = np.exp(np.concatenate([rng.normal(0.3, 0.15, 800), rng.normal(-0.8, 0.2, 200)]))
    t = choose_threshold(np.log(lr), np.zeros_like(lr))
    assert t.method == "gmm" and abs(t.estimated_noise_rate - 0.2) < 0.02
    assert t.suspicion[np.argmin(lr)] > 0.99 and t.suspicion[np.argmax(lr)] < 0.01


def test_threshold_counts_only_disagreements_when_the_low_mode_is_hard_clean_samples():
    # A cleaned dataset: a separated low mode, but the model agrees with almost all of it.
    rng = np.random.default_rng(0)
    score = np.concatenate([rng.normal(0.3, 0.15, 800), rng.normal(-0.8, 0.2, 200)])
    disagrees = np.zeros(1000, dtype=bool)
    disagrees[800:810] = True
    t = choose_threshold(score, np.zeros(1000), disagrees)
    assert t.counts[0] > 4 * t.counts[1] and t.n_flagged == t.counts[1] == 10


def test_a_pretrained_model_counts_its_disagreements_even_where_the_scores_have_a_valley():
    # Two separated modes, the model disputing a third of the low one and a few clean samples: the rule for
    # synthetic noise takes the midpoint of its two counts; a pretrained model's count is its disagreements
    # (CIFAR-10N random1, 10k photos, --finetune deep: midpoint 0.303, disagreements 0.180, true 0.178).
    rng = np.random.default_rng(0)
    score = np.concatenate([rng.normal(0.3, 0.15, 800), rng.normal(-0.8, 0.2, 200)])
    disagrees = np.zeros(1000, dtype=bool)
    disagrees[800:880] = True
    disagrees[:20] = True
    synthetic = choose_threshold(score, np.zeros(1000), disagrees)
    upper, lower = synthetic.counts
    assert synthetic.method == "gmm" and synthetic.n_flagged == (upper + lower + 1) // 2 > 100
    pretrained = choose_threshold(score, np.zeros(1000), disagrees, trust_disagreements=True)
    assert pretrained.method == "disagreements" and pretrained.n_flagged == 100
    assert pretrained.counts == synthetic.counts  # the brackets are still reported


def test_threshold_with_identical_rates_flags_nothing():
    t = choose_threshold(np.zeros(50), np.zeros(50))
    assert t.n_flagged == 0 and (t.suspicion == 0).all()


def test_detection_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    truth = rng.random(300) < 0.25
    score = truth + rng.normal(0, 0.8, 300)
    flagged = score > 0.7
    m = detection_metrics(truth, score, flagged)
    assert m["auroc"] == pytest.approx(roc_auc_score(truth, score))
    assert m["average_precision"] == pytest.approx(average_precision_score(truth, score))
    assert m["f1"] == pytest.approx(f1_score(truth, flagged))
    top = np.argsort(-score)[: truth.sum()]
    assert m["precision_at_k"] == pytest.approx(truth[top].mean())


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_writing_over_a_pipe_or_a_link_keeps_it(tmp_path):
    """--overwrite renamed a plain file over its output whatever that was: /dev/null became a plain file (a
    tester's finding, as root), a FIFO too, and a symlink was replaced instead of the file it names."""
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    heard: list[bytes] = []
    reader = threading.Thread(target=lambda: heard.append(fifo.read_bytes()))
    reader.start()
    assert check_writable(fifo, overwrite=False) == fifo  # nothing is replaced, so no --overwrite is asked for
    atomic_write(fifo, lambda tmp: tmp.write_bytes(b"a report"))
    reader.join(timeout=30)
    assert heard == [b"a report"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temp file beside it

    (tmp_path / "real.csv").write_text("old")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    atomic_write(tmp_path / "link.csv", lambda tmp: tmp.write_text("new"))
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "real.csv").read_text() == "new"


def test_a_socket_as_the_output_is_refused(tmp_path):
    socket = pytest.importorskip("socket")
    where = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(where))
        with pytest.raises(UsageError, match="output is not a regular file"):
            check_writable(where, overwrite=True)


def test_a_write_killed_midway_leaves_a_temp_file_the_next_write_removes(tmp_path):
    """kill -9 while the decode cache was written left a hidden temp file as large as the entry, for good."""
    fcntl = pytest.importorskip("fcntl")
    import signal
    import subprocess
    import sys

    target = tmp_path / "entry.npy"
    child = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from noiseaudit.report.io import atomic_write\n"
        "def die(tmp):\n"
        "    tmp.write_bytes(b'half an entry')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_write(sys.argv[1], die)\n"), str(target)], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    (dead,) = tmp_path.glob(".entry.npy.*.tmp")
    live = tmp_path / ".entry.npy.another-run.tmp"  # a run writing the same entry now: it holds its lock
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"))
        assert not dead.exists() and live.exists() and target.read_bytes() == b"whole"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"again"))  # that run died too, lock released
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.npy"]


def test_report_frame_round_trips(digits_report):
    report, out = digits_report
    saved, _ = read_report(out)
    pd.testing.assert_frame_equal(saved, report)


def test_plain_method_keeps_uniform_rates_and_ranks_by_loss(noisy_digits):
    image_dir, csv = noisy_digits
    report = scan(image_dir, csv, label_col="digit", epochs=3, seed=0, device="cpu", method="plain")
    assert (report["learned_lr"] == 1.0).all() and (report["learned_lr_mean"] == 1.0).all()
    assert report.sort_values("rank")["loss"].is_monotonic_decreasing
    assert report.attrs["noiseaudit"]["threshold"]["ranked_by"] == "minus mean loss"
    assert 0 < report["is_suspect"].sum() < len(report)


def test_unimodal_scores_use_the_disagreement_count():
    rng = np.random.default_rng(3)
    score = -rng.gamma(2.0, 0.2, 2000)  # one skewed clean mode: a GMM would still split it
    disagrees = np.zeros(2000, dtype=bool)
    disagrees[np.argsort(score)[:15]] = True  # the model disputes only 15 labels
    t = choose_threshold(score, np.zeros(2000), disagrees)
    assert t.n_flagged <= 15


def test_bimodal_scores_use_the_midpoint_of_both_counts():
    rng = np.random.default_rng(4)
    score = np.concatenate([rng.normal(0.3, 0.1, 800), rng.normal(-0.8, 0.1, 200)])
    disagrees = np.zeros(1000, dtype=bool)
    disagrees[800:900] = True  # the model disputes half of the low mode
    t = choose_threshold(score, np.zeros(1000), disagrees)
    assert t.n_flagged == 150


def test_flat_clean_mode_is_cut_at_the_density_valley():
    # A broad, flat clean mode: the two-Gaussian fit spends its far component on half of it (upper count
    # over 2x the truth) while the model disputes most of that component; the valley cut keeps the pile.
    rng = np.random.default_rng(0)
    clean_u = rng.uniform(-3.2, -1.0, 3200) + rng.normal(0, 0.2, 3200)
    noisy_u = -0.3 - np.abs(rng.normal(0, 0.15, 800))
    score = -np.exp(np.concatenate([clean_u, noisy_u]))
    disagrees = np.zeros(4000, dtype=bool)
    disagrees[3200:] = True
    disagrees[np.argsort(-clean_u)[:300]] = True
    t = choose_threshold(score, np.zeros(4000), disagrees)
    assert t.counts[0] > 2 * 800 and t.counts[0] < 2 * t.counts[1]
    assert abs(t.n_flagged - 800) < 0.15 * 800


def test_density_valley_lies_between_two_modes_and_is_none_without_one():
    rng = np.random.default_rng(1)
    two = np.concatenate([rng.normal(0.0, 0.3, 3000), rng.normal(3.0, 0.3, 1000)])
    assert 1.0 < density_valley(two, 0.0, 3.0) < 2.0
    assert 1.0 < density_valley(two, 0.0, 2.5) < 2.0  # the far mode may peak past the far mean
    one = rng.normal(0.0, 1.0, 4000)  # no dip between the mean and a point in its tail
    assert density_valley(one, 0.0, 2.0) is None


def test_reranking_keeps_the_count_and_hands_the_suspicions_down_the_new_order():
    rng = np.random.default_rng(0)
    score, loss = rng.normal(size=50), rng.random(50)
    thr = choose_threshold(score, loss, np.zeros(50, bool), noise_rate=0.2, seed=0)
    prob = rng.random(50)
    mixed = rank_sum(score, prob)
    assert sorted(mixed) == sorted(np.argsort(np.argsort(score)) + np.argsort(np.argsort(prob)))
    new = reranked(thr, mixed, loss)
    assert new.n_flagged == thr.n_flagged == 10 and new.method == thr.method
    assert (np.diff(mixed[new.order]) >= 0).all()
    assert np.allclose(np.sort(new.suspicion), np.sort(thr.suspicion))
    assert (np.diff(new.suspicion[new.order]) <= 0).all()
    assert new.cutoff == mixed[new.order[9]]


@pytest.mark.parametrize(("options", "message"), [({"rank_by": "prob"}, "unknown rank_by 'prob'"),
                                                  ({"rank_by": "rate+prob", "method": "plain"}, "method='plain'")])
def test_rank_by_is_checked_before_anything_is_read(tmp_path, options, message):
    with pytest.raises(UsageError, match=message.replace("+", r"\+")):
        scan(tmp_path / "missing", tmp_path / "missing.csv", **options)


@pytest.mark.parametrize(("rank_by", "method", "pretrained", "resolved"), [
    ("auto", "learned-lr", True, "rate+prob"), ("auto", "learned-lr", False, "rate"), ("auto", "plain", True, "rate"),
    ("auto", "dba", True, "rate"), ("rate", "learned-lr", True, "rate"), ("rate+prob", "learned-lr", False, "rate+prob")])
def test_rank_by_auto_mixes_in_the_models_probability_only_for_learned_rates_on_a_pretrained_model(
        rank_by, method, pretrained, resolved):
    from noiseaudit.config import resolve_rank_by
    assert resolve_rank_by(rank_by, method, pretrained) == resolved


def test_the_report_dtypes_do_not_depend_on_skipped_or_trusted_rows(digits_report):
    """rank and the label columns were int64 in a plain run and Int64 once a row was skipped or trusted, the given
    label too though it is never missing: notebook code written against one run broke on the next (a tester's
    finding)."""
    from noiseaudit.report.build import add_skipped

    report, _ = digits_report
    plain = {c: str(report[c].dtype) for c in ("rank", "given_label", "predicted_label", "suggested_label")}
    assert plain == {"rank": "Int64", "given_label": "int64", "predicted_label": "Int64", "suggested_label": "Int64"}
    skipped = pd.DataFrame({"sample_id": [len(report)], "path": ["gone.png"], "given_label": [3],
                            "status": ["corrupt"]})
    with_gap = add_skipped(report, skipped)
    assert {c: str(with_gap[c].dtype) for c in plain} == plain
    assert with_gap["rank"].isna().sum() == 1 and with_gap["predicted_label"].isna().sum() == 1
