"""A trusted set (``--trusted``): verified labels override, extra samples join, they are kept out of the
ranking, and bad trusted files are one-line exit-2 errors naming the file and line.

The effect on the rates themselves is tested on the optimizer (tests/test_optim.py,
``test_a_trusted_set_turns_the_rates_against_the_labels_it_contradicts``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from noiseaudit.cli import app
from noiseaudit.errors import InputError
from noiseaudit.evaluate import evaluate
from noiseaudit.scan import scan, scan_features

OPTIONS = dict(epochs=2, device="cpu", seed=0, workers=1)


@pytest.fixture(scope="module")
def digits_with_trusted(noisy_digits, tmp_path_factory):
    """The digits fixture, a trusted CSV of 60 of its rows (their true labels) plus one image the labels
    CSV does not list, and that image."""
    images, csv = noisy_digits
    root = tmp_path_factory.mktemp("trusted")
    shutil.copytree(images, root / "images")
    table = pd.read_csv(csv)
    shutil.copy(root / "images" / table["file"][0], root / "images" / "extra.png")
    picked = table.sample(60, random_state=0)
    trusted = pd.concat([picked[["file", "original_label"]].rename(columns={"original_label": "digit"}),
                         pd.DataFrame({"file": ["extra.png"], "digit": [int(table["original_label"][0])]})])
    trusted.to_csv(root / "trusted.csv", index=False)
    return root / "images", csv, root / "trusted.csv", picked


def test_trusted_labels_override_join_and_stay_out_of_the_ranking(digits_with_trusted):
    images, csv, trusted_csv, picked = digits_with_trusted
    report = scan(images, csv, label_col="digit", trusted=str(trusted_csv), **OPTIONS)
    assert len(report) == 1798 and report.attrs["noiseaudit"]["n_trusted"] == 61
    trusted = report[report["trusted"]]
    assert set(trusted["path"]) == set(picked["file"]) | {"extra.png"}
    assert (trusted["status"] == "trusted").all() and trusted["rank"].isna().all()
    assert not trusted["is_suspect"].any() and trusted["learned_lr"].eq(1.0).all()
    by_path = trusted.set_index("path")
    for _, row in picked.iterrows():  # the verified label replaces the (possibly noisy) given one
        assert by_path.loc[row["file"], "given_label"] == row["original_label"]
    ranked = report[~report["trusted"]]
    assert sorted(ranked["rank"].astype(int)) == list(range(1, 1738))  # ranks 1..M over the untrusted rows
    ev = evaluate(report)
    assert ev["n"] == 1737  # scored without the trusted rows


def test_trusted_from_the_cli_prints_the_count(digits_with_trusted, tmp_path):
    images, csv, trusted_csv, _ = digits_with_trusted
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "--label-col", "digit", "--trusted",
                                      str(trusted_csv), "--epochs", "1", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "61 trusted samples" in result.stdout
    assert pd.read_parquet(out)["trusted"].sum() == 61
    shown = CliRunner().invoke(app, ["show", str(out), "--top", "3"])  # its title left the 61 out, unsaid
    assert shown.exit_code == 0 and "(61 more not ranked: trusted or skipped)" in shown.stdout, shown.output


def test_a_reviewed_sheet_is_a_trusted_set_and_the_hint_counts_corrections(digits_with_trusted, tmp_path):
    """The loop's second round: the first round's reviewed sheet (keep and relabel rows) fed back as --trusted was
    refused for its columns; and the trusted labels that correct the labels CSV went unmentioned."""
    images, csv, _, _ = digits_with_trusted
    table = pd.read_csv(csv).head(12)
    sheet = pd.DataFrame({"path": table["file"], "given_label": table["digit"], "suggested_label": 0,
                          "verdict": ["keep", "relabel", "drop", ""] * 3, "new_label": ["", "7", "", ""] * 3})
    sheet.to_csv(tmp_path / "review.csv", index=False)
    report = scan(images, csv, label_col="digit", trusted=str(tmp_path / "review.csv"), **OPTIONS)
    trusted = report[report["trusted"]].set_index("path")
    assert set(trusted.index) == set(table["file"][0::4]) | set(table["file"][1::4])  # keep and relabel rows
    assert (trusted.loc[table["file"][1::4], "given_label"] == 7).all()
    assert (trusted.loc[table["file"][0::4], "given_label"].to_numpy() == table["digit"][0::4].to_numpy()).all()
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "--label-col", "digit", "--trusted",
                                      str(tmp_path / "review.csv"), "--epochs", "1", "--device", "cpu", "-o",
                                      str(out)])
    assert result.exit_code == 0, result.output
    changed = int((table["digit"][1::4] != 7).sum())
    assert (f"{tmp_path / 'review.csv'}: of its 6 trusted samples, {changed} correct the label in {csv}"
            in result.stderr), result.stderr
    sheet.assign(verdict="maybe").to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(InputError, match=r"odd.csv:2: unknown verdict 'maybe'"):
        scan(images, csv, label_col="digit", trusted=str(tmp_path / "odd.csv"), **OPTIONS)


def _bad(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "line", "fragments"), [
    ("file,digit\nd0001.png,3\nd0002.png,eleven\n", 3, ["class 'eleven' of 'd0002.png' is not a class of"]),
    ("file,digit\nd0001.png,3\nd0005.png,4\nd0001.png,5\n", 4, ["'d0001.png' is listed twice with different labels",
                                                              "'3' on line 2"]),
    ("file,digit\n", 1, ["trusted labels CSV has a header but no rows"]),
    ("file,digit\n../outside.png,3\n", 2, ["escapes the image folder"]),
    ("name,digit\nd0001.png,3\n", 1, ["no path column 'file'"]),
])
def test_trusted_file_errors_are_one_line_exit_2(noisy_digits, tmp_path, text, line, fragments):
    images, csv = noisy_digits
    trusted = _bad(tmp_path, "trusted.csv", text)
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "--label-col", "digit", "--trusted",
                                      str(trusted), "--epochs", "1", "--device", "cpu", "-o", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {trusted}:{line}: "), lines
    assert all(f in lines[0] for f in fragments), lines[0]
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize(("name", "message"), [("nope.csv", "trusted labels CSV not found"),
                                               ("empty.csv", "trusted labels CSV is empty")])
def test_missing_or_empty_trusted_file_is_an_error(noisy_digits, tmp_path, name, message):
    images, csv = noisy_digits
    (tmp_path / "empty.csv").write_text("")
    out = tmp_path / "report.parquet"  # not the default ./report.parquet, which the quick start leaves behind
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "--label-col", "digit", "--trusted",
                                      str(tmp_path / name), "-o", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path / name}: {message}"
    assert not out.exists()


def test_trusted_keys_of_a_features_scan(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 4)), rng.normal(3, 1, (40, 4))])
    labels = pd.DataFrame({"id": [f"s{i}" for i in range(80)], "label": [0] * 40 + [1] * 40})
    labels.loc[3, "label"] = 1  # a wrong label, verified back in the trusted file
    pd.DataFrame({"id": ["s3", "s50"], "label": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    report = scan_features(x, labels, key_col="id", trusted=str(tmp_path / "t.csv"), epochs=2, device="cpu")
    assert report.loc[report["path"] == "s3", "given_label"].item() == 0
    assert report["trusted"].sum() == 2 and report.loc[report["trusted"], "rank"].isna().all()
    pd.DataFrame({"id": ["s999"], "label": [0]}).to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(Exception, match=r"u\.csv:2: key 's999' is not in"):
        scan_features(x, labels, key_col="id", trusted=str(tmp_path / "u.csv"), epochs=1, device="cpu")


def test_a_trusted_file_that_holds_every_sample_is_an_error(noisy_digits, tmp_path):
    """Passing the labels CSV itself as --trusted trained everything as verified and ranked nothing (exit 0)."""
    images, csv = noisy_digits
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "--label-col", "digit", "--trusted", str(csv),
                                      "-o", str(out), "--epochs", "1", "--device", "cpu", "--quiet"])
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr.strip().startswith(f"error: {csv}: every sample of ")
    assert result.stderr.strip().endswith("so none is left to rank; pass the labels someone has verified, not the "
                                          "labels to check")


def test_a_trusted_file_may_name_its_columns_as_any_csv_does(noisy_digits, tmp_path):
    """The labels CSV's columns are file,digit; a trusted file of path,label said "no path column 'file'", a name
    the user never gave. It is found as in any CSV; where neither fits, the message says whose name it was."""
    images, csv = noisy_digits
    trusted = _bad(tmp_path, "trusted.csv", "path,label\nd0001.png,3\nd0002.png,4\n")
    report = scan(images, csv, label_col="digit", trusted=str(trusted), epochs=1, device="cpu", workers=1)
    assert int(report["trusted"].sum()) == 2
    odd = _bad(tmp_path, "odd.csv", "name,digit\nd0001.png,3\n")
    with pytest.raises(InputError, match=r"odd.csv:1: no path column 'file' \(the labels CSV's name for it\) or one "
                                        "named like path, file, filename"):
        scan(images, csv, label_col="digit", trusted=str(odd), epochs=1, device="cpu", workers=1)
