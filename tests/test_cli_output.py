"""What a new user reads: the scan summary and its next steps, piped progress, one number format per
quantity, ``show --class`` and the install hints (issue 18, items 3, 6-10)."""

from __future__ import annotations

import builtins
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_errors import invoke, write_images

from noiseaudit import formats
from noiseaudit.cli.progress import PipedProgress
from noiseaudit.extras import install_hint
from noiseaudit.report.groups import flags_by_class, flags_by_pair, largest_pair_share
from noiseaudit.report.io import read_report, write_report

README = Path(__file__).resolve().parents[1] / "README.md"


def synthetic_report(path: Path, *, n: int = 40, n_flagged: int = 6, classes=("Shirt", "T-shirt", "Bag")) -> Path:
    """A report whose top samples have a suspicion near 1, flagged or not as ``n_flagged`` says."""
    rank = np.arange(1, n + 1)
    frame = pd.DataFrame({
        "sample_id": np.arange(n), "path": [f"img_{i:03d}.png" for i in range(n)],
        "given_label": [classes[i % len(classes)] for i in range(n)],
        "predicted_label": [classes[(i + 1) % len(classes)] for i in range(n)],
        "pred_prob": np.full(n, 0.6, np.float32), "given_prob": np.full(n, 0.2, np.float32),
        "suggested_label": [classes[(i + 1) % len(classes)] for i in range(n)],
        "suggested_prob": np.linspace(0.9989, 0.4, n).astype(np.float32),
        "learned_lr": np.linspace(0.57, 1.6, n).astype(np.float32), "learned_lr_mean": np.ones(n, np.float32),
        "loss": np.linspace(2.5, 0.1, n).astype(np.float32), "margin": np.zeros(n, np.float32), "rank": rank,
        "suspicion": np.linspace(0.9989, 0.0, n).astype(np.float32), "is_suspect": rank <= n_flagged,
        "status": "ok", "original_label": [classes[i % len(classes)] for i in range(n)]})
    frame.loc[:3, "original_label"] = "Bag"  # four known wrong labels
    write_report(frame, {"classes": list(classes), "model": "small-cnn", "device": "cpu",
                         "threshold": {"method": "gmm", "ranked_by": "log learned_lr"},
                         "timings": {"total_s": 12.34}}, path)
    return path


# --- item 3: the flag is the decision; the displays show it, not a posterior that reads as a probability


def test_summary_with_nothing_flagged_says_so_and_shows_no_suspicion(tmp_path, monkeypatch):
    from rich.console import Console

    from noiseaudit.cli import scan as scan_cli
    from noiseaudit.report.io import read_report
    from noiseaudit.report.summary import summarize

    frame, meta = read_report(synthetic_report(tmp_path / "r.parquet", n_flagged=0))
    buffer = io.StringIO()
    monkeypatch.setattr(scan_cli, "stdout", lambda: Console(file=buffer, width=160, soft_wrap=True))
    scan_cli.print_summary(summarize(frame, meta), tmp_path / "r.parquet")
    text = buffer.getvalue()
    assert "40 samples, 3 classes: none flagged (0.0%, estimated from the learned rates); model small-cnn on cpu, " \
           "12 s" in text
    assert "Most suspect (none is flagged; for a look)" in text
    assert "suspicion" not in text and "0.999" not in text and "Top suspects" not in text
    assert not re.search(r"│ yes", text)


def test_a_count_midway_between_its_brackets_says_what_else_looks_like_that(tmp_path, monkeypatch):
    """On data already cleaned (every sample-data label corrected) a tester saw 746 flagged by the midpoint rule,
    with no word that hard correct samples give that count as instance noise does."""
    from rich.console import Console

    from noiseaudit.cli import scan as scan_cli
    from noiseaudit.report.io import read_report
    from noiseaudit.report.summary import summarize

    frame, meta = read_report(synthetic_report(tmp_path / "r.parquet"))
    buffer = io.StringIO()
    monkeypatch.setattr(scan_cli, "stdout", lambda: Console(file=buffer, width=400, soft_wrap=True))
    summary = summarize(frame, meta)
    summary["threshold"].update(rule="midpoint", upper_count=10, lower_count=2)
    scan_cli.print_summary(summary, tmp_path / "r.parquet")
    assert ("The count is midway between the 10 samples of low rate and the 2 of them the model disputes. "
            "Instance-dependent noise looks like this, and so do hard but correct samples of data already cleaned: "
            "after a review, pass the reviewed sheet as --trusted, or set the count with --noise-rate.") \
        in buffer.getvalue()
    summary["threshold"]["rule"] = "upper"
    buffer.seek(0), buffer.truncate()
    scan_cli.print_summary(summary, tmp_path / "r.parquet")
    assert "The count is midway" not in buffer.getvalue()


@pytest.mark.parametrize("n_flagged, method, hint", [(16, "gmm", True), (12, "gmm", False), (16, "noise-rate", False)])
def test_heavy_flagging_asks_for_a_review_naming_the_models_agreement(tmp_path, monkeypatch, n_flagged, method, hint):
    """Over 30% flagged by an estimate (not by --noise-rate): one line says the count may hold hard samples."""
    from rich.console import Console

    from noiseaudit.cli import scan as scan_cli
    from noiseaudit.report.io import read_report
    from noiseaudit.report.summary import summarize

    frame, meta = read_report(synthetic_report(tmp_path / "r.parquet", n_flagged=n_flagged))
    meta["threshold"]["method"] = method
    frame.loc[:9, "predicted_label"] = frame.loc[:9, "given_label"]  # the model agrees with 10 of 40
    buffer = io.StringIO()
    monkeypatch.setattr(scan_cli, "stdout", lambda: Console(file=buffer, width=400, soft_wrap=True))
    summary = summarize(frame, meta)
    assert summary["model_agreement"] == 0.25
    scan_cli.print_summary(summary, tmp_path / "r.parquet")
    text = buffer.getvalue()
    assert ("it agrees with 25.0% of the given labels" in text) is hint, text
    assert ("review a sample of the flags" in text) is hint


def test_show_marks_the_flagged_rows_and_says_how_many(tmp_path):
    result = invoke("show", synthetic_report(tmp_path / "r.parquet", n_flagged=6), "--top", "8")
    assert result.exit_code == 0, result.output
    assert "40 samples, 6 flagged" in result.stdout and "suspicion" not in result.stdout
    assert len(re.findall(r"│ yes\s+│", result.stdout)) == 6


def test_show_json_gives_the_counts_and_the_top_rows_by_rank(tmp_path):
    result = invoke("show", synthetic_report(tmp_path / "r.parquet", n_flagged=6), "-n", "3", "--class", "shirt",
                    "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["class"], out["n_samples"], out["n_flagged"]) == ("Shirt", 14, 2)
    assert [row["rank"] for row in out["rows"]] == [1, 4, 7]
    assert {row["given_label"] for row in out["rows"]} == {"Shirt"}
    assert [row["is_suspect"] for row in out["rows"]] == [True, True, False]
    for by in ([], ["--by", "class"], ["--by", "pair"]):  # without --class no "class": null (a key left out)
        whole = json.loads(invoke("show", tmp_path / "r.parquet", "--json", *by).stdout)
        assert "class" not in whole and whole["n_samples"] >= 0
    assert set(out["rows"][0]) == {"rank", "path", "given_label", "given_prob", "suggested_label", "suggested_prob", "learned_lr",
                                   "loss", "is_suspect"}


def test_fail_above_exits_1_and_says_why(tmp_path, monkeypatch):
    names = write_images(tmp_path / "images", n=24)
    csv = tmp_path / "labels.csv"
    labels = ["ab"[(i % 2) ^ (i in (1, 6, 11, 16))] for i in range(24)]  # dark a, bright b, four flipped
    pd.DataFrame({"path": names, "label": labels}).to_csv(csv, index=False)
    base = ["scan", tmp_path / "images", csv, "--epochs", "8", "--device", "cpu", "--workers", "1", "--overwrite"]
    under = invoke(*base, "-o", tmp_path / "a.parquet", "--json", "--fail-above", "1")
    assert under.exit_code == 0, under.output
    summary = json.loads(under.stdout)
    rate = summary["estimated_noise_rate"]
    assert summary["over_fail_above"] is False and summary["fail_above"] == 1 and rate > 0
    over = invoke(*base, "-o", tmp_path / "b.parquet", "--fail-above", f"{rate / 2:.4f}")
    assert over.exit_code == 1, over.output
    assert f"above --fail-above {rate / 2:.4f}".rstrip("0") in over.stderr and "exit 1" in over.stderr
    assert (tmp_path / "b.parquet").is_file()  # the report is still written
    quiet = invoke(*base, "-o", tmp_path / "c.parquet", "--fail-above", "0", "--quiet")  # no progress, but why 1
    assert quiet.exit_code == 1
    n = summary["n_flagged"]
    assert quiet.stderr == f"flagged {n} of 24 samples ({formats.percent(rate)}), above --fail-above 0: exit 1\n"
    # a RANK a CI runner left in the environment, with no torchrun job, made a silent follower: no output, exit 0
    monkeypatch.setenv("RANK", "1")
    stray = invoke(*base, "-o", tmp_path / "d.parquet", "--fail-above", "0", "--quiet")
    assert stray.exit_code == 1 and stray.stderr == quiet.stderr
    monkeypatch.setenv("RANK", "abc")  # was a ValueError traceback, exit 1; without a WORLD_SIZE it is no job
    assert invoke(*base, "-o", tmp_path / "e.parquet", "--quiet").exit_code == 0
    monkeypatch.setenv("WORLD_SIZE", "two")
    odd = invoke(*base, "-o", tmp_path / "f.parquet", "--quiet")
    assert odd.exit_code == 2 and odd.stderr.startswith("error: RANK='abc' and WORLD_SIZE='two' in the environment")
    # a job's variables left in a shell without the rest: exit 3 ("internal error: ... MASTER_ADDR expected")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    partial = invoke(*base, "-o", tmp_path / "g.parquet", "--quiet")
    assert partial.exit_code == 2 and partial.stderr == (
        "error: WORLD_SIZE=2 in the environment but no MASTER_ADDR or MASTER_PORT: not a torchrun job (torchrun sets "
        "them all); unset WORLD_SIZE and RANK to run alone, or start the scan with torchrun\n")


def test_a_model_that_learned_nothing_is_said_and_fails_the_gate_closed(tmp_path):
    """Forty copies of one image, half labelled a and half b: no model can beat always answering a. The scan
    flagged none, said nothing, and passed --fail-above with exit 0 on a ranking that meant nothing (as a
    shuffled labels file or a training run gone flat does)."""
    from PIL import Image

    import noiseaudit

    (tmp_path / "same").mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (8, 8), dtype=np.uint8)
    for i in range(40):
        Image.fromarray(pixels).save(tmp_path / "same" / f"{i:02d}.png")
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"path": [f"{i:02d}.png" for i in range(40)], "label": ["ab"[i % 2] for i in range(40)]}).to_csv(
        csv, index=False)
    base = ["scan", tmp_path / "same", csv, "--epochs", "1", "--device", "cpu", "--workers", "1", "--overwrite"]
    told = invoke(*base, "-o", tmp_path / "a.parquet", "--quiet")
    assert told.exit_code == 0, told.output
    assert "The model learned nothing: it agrees with 50.0% of the given labels" in told.stdout
    gate = invoke(*base, "-o", tmp_path / "b.parquet", "--quiet", "--json", "--fail-above", "0.5")
    summary = json.loads(gate.stdout)
    assert gate.exit_code == 1 and summary["model_at_chance"] is True and summary["majority_share"] == 0.5
    assert summary["n_flagged"] == 0 and summary["over_fail_above"] is False
    assert gate.stderr == ("the model learned nothing (it agrees with 50.0% of the given labels, as always "
                           "predicting the most common one would), so its count cannot pass --fail-above 0.5: "
                           "exit 1\n")
    with pytest.warns(noiseaudit.ModelAtChance, match="Either the labels do not belong to these samples"):
        noiseaudit.scan(tmp_path / "same", csv, epochs=1, device="cpu", workers=1)


def test_at_chance_needs_enough_samples_per_class_and_no_real_agreement():
    from noiseaudit.report.summary import at_chance

    assert at_chance(0.505, 0.5, 40, 2) is not None  # within the margin of the majority's share
    assert at_chance(0.52, 0.5, 40, 2) is None  # above it
    assert at_chance(0.5, 0.5, 39, 2) is None  # under 20 samples per class a weak fit may be the data's size
    assert at_chance(0.3, 0.9, 1000, 2) is not None  # below the majority's share: worse than a constant


def test_the_gate_line_shows_the_share_with_the_decimals_that_put_it_above_the_bound():
    """801 of 4,000 flagged over --fail-above 0.2 said "flagged 20.0% of the samples, above --fail-above 0.2"."""
    from noiseaudit.cli.scan import _above

    assert _above(801 / 4000, 0.2) == "20.03%" and _above(0.25, 0.2) == "25.0%" and _above(0.200004, 0.2) == "20.0004%"


def test_flags_by_pair_and_by_class_count_the_flagged_samples():
    given = ["a", "a", "a", "a", "b", "b", "c"]
    suggested = ["b", "b", "c", "b", "a", "c", "a"]
    flagged = [True, True, True, False, True, False, False]
    assert flags_by_pair(given, suggested, flagged) == [
        {"given_label": "a", "suggested_label": "b", "n_flagged": 2, "share_of_flagged": 0.5, "share_of_class": 0.5},
        {"given_label": "a", "suggested_label": "c", "n_flagged": 1, "share_of_flagged": 0.25, "share_of_class": 0.25},
        {"given_label": "b", "suggested_label": "a", "n_flagged": 1, "share_of_flagged": 0.25, "share_of_class": 0.5}]
    assert flags_by_class(given, flagged) == [
        {"given_label": "a", "n_samples": 4, "n_flagged": 3, "share_flagged": 0.75},
        {"given_label": "b", "n_samples": 2, "n_flagged": 1, "share_flagged": 0.5},
        {"given_label": "c", "n_samples": 1, "n_flagged": 0, "share_flagged": 0.0}]
    assert flags_by_pair(given, suggested, [False] * 7) == []
    assert largest_pair_share(flags_by_pair(given, suggested, flagged)) == 0.75  # a->b and b->a


def test_show_by_pair_and_by_class(tmp_path):
    report = synthetic_report(tmp_path / "r.parquet", n_flagged=6)
    result = invoke("show", report, "--by", "pair", "--top", "2")
    assert result.exit_code == 0, result.output
    assert "40 samples, 6 flagged, in 3 class pairs (given → suggested)" in result.stdout
    assert "1 more; --top 3 shows all" in result.stdout
    assert ("100.0% of the flags fall in each class's most common pair (about 50.0% if they were spread evenly"
            in result.stdout)
    out = json.loads(invoke("show", report, "--by", "pair", "--json").stdout)
    assert (out["by"], out["n_groups"], out["n_flagged"]) == ("pair", 3, 6)
    assert (out["largest_pair_share"], out["even_pair_share"]) == (1.0, 0.5)  # the line under the table
    assert {(r["given_label"], r["suggested_label"], r["n_flagged"]) for r in out["rows"]} == {
        ("Shirt", "T-shirt", 2), ("T-shirt", "Bag", 2), ("Bag", "Shirt", 2)}
    out = json.loads(invoke("show", report, "--by", "class", "--class", "bag", "--json").stdout)
    assert "largest_pair_share" not in out
    assert out["rows"] == [{"given_label": "Bag", "n_samples": 13, "n_flagged": 2, "share_flagged": 2 / 13,
                            "n_predicted": 13}]
    result = invoke("show", report, "--by", "class")
    assert result.exit_code == 0 and "40 samples, 6 flagged, by given class" in result.stdout


def test_a_class_the_model_never_predicts_is_named_with_what_its_flags_are_worth(tmp_path):
    """A long-tail tester's 10 'cat' and 5 'pickup truck' images were all flagged, with nothing said: the model
    predicted neither class once, so their flags said the class was not learned, not that its labels were wrong."""
    from noiseaudit.report.summary import summarize

    path = synthetic_report(tmp_path / "r.parquet", n=90, n_flagged=6)  # 30 per class: enough to judge the fit
    frame, meta = read_report(path)
    frame["predicted_label"] = frame["given_label"].replace({"Bag": "Shirt"})  # the model never says Bag
    write_report(frame, meta, path)
    result = invoke("show", path, "--by", "class")
    assert result.exit_code == 0, result.output
    line = " ".join(result.stdout.split())
    assert ("The model barely learned a class: it predicts each for fewer samples than 25% of those given its "
            "label: 'Bag' (30 given, 0 predicted, 2 flagged). Flags there cannot tell a wrong label from a class "
            "too small or too hard to learn: review them by eye, scan again with --balance-classes (small "
            "classes then stop being disputed for their size), and pass the verified ones as --trusted.") in line
    meta["config"] = {**meta.get("config", {}), "balance_classes": True}  # a balanced scan is not told to balance
    write_report(frame, meta, tmp_path / "balanced.parquet")
    line = " ".join(invoke("show", tmp_path / "balanced.parquet", "--by", "class").stdout.split())
    assert "review them by eye, and pass the verified ones as --trusted." in line
    assert "predicted: the samples the model predicts as the class" in line
    out = json.loads(invoke("show", path, "--by", "class", "--json").stdout)
    assert {r["given_label"]: r["n_predicted"] for r in out["rows"]} == {"Bag": 0, "Shirt": 60, "T-shirt": 30}
    assert summarize(frame, meta)["unlearned_classes"] == [
        {"given_label": "Bag", "n_samples": 30, "n_predicted": 0, "n_flagged": 2}]
    assert "barely learned" in invoke("show", path, "--by", "class", "--class", "bag").stdout  # counted over all
    assert "unlearned_classes" not in summarize(*read_report(synthetic_report(tmp_path / "s.parquet", n=90)))
    few = frame.iloc[:45]  # 15 per class: a weak fit can be the data's size, so nothing is said
    assert "unlearned_classes" not in summarize(few, meta)
    assert "barely learned" not in invoke("show", path, "--by", "pair").stdout  # said by class only


def test_a_scan_names_the_class_its_model_never_learned(tmp_path):
    """Six vectors labelled 'rare' sit inside the 'a' cluster: the model predicts 'a' for them, so all are
    flagged; the scan says why (a warning from the API, the summary on the command line, a key in --json)."""
    from noiseaudit import scan_features
    from noiseaudit.errors import UnlearnedClasses

    gen = np.random.default_rng(0)
    centres = np.eye(3, 8) * 6.0  # a, b, c
    x = np.concatenate([gen.normal(centres[k], 1.0, (100, 8)) for k in range(3)] + [gen.normal(centres[0], 0.3, (6, 8))])
    labels = pd.DataFrame({"label": [c for c in "abc" for _ in range(100)] + ["rare"] * 6})
    with pytest.warns(UnlearnedClasses, match=r"barely learned a class: .*'rare' \(6 given, 0 predicted, \d flagged\)"):
        report = scan_features(x.astype(np.float32), labels, device="cpu", seed=0)
    assert report.loc[report["given_label"] == "rare", "is_suspect"].sum() >= 5
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    labels.assign(path=[f"s{i}" for i in range(len(labels))]).to_csv(tmp_path / "labels.csv", index=False)
    result = invoke("scan", "--features", tmp_path / "x.npy", tmp_path / "labels.csv", "-o", tmp_path / "r.parquet",
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    [rare] = json.loads(result.stdout)["unlearned_classes"]
    assert (rare["given_label"], rare["n_samples"], rare["n_predicted"]) == ("rare", 6, 0) and rare["n_flagged"] >= 5


def test_show_with_nothing_flagged(tmp_path):
    result = invoke("show", synthetic_report(tmp_path / "r.parquet", n_flagged=0))
    assert result.exit_code == 0 and "40 samples, none flagged (most suspect first)" in result.stdout


def test_export_takes_one_class_for_a_reviewer_working_through_a_small_one(tmp_path):
    """A long-tail tester could list a rare class with show --class but not write it as a review sheet."""
    report = synthetic_report(tmp_path / "r.parquet", n_flagged=6)
    result = invoke("export", report, "-o", tmp_path / "bag.csv", "--class", "bag", "--top", "3")
    assert result.exit_code == 0, result.output
    sheet = pd.read_csv(tmp_path / "bag.csv")
    frame, _ = read_report(report)
    bags = frame[frame["given_label"] == "Bag"].sort_values("rank")
    assert sheet["path"].tolist() == bags["path"].head(3).tolist() and set(sheet["given_label"]) == {"Bag"}
    flagged = pd.read_csv(io.StringIO(invoke("export", report, "-o", "-", "--class", "Bag").stdout))
    assert flagged["path"].tolist() == bags.loc[bags["is_suspect"], "path"].tolist()  # the default, within Bag
    result = invoke("export", report, "-o", tmp_path / "x.csv", "--class", "zebra")
    assert result.exit_code == 2 and "no class 'zebra' in this report" in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_review_sheet_carries_the_flag_beside_the_suspicion(tmp_path):
    report = synthetic_report(tmp_path / "r.parquet", n_flagged=2)
    result = invoke("export", report, "-o", tmp_path / "review.csv", "--top", "4")
    assert result.exit_code == 0, result.output
    sheet = pd.read_csv(tmp_path / "review.csv")
    assert sheet["flagged"].tolist() == [True, True, False, False]
    assert sheet["suspicion"].iloc[2] > 0.9  # a high posterior, not flagged: the sheet shows both


# --- item 6: next steps


@pytest.fixture()
def tiny(tmp_path) -> Path:
    """An ImageFolder of 8 tiny grayscale images in two classes."""
    root = tmp_path / "tree"
    write_images(root / "cats", n=4)
    write_images(root / "dogs", n=4)
    return root


def scan_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    """A scan as a user types it, without --quiet (these tests read what goes to stderr)."""
    return ["scan", str(root), "-o", str(out), "--epochs", "1", "--device", "cpu", "--workers", "1", *extra]


def test_scan_prints_the_next_commands_with_the_real_file_names(tiny, tmp_path):
    folder = tmp_path / "out dir"
    folder.mkdir()
    out = folder / "hands.parquet"
    result = invoke(*scan_cmd(tiny, out))
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "Next:" in err
    quoted = f"'{out}'"  # the folder has a space: the commands are quoted for a shell
    assert f"noiseaudit show {quoted}" in err
    assert re.search(rf"noiseaudit export {re.escape(quoted)} -o '{re.escape(str(folder))}/hands-review.csv' "
                     r"--(flagged|top 50)", err)
    assert f"noiseaudit html {quoted} -o '{folder}/hands.html'" in err
    assert "Next:" not in result.stdout  # results on stdout, hints on stderr


@pytest.mark.parametrize("flag", ["--json", "--quiet"])
def test_no_next_steps_with_json_or_quiet(tiny, tmp_path, flag):
    result = invoke(*scan_cmd(tiny, tmp_path / "r.parquet", flag))
    assert result.exit_code == 0, result.output
    assert "Next:" not in result.stderr and not re.search(r"^\s+noiseaudit show", result.output, flags=re.M)
    # its two classes hold the same four pictures: the summary, a result, says so whatever the flag
    assert ("8 samples are identical images in 4 groups" in result.output) is (flag == "--quiet")


def test_quiet_hides_the_install_hint_but_a_plain_scan_shows_it(tmp_path, monkeypatch):
    from PIL import Image

    from noiseaudit.models import efficientnet

    monkeypatch.setattr(efficientnet, "available", lambda: False)  # colour photos, the extra missing
    rng = np.random.default_rng(0)
    for k, name in enumerate(("red", "blue")):
        (tmp_path / "tree" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(rng.normal(60 + 130 * k, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(tmp_path / "tree" / name / f"{i}.png")
    args = scan_cmd(tmp_path / "tree", tmp_path / "a.parquet", "--no-cache")
    shown = invoke(*args)
    assert shown.exit_code == 0, shown.output
    assert "warning: colour images: a pretrained backbone" in shown.stderr
    quiet = invoke(*scan_cmd(tmp_path / "tree", tmp_path / "b.parquet", "--no-cache", "--quiet"))
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""


def test_next_steps_name_the_html_extra_when_matplotlib_is_missing(monkeypatch):
    import importlib.util

    from noiseaudit.cli.scan import next_steps

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    steps = dict(next_steps(Path("report.parquet"), 0))
    assert steps["noiseaudit export report.parquet -o review.csv --top 50"]
    assert steps["noiseaudit html report.parquet -o report.html"].endswith(f"needs {install_hint('html')}")
    vectors = dict(next_steps(Path("report.parquet"), 0, images=False))  # no thumbnails for feature vectors
    assert vectors["noiseaudit html report.parquet -o report.html"].startswith("a page of plots and tables")


# --- item 7: piped progress


def test_piped_scan_progress_has_epoch_of_total_elapsed_and_eta(tiny, tmp_path):
    result = invoke(*scan_cmd(tiny, tmp_path / "r.parquet", "--epochs", "2"))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any(re.fullmatch(r"decoding images: 8/8 \(100\.0%\); elapsed [\d.]+ s, eta [\d.]+ s", x) for x in lines)
    epochs = [x for x in lines if x.startswith("epoch ")]
    assert [x.split(":")[0] for x in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(re.search(r": mean loss \d+\.\d{3}; elapsed .+, eta .+$", x) for x in epochs)


def test_piped_progress_says_when_the_images_came_from_the_decode_cache(tiny, tmp_path):
    cache = ("--cache-dir", str(tmp_path / "cache"))
    first = invoke(*scan_cmd(tiny, tmp_path / "a.parquet", *cache))
    second = invoke(*scan_cmd(tiny, tmp_path / "b.parquet", *cache))
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "decode cache" not in first.stderr
    assert re.search(r"^decoding images: 8/8 \(100\.0%\), read from the decode cache; elapsed", second.stderr, re.M)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_piped_progress_prints_every_tenth_and_when_slow(tmp_path):
    stream, clock = io.StringIO(), FakeClock()
    progress = PipedProgress(stream, clock)
    for done in range(0, 1001, 50):  # 2 s per 50 images
        progress("embed", done, 1000, {})
        clock.now += 2.0
    lines = stream.getvalue().splitlines()
    assert [int(re.match(r"embedding images: (\d+)/1000", x).group(1)) for x in lines] == list(range(100, 1001, 100))
    assert lines[0] == "embedding images: 100/1000 (10.0%); elapsed 4.0 s, eta 36 s"
    slow = io.StringIO()
    progress = PipedProgress(slow, clock)
    for done in (0, 1, 2, 3):  # a tenth would take minutes: a line every 30 s instead
        progress("decode", done, 100, {})
        clock.now += 31.0
    assert len(slow.getvalue().splitlines()) == 3
    assert slow.getvalue().splitlines()[-1].startswith("decoding images: 3/100 (3.0%); elapsed 1 min 33 s, eta")


def test_the_backbone_choice_says_no_eta():
    """Its three steps take unlike times (decode a sample, embed it, train on it): the ETA after the first said
    1.8 s with 12 s to go."""
    stream, clock = io.StringIO(), FakeClock()
    progress = PipedProgress(stream, clock)
    for done, seconds in ((0, 0.9), (1, 6.4), (2, 5.7), (3, 0.0)):
        progress("choose", done, 3, {})
        clock.now += seconds
    assert stream.getvalue().splitlines() == [
        "choosing pretrained or from scratch (probe on a sample): 1/3 (33.3%); elapsed 0.9 s",
        "choosing pretrained or from scratch (probe on a sample): 2/3 (66.7%); elapsed 7.3 s",
        "choosing pretrained or from scratch (probe on a sample): 3/3 (100.0%); elapsed 13 s"]


def test_piped_progress_eta_counts_from_where_a_resumed_run_started():
    stream, clock = io.StringIO(), FakeClock()
    progress = PipedProgress(stream, clock)
    progress("train", 51, 100, {"epoch": 6, "epochs": 10, "loss": None})  # resumed after 5 of 10 epochs
    clock.now = 10.0
    progress("train", 60, 100, {"epoch": 6, "epochs": 10, "loss": 0.51234})
    assert stream.getvalue() == "epoch 6/10: mean loss 0.512; elapsed 10 s, eta 40 s\n"


# --- item 8: one format per quantity


def test_evaluate_text_uses_one_format_and_no_raw_key_names(tmp_path):
    result = invoke("evaluate", synthetic_report(tmp_path / "r.parquet"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "average_precision" not in out and "precision_at_k" not in out
    assert re.search(r"Flagged set: precision \d\.\d{3}, recall \d\.\d{3}, F1 \d\.\d{3}", out)
    table = [re.findall(r"[<>]?\d\.\d+", line) for line in out.splitlines() if line.startswith("│ rank ")]
    assert table and all(re.fullmatch(r"[<>]?\d\.\d{3}", v) for v in table[0])


def test_show_rates_and_probabilities_have_one_width(tmp_path):
    result = invoke("show", synthetic_report(tmp_path / "r.parquet"), "--top", "40")
    rows = [line for line in result.stdout.splitlines() if line.startswith("│ ")]
    rates = [line.split("│")[5].strip() for line in rows]
    assert all(re.fullmatch(r"\d\.\d{3}|\d\.\d{2}", r) for r in rates), rates  # 0.570, 1.00: 3 significant digits
    probs = [re.search(r"\(([^)]*)\)", line.split("│")[4]).group(1) for line in rows]
    assert probs[0] == "99.9%" and all(re.fullmatch(r"\d{1,2}\.\d%", p) for p in probs), probs


@given(st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True))
def test_inside_values_never_print_as_an_end(x):
    assert formats.score(x) not in ("1.000", "0.000") and formats.percent(x) not in ("100.0%", "0.0%")


@given(st.floats(min_value=0.01, max_value=100))
def test_learned_rates_keep_three_significant_digits(x):
    text = formats.learned_rate(x)
    assert len(text.replace(".", "").lstrip("0")) == 3, text
    assert abs(float(text) - x) <= 0.005 * x + 1e-12


def test_formats_at_the_ends_and_for_missing_values():
    assert [formats.score(v) for v in (0.0, 1.0, 0.8381, 0.925, float("nan"), None)] == \
        ["0.000", "1.000", "0.838", "0.925", "n/a", "n/a"]
    assert formats.percent(0.9989) == "99.9%" and formats.percent(0.99996) == ">99.9%"
    assert [formats.duration(s) for s in (4.23, 59.6, 455, 3725)] == ["4.2 s", "1 min 00 s", "7 min 35 s",
                                                                     "1 h 02 min"]


# --- item 9: show --class


@pytest.mark.parametrize(("wanted", "title"), [("Shirt", "14 samples labelled Shirt"),
                                               ("shirt", "14 samples labelled Shirt"),
                                               ("BAG", "13 samples labelled Bag"),
                                               ("bag ", "13 samples labelled Bag")])  # a tester's 'cat ' missed
def test_show_class_matches_case_insensitively_when_unambiguous(tmp_path, wanted, title):
    result = invoke("show", synthetic_report(tmp_path / "r.parquet"), "--class", wanted)
    assert result.exit_code == 0, result.output
    assert title in result.stdout


def test_show_unknown_class_exits_2_listing_the_classes(tmp_path):
    report = synthetic_report(tmp_path / "r.parquet")
    result = invoke("show", report, "--class", "shrt")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == (f"error: {report}: no class 'shrt' in this report; its classes are 'Shirt', "
                                     "'T-shirt', 'Bag'")


def test_show_class_differing_only_by_case_must_be_named_exactly(tmp_path):
    report = synthetic_report(tmp_path / "r.parquet", classes=("cat", "Cat", "dog"))
    assert invoke("show", report, "--class", "Cat").exit_code == 0
    result = invoke("show", report, "--class", "CAT")
    assert result.exit_code == 2 and "matches 'cat' and 'Cat' but for case" in result.stderr


# --- item 10: one install hint


def test_html_without_matplotlib_names_the_install_the_readme_names(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    page = tmp_path / "r.html"
    result = invoke("html", synthetic_report(tmp_path / "r.parquet"), "-o", page)
    assert result.exit_code == 2 and not page.exists()
    hint = install_hint("html")
    assert result.stderr.strip() == f"error: noiseaudit html draws plots with matplotlib: {hint}"
    assert hint == 'pip install -e ".[html]"' and hint in README.read_text()
    assert "noiseaudit[html]'" not in README.read_text()


# --- item 2: the from-scratch colour default and what each model costs


@pytest.mark.parametrize(("channels", "size", "model"), [(3, 32, "small-cnn"), (3, 16, "small-cnn"),
                                                         (3, 33, "resnet18"), (1, 64, "small-cnn"),
                                                         (1, 65, "resnet18")])
def test_default_model_by_channels_and_size(channels, size, model):
    from noiseaudit.models import default_model

    assert default_model(channels, size) == model


def test_scan_help_says_what_each_model_costs():
    result = invoke("scan", "--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "small-cnn (the default for grayscale up to 64 px and colour up to 32 px; about 4 s an epoch per 1,000" \
        in text
    assert "resnet18 (the default above; about 20x that time" in text


# --- a reader that stops early (| head)


def test_a_reader_that_stops_early_ends_the_run_with_141_not_1(monkeypatch):
    """`noiseaudit scan ... | head`: Rich ended such a run with exit 1, which here means findings over --fail-above.
    141 is what a shell shows for a writer ended by SIGPIPE."""
    import typer

    from noiseaudit.cli import console

    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    discarded = []
    monkeypatch.setattr(console, "_discard_output", lambda: discarded.append(True))  # not pytest's own stdout

    @console.exits_on_errors
    def command() -> None:
        out = console.stdout()
        out.file = Closed()
        out.print("a result line")

    with pytest.raises(typer.Exit) as ended:
        command()
    assert ended.value.exit_code == console.BROKEN_PIPE == 141 and discarded


@pytest.mark.parametrize("json_out", ["", "--json"])
def test_a_long_table_cut_short_by_head_ends_with_141(tmp_path, json_out):
    """`show --top 3000 | head -2` exited 0: CPython's buffered writer dropped the rest of Rich's one large write
    when the pipe closed, without raising. Written in pieces, the first refused piece raises."""
    synthetic_report(tmp_path / "r.parquet", n=3000)
    cut = _shell(f"NOISEAUDIT show r.parquet --top 3000 {json_out} | head -c 100 >/dev/null; exit ${{PIPESTATUS[0]}}",
                 tmp_path)
    assert cut.returncode == 141 and cut.stderr == ""
    whole = _shell(f"NOISEAUDIT show r.parquet --top 3000 {json_out} | wc -l", tmp_path)
    assert whole.returncode == 0 and int(whole.stdout) == (1 if json_out else 3000 + 5)


def test_piped_progress_goes_quiet_when_its_reader_has_gone():
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    progress = PipedProgress(Closed(), clock=iter(range(100)).__next__)
    progress("train", 0, 10, {"epoch": 1, "epochs": 2})
    progress("train", 10, 10, {"epoch": 1, "epochs": 2, "loss": 0.5})  # no error: the scan goes on
    assert progress.stream is None


# --- a stream the shell closed, or whose reader has gone


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cli = f"{shlex.quote(sys.executable)} -m noiseaudit"
    return subprocess.run(["bash", "-c", command.replace("NOISEAUDIT", cli)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_a_closed_or_abandoned_stderr_changes_neither_the_results_nor_the_exit_code(tmp_path):
    """`2>&-` made scan exit 1 with no report and no word (sys.stderr is None, and progress asked it isatty);
    a stderr whose reader had quit made a finished scan exit 141 and an input error exit 1."""
    write_images(tmp_path / "tree" / "a", n=6)
    write_images(tmp_path / "tree" / "b", n=6)
    scan = "NOISEAUDIT scan tree -o {} --epochs 1 --device cpu --workers 1"
    closed = _shell(scan.format("r1.parquet") + " --json 2>&-", tmp_path)
    assert closed.returncode == 0 and json.loads(closed.stdout)["n_samples"] == 12
    assert (tmp_path / "r1.parquet").exists()
    gone = _shell("{ " + scan.format("r2.parquet") + " 3>&1 1>out.txt 2>&3 | true; exit ${PIPESTATUS[0]}; }",
                  tmp_path)
    assert gone.returncode == 0 and "Report written to r2.parquet" in (tmp_path / "out.txt").read_text()
    bad = _shell("{ NOISEAUDIT show r1.parquet --class nope 3>&1 1>/dev/null 2>&3 | true; exit ${PIPESTATUS[0]}; }",
                 tmp_path)
    assert bad.returncode == 2
    assert _shell("NOISEAUDIT show r1.parquet --class nope 2>&-", tmp_path).returncode == 2
    shown = _shell("NOISEAUDIT show r1.parquet >&-", tmp_path)  # sys.stdout is None: the table is lost, no traceback
    assert shown.returncode == 0 and shown.stderr == ""


def test_an_ascii_only_stream_or_locale_is_not_a_traceback(tmp_path):
    """PYTHONIOENCODING=ascii made a scan of 'é.png' print a UnicodeEncodeError traceback and exit 1 (in CI, the
    code for findings); a C locale without UTF-8 mode did the same while resolving the file name."""
    write_images(tmp_path / "tree" / "a", n=6)
    write_images(tmp_path / "tree" / "b", n=6)
    (tmp_path / "tree" / "a" / "img0.png").rename(tmp_path / "tree" / "a" / "é.png")
    made = _shell("NOISEAUDIT scan tree -o r.parquet --epochs 1 --device cpu --workers 1 -q", tmp_path)
    assert made.returncode == 0, made.stderr
    shown = _shell("PYTHONIOENCODING=ascii NOISEAUDIT show r.parquet --top 12", tmp_path)
    assert shown.returncode == 0 and "\\xe9.png" in shown.stdout and shown.stderr == ""
    c_locale = _shell("LC_ALL=C LANG=C PYTHONUTF8=0 PYTHONCOERCECLOCALE=0 NOISEAUDIT scan tree -o c.parquet "
                      "--epochs 1 --device cpu --workers 1 -q", tmp_path)
    assert c_locale.returncode == 2 and c_locale.stderr.count("\n") == 1
    assert "cannot be encoded as " in c_locale.stderr  # ascii, or utf-8 for a name the C locale decoded as bytes
    assert c_locale.stderr.endswith(": run under a UTF-8 locale (LC_ALL=C.UTF-8) or with PYTHONUTF8=1\n")


def test_every_command_takes_quiet_and_export_hushes_its_interface(tmp_path):
    """-q was scan's and predict's alone, so a CI script passing it to every command broke; export --format
    labelstudio printed the 16-line labeling interface on stderr whatever was asked."""
    for command in ("scan", "inject", "evaluate", "export", "apply", "show", "html", "predict"):
        assert "--quiet" in invoke(command, "--help").stdout, command
    report = synthetic_report(tmp_path / "r.parquet")
    loud = invoke("export", report, "-o", tmp_path / "a.json", "--format", "labelstudio", "--top", "3")
    quiet = invoke("export", report, "-o", tmp_path / "b.json", "--format", "labelstudio", "--top", "3", "-q")
    assert loud.exit_code == quiet.exit_code == 0 and "<View>" in loud.stderr and quiet.stderr == ""


def test_dash_as_output_writes_text_to_stdout_and_the_wrote_line_to_stderr(tmp_path):
    """`-o -` wrote a file named '-' in the working folder; and a text output on /dev/stdout got the command's
    "Wrote ..." line mixed into it."""
    report = synthetic_report(tmp_path / "r.parquet", n_flagged=6)
    assert invoke("export", report, "-o", tmp_path / "sheet.csv", "--top", "5").exit_code == 0
    sheet = invoke("export", report, "-o", "-", "--top", "5")
    assert sheet.exit_code == 0 and sheet.stdout == (tmp_path / "sheet.csv").read_text()
    assert sheet.stderr == "Wrote 5 samples to stdout\n" and not Path("-").exists()
    quiet = invoke("export", report, "-o", "-", "--top", "5", "--quiet")
    assert quiet.stdout == sheet.stdout and quiet.stderr == ""
    page = invoke("html", report, "-o", "-", "-q")
    assert page.exit_code == 0 and page.stdout.startswith("<!doctype html>")
    assert page.stdout.rstrip().endswith("</html>")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": [f"{i}.png" for i in range(20)], "label": ["ab"[i % 2] for i in range(20)]}).to_csv(
        labels, index=False)
    noisy = invoke("inject", labels, "-o", "-", "--rate", "0.2", "--seed", "0")
    assert noisy.exit_code == 0, noisy.output
    assert pd.read_csv(io.StringIO(noisy.stdout))["is_noisy"].sum() == 4  # the CSV alone on stdout
    assert "Realised noise: 4 of 20 labels flipped" in noisy.stderr and noisy.stderr.endswith("Wrote stdout\n")
    reviewed = tmp_path / "reviewed.csv"
    reviewed.write_text("path,verdict,new_label\n0.png,relabel,b\n")
    fixed = invoke("apply", labels, reviewed, "-o", "-")
    assert fixed.exit_code == 0 and fixed.stdout.splitlines()[:2] == ["path,label", "0.png,b"]
    assert fixed.stderr.endswith("wrote 20 rows to stdout\n")


@pytest.mark.parametrize("args, said", [
    (["export", "{report}", "-o", "-", "--json"], "error: --json and -o - both write to stdout: choose one (or name a "
                                                  "file)"),
    (["predict", "{report}", "-o", "-"], "error: --output -: a Parquet or model file is not written to stdout; "
                                         "name a file"),
])
def test_dash_is_refused_beside_json_and_for_parquet(tmp_path, args, said):
    report = synthetic_report(tmp_path / "r.parquet")
    result = invoke(*[str(report) if a == "{report}" else a for a in args])
    assert result.exit_code == 2 and result.stderr == said + "\n" and result.stdout == ""


@pytest.mark.skipif(not Path("/dev/stdout").exists(), reason="no /dev/stdout")
def test_dev_stdout_redirected_to_a_file_is_written_through_stdout(tmp_path):
    """`export -o /dev/stdout > sheet.csv` stopped at 'output exists' (the shell had made sheet.csv), and with
    --overwrite renamed a new file over it; on a pipe the 'Wrote' line landed inside the sheet."""
    report = synthetic_report(tmp_path / "r.parquet", n_flagged=6)
    expected = tmp_path / "expected.csv"
    assert invoke("export", report, "-o", expected, "--top", "5").exit_code == 0
    with open(tmp_path / "sheet.csv", "w") as out:
        run = subprocess.run([sys.executable, "-m", "noiseaudit", "export", str(report), "-o", "/dev/stdout",
                              "--top", "5"], stdout=out, stderr=subprocess.PIPE, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "sheet.csv").read_text() == expected.read_text()
    assert run.stderr == "Wrote 5 samples to /dev/stdout\n"
