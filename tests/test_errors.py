"""User errors through the CLI: exit code 2, one line on stderr naming the file (and CSV line), no report written.

Plus one happy-path scan with ``--json``. Everything runs on tiny generated images, on the CPU, for one epoch.
"""

from __future__ import annotations

import importlib
import io
import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from noiseaudit.cli import app
from noiseaudit.report.io import read_report, write_report

REQUIRED_COLUMNS = ("sample_id", "path", "given_label", "predicted_label", "pred_prob", "given_prob",
                    "learned_lr", "learned_lr_mean", "loss", "margin", "rank", "suspicion", "is_suspect")


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def scan_args(images, csv=None, out=None, *extra: str) -> list[str]:
    args = ["scan", str(images)] + ([str(csv)] if csv is not None else [])
    return args + ["-o", str(out), "--epochs", "1", "--quiet", "--device", "cpu", "--workers", "1", *extra]


def stderr_of(result) -> str:
    # typer's CliRunner keeps stderr apart from stdout (result.output mixes both).
    return result.stderr


def assert_user_error(result, out: Path, *fragments: str) -> str:
    """Exit 2, a single ``error: ...`` line on stderr holding every fragment, nothing on stdout, no report."""
    err = stderr_of(result)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert result.stdout == ""
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*")), "temp report left behind"
    return line


def write_images(root: Path, n: int = 8, size: int = 8) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        base = 40 if i % 2 == 0 else 200
        pixels = np.clip(base + rng.integers(-20, 20, (size, size)), 0, 255).astype(np.uint8)
        names.append(f"img{i}.png")
        Image.fromarray(pixels, "L").save(root / names[-1])
    return names


@pytest.fixture()
def ds(tmp_path: Path):
    """images/ with 8 grey PNGs, the report path (not yet existing), and a CSV writer."""
    images = tmp_path / "images"
    names = write_images(images)
    out = tmp_path / "report.parquet"

    def csv(text: str, name: str = "labels.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    good = "path,label\n" + "".join(f"{n},{'ab'[i % 2]}\n" for i, n in enumerate(names))
    return images, out, csv, good


# ---------------------------------------------------------------------------------------- missing inputs


def test_missing_image_directory(ds):
    images, out, csv, good = ds
    missing = images.parent / "no_such_images"
    result = invoke(*scan_args(missing, csv(good), out))
    assert_user_error(result, out, str(missing), "image folder not found")


def test_missing_image_directory_imagefolder_mode(ds):
    images, out, _, _ = ds
    missing = images.parent / "no_such_images"
    result = invoke(*scan_args(missing, None, out))
    assert_user_error(result, out, str(missing), "image folder not found")


def test_missing_csv(ds):
    images, out, _, _ = ds
    missing = images.parent / "labels_missing.csv"
    result = invoke(*scan_args(images, missing, out))
    assert_user_error(result, out, str(missing), "labels CSV not found")


def test_arguments_mixed_up_say_what_each_one_is(ds):
    images, out, csv, good = ds
    labels = csv(good)
    assert_user_error(invoke(*scan_args(labels, images, out)), out, f"{labels}: a file, not an image folder",
                      "the folder comes first")
    assert_user_error(invoke(*scan_args(images, images, out)), out, f"{images}: a folder, not a labels CSV")
    parquet = images.parent / "report.before.parquet"
    parquet.write_bytes(b"PAR1" + bytes(range(128, 256)) + b"PAR1")
    assert_user_error(invoke(*scan_args(images, parquet, out)), out, f"{parquet}: a Parquet file, not a labels CSV")
    assert_user_error(invoke(*scan_args(images, labels, out, "--trusted", images)), out,
                      f"{images}: a folder, not a trusted labels CSV")
    page = images.parent / "page.html"
    predictions, other = images.parent / "predictions.parquet", images.parent / "vectors.parquet"
    write_report(pd.DataFrame({"path": ["a.png"], "predicted_label": ["x"], "pred_prob": [0.9]}),
                 {"model_file": "model.pt", "kind": "images"}, predictions)  # what noiseaudit predict writes
    pd.DataFrame({"id": [1, 2], "x": [0.5, 0.25]}).to_parquet(other)
    for wrong, said in ((labels, "not a Parquet report (give the .parquet file that noiseaudit scan wrote)"),
                        (images, "a folder, not a report"),
                        (predictions, "predictions (noiseaudit predict), not a scan report: give the .parquet "
                                      "file that noiseaudit scan wrote"),
                        (other, "not a noiseaudit scan report (it lacks path, given_label, rank, is_suspect)")):
        for args in (["show", wrong], ["evaluate", wrong], ["html", wrong, "-o", page], ["export", wrong, "-o", page]):
            result = invoke(*args)
            assert result.exit_code == 2 and result.stderr.strip() == f"error: {wrong}: {said}", result.stderr
    assert not page.exists()
    result = invoke("apply", images, labels, "-o", images.parent / "fixed.csv")
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {images}: a folder, not a labels CSV"
    result = invoke("apply", labels, predictions, "-o", images.parent / "fixed.csv")  # a report, not its export
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"error: {predictions}: a Parquet file, not a reviewed file: export the suspects first (noiseaudit export "
        f"{predictions} -o review.csv), fill in verdict and new_label, then apply that")


def test_imagefolder_without_class_folders(ds):
    images, out, _, _ = ds  # flat folder of PNGs and no CSV
    result = invoke(*scan_args(images, None, out))
    assert_user_error(result, out, "no images found in class subfolders")


# ---------------------------------------------------------------------------------------------- columns


def test_missing_path_column(ds):
    images, out, csv, _ = ds
    path = csv("picture,label\nimg0.png,a\nimg1.png,b\n")
    line = assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:1", "no path column")
    assert "--path-col" in line and "picture" in line


def test_missing_label_column(ds):
    images, out, csv, _ = ds
    path = csv("path,tag\nimg0.png,a\nimg1.png,b\n")
    line = assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:1", "no label column")
    assert "--label-col" in line and "tag" in line


def test_explicit_label_col_that_does_not_exist(ds):
    images, out, csv, good = ds
    result = invoke(*scan_args(images, csv(good), out, "--label-col", "species"))
    assert_user_error(result, out, "labels.csv:1", "no label column 'species'")


def test_explicit_path_col_that_does_not_exist(ds):
    images, out, csv, good = ds
    result = invoke(*scan_args(images, csv(good), out, "--path-col", "picture"))
    assert_user_error(result, out, "labels.csv:1", "no path column 'picture'")


def test_explicit_columns_work(ds):
    images, out, csv, _ = ds
    names = sorted(p.name for p in images.iterdir())
    text = "pic,kind,label\n" + "".join(f"{n},{'xy'[i % 2]},zzz\n" for i, n in enumerate(names))
    result = invoke(*scan_args(images, csv(text), out, "--path-col", "pic", "--label-col", "kind"))
    assert result.exit_code == 0, result.output
    report, _ = read_report(out)
    assert set(report["given_label"]) == {"x", "y"}
    assert report["label"].tolist() == ["zzz"] * len(names)  # carried, no clash with report columns


# ---------------------------------------------------------------------------------------------- images


def test_listed_image_that_does_not_exist(ds):
    images, out, csv, _ = ds
    path = csv("path,label\nimg0.png,a\nghost.png,b\nimg1.png,b\n")
    assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:3", "'ghost.png'", "not found")


@pytest.mark.parametrize(("listed", "hint"), [
    ("images/img1.png", "the paths start with the folder's own name 'images': give its parent ({parent}) as the "
                        "image folder"),
    ("img1.jpg", "'img1.png' exists: the CSV's paths name another file extension"),
    ("img1", "'img1.png' exists: the CSV's paths lack the file extension"),
    ("IMG1.PNG", "'img1.png' exists: paths are case-sensitive here"),
    ("Sub/x.png", "'sub/x.png' exists: paths are case-sensitive here"),
    ("sub\\x.jpeg", "'sub/x.png' exists: the CSV's paths name another file extension"),
    ("Sub/ghost.png", "the folder is 'sub': paths are case-sensitive here"),
    ("https://example.com/img1.png", "it is a URL: noiseaudit reads local files and downloads nothing"),
    ("s3://bucket/img1.png", "it is a URL: noiseaudit reads local files and downloads nothing"),
    ("ghost.png", "not found under {images}"),
    ("sub", "that is a folder, not an image file"),
    (unicodedata.normalize("NFC", "café.png"), "exists, its accents written in another Unicode form (decomposed, "
                                                "as macOS names files)"),
    # the accent in a folder's name: it was called a difference of letter case (a tester's finding)
    (unicodedata.normalize("NFC", "fünf/y.png"), "exists, its accents written in another Unicode form"),
    (unicodedata.normalize("NFC", "fünf/ghost.png"), "the folder is '" + unicodedata.normalize("NFD", "fünf")
                                                      + "': written in another Unicode form"),
])
def test_a_missing_image_names_the_likely_slip(ds, listed, hint):
    images, out, csv, _ = ds
    write_images(images / "sub", n=1)
    (images / "sub" / "img0.png").rename(images / "sub" / "x.png")
    shutil.copy(images / "img1.png", images / unicodedata.normalize("NFD", "café.png"))  # as a Mac wrote it
    (images / unicodedata.normalize("NFD", "fünf")).mkdir()
    shutil.copy(images / "img1.png", images / unicodedata.normalize("NFD", "fünf") / "y.png")
    path = csv(f"path,label\nimg0.png,a\n{listed},b\nimg2.png,b\n")
    line = assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:3", f"'{listed}'", "not found",
                             hint.format(parent=images.parent, images=images))
    assert line.endswith(str(images)) == (listed == "ghost.png")  # no hint where there is no likely slip


@pytest.mark.parametrize("image_size", [None, "8"])
def test_png_that_is_really_text(ds, image_size):
    images, out, csv, _ = ds
    (images / "bad.png").write_text("hello, I am not a PNG\n")
    path = csv("path,label\nimg0.png,a\nimg1.png,b\nbad.png,a\n")
    extra = ["--image-size", image_size] if image_size else []
    assert_user_error(invoke(*scan_args(images, path, out, *extra)), out, "labels.csv:4", "'bad.png'",
                      "not a recognised image file")


@pytest.mark.parametrize("image_size", [None, "8"])
def test_truncated_png(ds, image_size):
    images, out, csv, _ = ds
    noise = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise, "RGB").save(images / "cut.png")
    data = (images / "cut.png").read_bytes()
    (images / "cut.png").write_bytes(data[: len(data) // 2])
    path = csv("path,label\nimg0.png,a\nimg1.png,b\nimg2.png,a\ncut.png,b\n")
    extra = ["--image-size", image_size] if image_size else []
    assert_user_error(invoke(*scan_args(images, path, out, *extra)), out, "labels.csv:5", "'cut.png'",
                      "cannot decode image", "; --on-bad-image skip leaves such images out and lists them in the "
                      "report")
    # only the first was named: four bad files took four runs to find (a tester's finding)
    (images / "cut2.png").write_bytes(data[: len(data) // 3])
    (images / "cut3.png").write_bytes(b"")
    path = csv("path,label\nimg0.png,a\nimg1.png,b\nimg2.png,a\ncut.png,b\ncut2.png,a\ncut3.png,b\n")
    assert_user_error(invoke(*scan_args(images, path, out, *extra)), out, "labels.csv:5", "'cut.png'",
                      "(and 2 more); --on-bad-image skip")


def test_path_escaping_the_image_folder(ds):
    images, out, csv, _ = ds
    secret = images.parent / "secret.png"
    Image.new("L", (8, 8)).save(secret)
    path = csv(f"path,label\nimg0.png,a\nimg1.png,b\n../secret.png,a\n{secret},b\n")
    assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:4", "escapes the image folder")


# ------------------------------------------------------------------------------------------ CSV content


def test_only_one_class(ds):
    images, out, csv, _ = ds
    path = csv("path,label\nimg0.png,a\nimg1.png,a\nimg2.png,a\n")
    assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv", "at least two classes")


def test_empty_csv(ds):
    images, out, csv, _ = ds
    path = csv("")
    assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv", "empty")


def test_header_only_csv(ds):
    images, out, csv, _ = ds
    path = csv("path,label\n")
    assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:1", "no rows")


def test_a_repeated_header_row_is_named(ds):
    """`cat a.csv b.csv > labels.csv` repeats the header mid-file; it was reported as an image 'path' not found."""
    images, out, csv, _ = ds
    path = csv("path,label\nimg0.png,a\nimg1.png,b\n path , label\nimg2.png,a\nimg3.png,b\n")
    line = assert_user_error(invoke(*scan_args(images, path, out)), out)
    assert line.endswith("labels.csv:4: this row repeats the header (line 1): two CSV files joined together? "
                         "Delete the line"), line


def test_empty_label_cell(ds):
    images, out, csv, _ = ds
    path = csv("path,label\nimg0.png,a\nimg1.png,\nimg2.png,a\nimg3.png,\n")
    line = assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:3", "empty label")
    assert "(2 rows)" in line and "for image 'img1.png'" in line


def test_empty_path_cell(ds):
    images, out, csv, _ = ds
    path = csv("path,label\nimg0.png,a\nimg1.png,b\n  ,a\n")
    assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:4", "empty path")


def test_line_number_after_blank_line(ds):
    images, out, csv, _ = ds
    path = csv("path,label\nimg0.png,a\n\nimg1.png,\n")
    assert_user_error(invoke(*scan_args(images, path, out)), out, "labels.csv:4", "empty label")


def test_infinite_numeric_label_is_text_not_a_crash(ds):
    images, out, csv, _ = ds
    path = csv("path,label\nimg0.png,inf\nimg1.png,1\n")
    result = invoke(*scan_args(images, path, out))
    assert result.exit_code == 0, result.exception
    _, meta = read_report(out)
    assert meta["classes"] == ["1", "inf"]


# ---------------------------------------------------------------------------------------------- output


def test_existing_output_needs_overwrite(ds):
    images, out, csv, good = ds
    path = csv(good)
    out.write_bytes(b"precious")
    result = invoke(*scan_args(images, path, out))
    err = stderr_of(result)
    assert result.exit_code == 2, result.output
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and str(out) in err and "--overwrite" in err
    assert out.read_bytes() == b"precious"
    assert not list(out.parent.glob(f".{out.name}.*"))

    result = invoke(*scan_args(images, path, out, "--overwrite"))
    assert result.exit_code == 0, result.output
    report, meta = read_report(out)
    assert len(report) == 8 and meta["n_samples"] == 8
    assert not list(out.parent.glob(f".{out.name}.*"))


def test_output_folder_missing(ds):
    images, out, csv, good = ds
    target = out.parent / "nope" / "report.parquet"
    assert_user_error(invoke(*scan_args(images, csv(good), target)), target, "output folder does not exist")


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_an_output_that_is_a_folder_says_so_first(ds, overwrite):
    images, out, csv, good = ds
    result = invoke(*scan_args(images, csv(good), out.parent, *overwrite))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == f"error: {out.parent}: output is a directory; name a file in it"


# --------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("device", ["tpu9", "gpu", "cuda:99"])
def test_bad_device(ds, device):
    images, out, csv, good = ds
    args = scan_args(images, csv(good), out)
    args[args.index("--device") + 1] = device
    assert_user_error(invoke(*args), out, f"'{device}'")


def test_unknown_model(ds):
    images, out, csv, good = ds
    line = assert_user_error(invoke(*scan_args(images, csv(good), out, "--model", "vgg16")), out,
                             "unknown model 'vgg16'")
    assert "small-cnn" in line


@pytest.mark.parametrize(("option", "value", "fragment"), [
    ("--epochs", "0", "--epochs must be at least 1"),
    ("--batch-size", "0", "--batch-size must be at least 1"),
    ("--lr", "0", "--lr must be a positive number"),
    ("--lr", "inf", "--lr must be a positive number, got inf"),
    ("--hyper-lr", "inf", "--hyper-lr must be a non-negative number, got inf"),
    # it was accepted, and flagged nothing: every rate stayed 1 (a tester's CI gate passed on it)
    ("--hyper-lr", "0", "--hyper-lr 0 keeps every learned rate at 1, so they rank nothing; --method plain trains"),
    ("--margin-weight", "inf", "--margin-weight must be a non-negative number"),
    ("--seed", "-1", "--seed must be an integer from 0 to 2**32 - 1, got -1"),
    ("--seed", str(2**64), "--seed must be an integer from 0"),
    ("--image-size", "100000", "--image-size must be between 4 and 1024"),
    ("--fail-above", "5", "--fail-above is a fraction of the samples, from 0 to 1 (5% is 0.05), got 5"),
    ("--fail-above", "-0.1", "--fail-above is a fraction"),
    ("--noise-rate", "1.5", "--noise-rate must be in [0, 1)"),
    ("--method", "magic", "unknown method 'magic'"),
])
def test_out_of_range_options(ds, option, value, fragment):
    images, out, csv, good = ds
    args = scan_args(images, csv(good), out)
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    assert_user_error(invoke(*args), out, fragment)


def test_option_errors_come_before_input_errors(ds):
    # --epochs 0 with a missing CSV: the option is reported, and nothing is read.
    images, out, _, _ = ds
    args = scan_args(images, images.parent / "missing.csv", out)
    args[args.index("--epochs") + 1] = "0"
    assert_user_error(invoke(*args), out, "--epochs")


# ------------------------------------------------------------------------------------------- happy path


def _happy_csv(ds) -> tuple[Path, Path, Path, list[str]]:
    images, out, csv, _ = ds
    names = sorted(p.name for p in images.iterdir())
    rows = "".join(f"{n},{'ab'[int(n[3]) % 2]},train,{'true' if i % 3 else 'false'},{100 + i},{i}\n"
                   for i, n in enumerate(names))
    return images, out, csv("path,label,split,verified,source_id,rank\n" + rows), names


def test_happy_path_json_and_parquet(ds):
    images, out, path, names = _happy_csv(ds)
    result = invoke(*scan_args(images, path, out, "--json"))
    assert result.exit_code == 0, (result.output, result.exception)
    assert stderr_of(result) == ""  # --quiet
    summary = json.loads(result.stdout)
    assert summary["n_samples"] == 8
    assert isinstance(summary["n_flagged"], int) and 0 <= summary["n_flagged"] <= 8
    assert summary["n_classes"] == 2
    assert summary["output"] == str(out)
    assert summary["device"] == "cpu"
    top = summary["top_suspects"]
    assert isinstance(top, list) and len(top) == 8
    assert [s["rank"] for s in top] == list(range(1, 9))
    assert {s["path"] for s in top} == set(names)
    assert {s["given_label"] for s in top} <= {"a", "b"}

    assert out.is_file()
    report = pd.read_parquet(out)
    assert len(report) == 8
    missing = [c for c in REQUIRED_COLUMNS if c not in report.columns]
    assert not missing, missing
    assert report["sample_id"].tolist() == list(range(8))
    assert report["path"].tolist() == names
    assert sorted(report["rank"].tolist()) == list(range(1, 9))
    assert report["is_suspect"].dtype == bool
    assert int(report["is_suspect"].sum()) == summary["n_flagged"]
    assert report["given_label"].tolist() == ["ab"[int(n[3]) % 2] for n in names]
    assert ((report["pred_prob"] >= 0) & (report["pred_prob"] <= 1)).all()
    assert (report["learned_lr"] > 0).all()
    # Carried columns keep their types; one clashing with a report column is renamed.
    assert report["split"].tolist() == ["train"] * 8
    assert report["verified"].dtype == bool
    assert report["verified"].tolist() == [bool(i % 3) for i in range(8)]
    assert report["source_id"].dtype == np.int64
    assert report["source_id"].tolist() == [100 + i for i in range(8)]
    assert report["input_rank"].tolist() == list(range(8))
    _, meta = read_report(out)
    assert meta["n_samples"] == 8 and meta["config"]["epochs"] == 1 and meta["device"] == "cpu"


def test_happy_path_imagefolder_without_json(tmp_path: Path):
    root = tmp_path / "tree"
    write_images(root / "cats", n=3)
    write_images(root / "dogs", n=3)
    out = tmp_path / "r.parquet"
    result = invoke(*scan_args(root, None, out))
    assert result.exit_code == 0, (result.output, result.exception)
    assert "6 samples, 2 classes" in result.stdout and f"Report written to {out}" in result.stdout
    report = pd.read_parquet(out)
    assert sorted(set(report["given_label"])) == ["cats", "dogs"]


def test_json_output_is_strict_json(ds):
    images, out, path, _ = _happy_csv(ds)
    result = invoke(*scan_args(images, path, out, "--json", "--noise-rate", "0"))
    assert result.exit_code == 0, result.output

    def reject(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    json.loads(result.stdout, parse_constant=reject)


# ------------------------------------------------------------------------------------- the system refuses


def test_an_output_folder_that_is_not_writable_is_refused_before_training(ds, monkeypatch):
    import os

    images, out, csv, good = ds
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == out.parent else real_access(p, mode))
    assert_user_error(invoke(*scan_args(images, csv(good), out)), out, f"{out.parent}: output folder is not writable")


def test_a_folder_access_calls_writable_but_that_refuses_files_is_refused_before_training(ds, monkeypatch):
    """A read-only mount, /proc, or root's access() on a folder it cannot write in: found only at the first
    checkpoint, after an epoch of training."""
    import errno
    import tempfile

    images, out, csv, good = ds

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert_user_error(invoke(*scan_args(images, csv(good), out)), out,
                      f"{out.parent}: output folder is not writable (Read-only file system)")


def test_a_full_disk_while_writing_the_report_is_one_line_and_exit_2(ds, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    images, out, csv, good = ds

    def full(_table, where, *args, **kwargs):
        Path(where).write_bytes(b"PAR1 half")  # a partial file, as a real full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    real = pq.write_table
    monkeypatch.setattr(pq, "write_table", full)
    line = assert_user_error(invoke(*scan_args(images, csv(good), out)), out, "No space left on device")
    kept = out.parent / (out.name + ".ckpt") / "checkpoint.pt"  # the target named, its temp file removed
    assert line == (f"error: {out}: No space left on device; the trained run is kept in {kept}: run again with "
                    "--resume to write it")
    monkeypatch.setattr(pq, "write_table", real)  # space freed
    result = invoke(*scan_args(images, csv(good), out, "--resume"))
    assert result.exit_code == 0 and out.is_file() and not kept.exists(), result.output


def test_a_full_disk_under_overwrite_says_to_resume_with_overwrite(ds, monkeypatch):
    """The advice said --resume alone, which then stopped at 'output exists' where the scan replaced a report."""
    import errno

    import pyarrow.parquet as pq

    images, out, csv, good = ds
    out.write_bytes(b"an older report")

    def full(_table, where, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    real = pq.write_table
    monkeypatch.setattr(pq, "write_table", full)
    result = invoke(*scan_args(images, csv(good), out, "--overwrite"))
    kept = out.parent / (out.name + ".ckpt") / "checkpoint.pt"
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (f"error: {out}: No space left on device; the trained run is kept in {kept}: run again "
                             "with --resume --overwrite to write it\n")
    assert out.read_bytes() == b"an older report"  # kept whole
    monkeypatch.setattr(pq, "write_table", real)
    result = invoke(*scan_args(images, csv(good), out, "--resume", "--overwrite"))
    assert result.exit_code == 0 and not kept.exists(), result.output


def test_a_full_disk_while_saving_the_model_or_a_checkpoint_is_one_line_and_exit_2(ds, monkeypatch):
    """torch.save to a file name raised RuntimeError ("unexpected pos 3584 vs 3472") on a full disk: a traceback
    and exit 1, the finished training lost, and an empty OUTPUT.ckpt folder left behind."""
    import builtins
    import errno

    import noiseaudit.checkpoint as checkpoint

    images, out, csv, good = ds
    full_for = []  # the names whose writes find the disk full

    class Full(io.BufferedWriter):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(file, mode="r", *args, **kwargs):
        if "w" in mode and any(Path(file).name.startswith(f".{name}.") for name in full_for):
            return Full(io.BytesIO())
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", fake_open, raising=False)
    full_for.append("m.pt")
    line = assert_user_error(invoke(*scan_args(images, csv(good), out, "--save-model", out.parent / "m.pt")), out)
    kept = out.parent / (out.name + ".ckpt") / "checkpoint.pt"
    assert line == (f"error: {out.parent / 'm.pt'}: No space left on device; the trained run is kept in {kept}: "
                    "run again with --resume to write it")
    full_for[:] = ["checkpoint.pt"]
    kept.unlink()
    line = assert_user_error(invoke(*scan_args(images, csv(good), out)), out)
    assert line == f"error: {kept}: No space left on device" and not kept.parent.exists()


@pytest.mark.parametrize("which", ["labels", "trusted"])
def test_an_output_that_names_an_input_is_refused_even_with_overwrite(ds, which):
    images, out, csv, good = ds
    labels, trusted = csv(good), csv("path,label\nimg0.png,a\n", name="verified.csv")
    target = labels if which == "labels" else trusted
    before = target.read_bytes()
    result = invoke(*scan_args(images, labels, target, "--overwrite", "--trusted", trusted))
    assert result.exit_code == 2 and result.stdout == ""
    what = "labels CSV" if which == "labels" else "--trusted file"
    assert result.stderr.strip() == f"error: {target}: --output names the {what}, an input of this command"
    assert target.read_bytes() == before


def test_a_report_named_like_a_csv_is_written_as_parquet_with_a_warning(ds):
    images, out, csv, good = ds
    target = out.parent / "report.csv"
    result = invoke(*scan_args(images, csv(good), target))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (f"warning: {target}: the report is a Parquet file whatever its name (noiseaudit "
                                     "export writes a CSV of the suspects, noiseaudit html a page)")
    assert target.read_bytes()[:4] == b"PAR1"


@pytest.mark.parametrize("argv, says", [
    (["scan"], "error: missing the image folder: noiseaudit scan IMAGES_DIR [LABELS_CSV] (or LABELS_CSV --features "
               "FILE). See 'noiseaudit scan --help'."),
    (["scan", "imgs", "--bogus"], "error: No such option: --bogus. See 'noiseaudit scan --help'."),
    (["show", "r.parquet", "--top", "abc"], "error: Invalid value for '--top'"),
    (["scna"], "error: No such command 'scna'. Did you mean 'scan'? See 'noiseaudit --help'."),
])
def test_usage_errors_are_one_line_and_exit_2(argv, says, capsys, monkeypatch):
    """What a user types wrong before any file is read gets the same one ``error:`` line as bad input,
    not typer's boxed panel under the usage line."""
    from noiseaudit.cli import main

    monkeypatch.setattr("sys.argv", ["noiseaudit"])
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith(says) and err.count("\n") == 1, err
    assert "╭" not in err


def test_main_passes_exit_codes_through(capsys, monkeypatch):
    from noiseaudit.cli import main

    monkeypatch.setattr("sys.argv", ["noiseaudit"])
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("noiseaudit ")
    with pytest.raises(SystemExit) as stop:
        main(["show", "no-such-report.parquet"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: no-such-report.parquet: report not found\n"
    with pytest.raises(SystemExit) as stop:
        main([])  # no arguments: the help, exit 2 (click's convention)
    assert stop.value.code == 2 and "Usage: noiseaudit" in capsys.readouterr().out


@pytest.mark.parametrize("args, said", [
    (["scan", "--features", "f.npy"], "a scan of feature vectors takes the labels CSV first: noiseaudit scan "
                                      "LABELS_CSV --features FILE."),
    (["scan", "--features=f.npy", "-q"], "a scan of feature vectors takes the labels CSV first"),
    (["scan", "-o", "r.parquet"], "missing the image folder: noiseaudit scan IMAGES_DIR [LABELS_CSV] (or LABELS_CSV "
                                  "--features FILE)."),
    (["predict"], "Missing argument 'model'."),  # click's own words elsewhere
])
def test_a_scan_missing_its_first_argument_says_what_comes_first(capsys, args, said):
    """`scan --features X.npy` with no CSV said "Missing argument 'images_dir'", for a scan of no images."""
    from noiseaudit.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"error: {said}") and err.count("\n") == 1, err


def test_an_output_another_run_writes_meanwhile_is_kept(ds):
    """The output was checked only at start-up, then os.replace'd: a file written there during the scan (another
    scan into the same path) was silently replaced, and both runs said they wrote it."""
    from noiseaudit import scan
    from noiseaudit.errors import UsageError

    images, out, csv, good = ds

    def meanwhile(stage, done, total, info):
        if stage == "train" and done == total and not out.exists():
            out.write_bytes(b"another run's report")

    kept = out.parent / (out.name + ".ckpt") / "checkpoint.pt"
    with pytest.raises(UsageError, match=rf"^{out}: this output was written by something else while this ran "
                                         r"\(another run into the same file\?\), so it is not replaced; pass "
                                         rf"overwrite=True to replace it; the trained run is kept in {kept}: run "
                                         "again with resume=True overwrite=True to write it$"):
        scan(images, csv(good), output=out, epochs=1, device="cpu", workers=1, on_progress=meanwhile)
    assert out.read_bytes() == b"another run's report" and kept.is_file()
    report = scan(images, csv(good), output=out, epochs=1, device="cpu", workers=1, resume=True, overwrite=True)
    assert read_report(out)[0]["path"].tolist() == report["path"].tolist() and not kept.exists()


def test_a_second_run_into_the_same_checkpoint_folder_is_refused(ds):
    """Two scans into one report shared OUTPUT.ckpt: each saved over the other's checkpoints, and the first to
    finish deleted them."""
    fcntl = pytest.importorskip("fcntl")

    images, out, csv, good = ds
    folder = out.parent / (out.name + ".ckpt")
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"the first run's")  # which the second run warned it would replace
    reads = []  # refused before any image is read (it decoded them all first, minutes on a large dataset)
    with open(folder / "in-use.lock", "a") as held, pytest.MonkeyPatch.context() as mp:  # the first run, training
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        mp.setattr(importlib.import_module("noiseaudit.scan"), "load_source", lambda *a, **k: reads.append(1))
        assert_user_error(invoke(*scan_args(images, csv(good), out)), out,
                          f"error: {folder}: another run is using this checkpoint folder (a scan into the same "
                          "output?); wait for it to finish, or write elsewhere")
    assert reads == []
    assert invoke(*scan_args(images, csv(good), out)).exit_code == 0 and not folder.exists()


def test_an_output_name_of_the_longest_length_is_written(ds):
    """A 255-byte report name was refused as 'output folder is not writable (File name too long)': the temp file
    beside it added a dot, random letters and a suffix to the whole name."""
    images, out, csv, good = ds
    longest = out.parent / ("r" * 247 + ".parquet")
    assert len(longest.name.encode()) == 255
    result = invoke(*scan_args(images, csv(good), longest))
    assert result.exit_code == 0 and longest.is_file(), result.output
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temp file left


# ------------------------------------------------------------------------------------------- unforeseen failures

def test_an_unforeseen_exception_prints_its_traceback_and_exits_3_not_the_gates_1(ds, monkeypatch):
    """A bug exited 1 with a bare traceback: the same code as `--fail-above` finding too many suspects, so a CI
    gate read a crash as findings."""
    scan_module = importlib.import_module("noiseaudit.scan")  # the package's `scan` is the function
    images, out, csv, good = ds

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(scan_module, "build_report", broken)
    result = invoke(*scan_args(images, csv(good), out, "--fail-above", "0.5"))
    assert result.exit_code == 3 and result.stdout == "", result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "KeyError: 'a bug'" in lines
    from noiseaudit import __version__
    assert lines[-1] == (f"error: internal error (KeyError: 'a bug'): a bug in noiseaudit {__version__}; "
                         "please report it with the traceback above")
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


def test_running_out_of_memory_is_one_line_with_what_to_lower(ds, monkeypatch):
    scan_module = importlib.import_module("noiseaudit.scan")  # the package's `scan` is the function
    images, out, csv, good = ds

    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name and its message's shape
        pass

    def full(*args, **kwargs):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)\n"
                               "If reserved but unallocated memory is large try setting max_split_size_mb")

    monkeypatch.setattr(scan_module, "train", full)
    line = assert_user_error(invoke(*scan_args(images, csv(good), out)), out)
    assert line == ("error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total "
                    "capacity)): try a smaller --batch-size or --image-size, or --device cpu")


def test_a_folder_that_turns_read_only_during_a_run_is_named_by_the_output_not_a_temp_file(tmp_path, monkeypatch):
    """The error named '.x.parquet.jdlbttvy.tmp', a file the user never asked for."""
    import errno
    import tempfile

    from noiseaudit.report.io import atomic_write

    def refuse(prefix, suffix, dir):
        raise OSError(errno.EPERM, "Operation not permitted", str(Path(dir) / f"{prefix}jdlbttvy{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OSError) as info:
        atomic_write(tmp_path / "x.parquet", lambda tmp: tmp.write_bytes(b"report"))
    assert (info.value.filename, info.value.strerror) == (str(tmp_path / "x.parquet"), "Operation not permitted")
