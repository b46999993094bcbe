"""Identical inputs: found among decoded pixels (or feature vectors), remembered by the cache, and reported with
whether their labels differ."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from noiseaudit import scan_features
from noiseaudit.cli import app
from noiseaudit.data import dataset as dataset_module
from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.dataset import Encoder, load_dataset
from noiseaudit.data.duplicates import first_identical, from_groups, groups_of, row_digests
from noiseaudit.data.source import load_source
from noiseaudit.report.build import with_duplicates


def test_first_identical_groups_rows_and_leaves_missing_inputs_out():
    x = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4], [1, 2]], dtype=np.float32)
    digests = row_digests(x, chunk=2)  # groups found across chunks
    assert first_identical(digests).tolist() == [0, 1, 0, -1, 1, 0]
    assert first_identical([digests[0], None, None, digests[2]]).tolist() == [0, -1, -1, 0]
    identical = first_identical(digests)
    assert groups_of(identical) == [[0, 2, 5], [1, 4]]
    assert from_groups(groups_of(identical), 6).tolist() == identical.tolist()


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    """Six distinct images, a byte copy of one under another label, a re-save of another at other PNG settings
    (other bytes, the same pixels), a one-pixel edit of a third, and an unreadable file."""
    root = tmp_path / "img"
    root.mkdir()
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (12, 12), dtype=np.uint8) for _ in range(6)]
    rows = ["path,label"]
    for i, p in enumerate(pixels):
        Image.fromarray(p, "L").save(root / f"{i}.png")
        rows.append(f"{i}.png,{i % 3}")
    shutil.copy(root / "0.png", root / "copy0.png")
    Image.fromarray(pixels[1], "L").save(root / "resave1.png", compress_level=0)
    edited = pixels[2].copy()
    edited[0, 0] ^= 1
    Image.fromarray(edited, "L").save(root / "edit2.png")
    (root / "bad.png").write_bytes(b"not a png")
    rows += ["copy0.png,1", "bad.png,0", "resave1.png,1", "edit2.png,2"]
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    return root, csv


def test_copies_and_resaves_are_identical_edits_and_bad_images_are_not(tmp_path):
    root, csv = _folder(tmp_path)
    data = load_dataset(load_source(root, csv), workers=1, on_bad_image="skip")
    assert data.rows.tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 9]  # row 7, bad.png, skipped
    # copy0 is 0's copy, resave1 has 1's pixels; edit2 differs from 2 by one bit
    assert data.identical.tolist() == [0, 1, -1, -1, -1, -1, 0, 1, -1]


class _MeanEncoder:
    """A stand-in backbone whose output (the image's mean) is the same for different pictures: duplicates must
    come from the pixels, not from what the encoder makes of them."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True).astype(np.float32)


def test_an_encoder_path_finds_them_in_the_pixels_and_the_cache_remembers_them(tmp_path, monkeypatch):
    root, csv = _folder(tmp_path)
    shifted = np.roll(np.asarray(Image.open(root / "3.png")), 1, axis=1)  # the same mean, other pixels
    Image.fromarray(shifted, "L").save(root / "roll3.png")
    csv.write_text(csv.read_text() + "roll3.png,0\n")
    encode = _MeanEncoder()
    enc = Encoder(name="mean-v1", shape=(1,), dtype="float32", encode=encode, batch_size=4)
    cache = DecodeCache(tmp_path / "cache")

    def load():
        return load_dataset(load_source(root, csv), image_size=12, workers=1, on_bad_image="skip", cache=cache,
                            encoder=enc)

    cold = load()
    assert cold.identical.tolist() == [0, 1, -1, -1, -1, -1, 0, 1, -1, -1]
    assert float(cold.inputs[3]) == float(cold.inputs[9])  # the encoder cannot tell roll3 from 3
    calls = encode.calls

    def refuse(*_args, **_kwargs):
        raise AssertionError("an image was opened although the cache should have answered")

    with monkeypatch.context() as m:
        m.setattr(dataset_module, "decode_image", refuse)
        assert load().identical.tolist() == cold.identical.tolist()
    assert encode.calls == calls
    # an entry written before duplicates were looked for has no groups: it is embedded again, not trusted
    sidecar = next(p for p in (tmp_path / "cache").glob("*-mean-v1.json"))
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({k: v for k, v in meta.items() if k != "identical"}))
    assert load().identical.tolist() == cold.identical.tolist()
    assert encode.calls > calls


def test_report_columns_mark_groups_and_conflicts_trusted_samples_included():
    report = pd.DataFrame({"sample_id": [0, 1, 2, 3, 4, 5], "given_label": ["a", "b", "a", "c", "b", "a"],
                           "status": ["ok", "ok", "trusted", "ok", "ok", "missing"], "carried": range(6)})
    out = with_duplicates(report, np.arange(5), np.array([-1, 1, -1, 3, 1]))
    assert list(out.columns) == ["sample_id", "given_label", "status", "duplicate_group", "duplicate_conflict",
                                 "carried"]
    assert out["duplicate_group"].tolist() == [pd.NA, 1, pd.NA, 3, 1, pd.NA]
    assert out["duplicate_conflict"].tolist() == [False] * 6  # 1 and 4 agree; 3 has no copy among the rows
    out = with_duplicates(report, np.arange(5), np.array([0, -1, 0, -1, -1]))  # a trusted copy that agrees
    assert out["duplicate_conflict"].tolist() == [False] * 6
    out = with_duplicates(report, np.arange(5), np.array([-1, 1, 1, -1, -1]))  # one that does not
    assert out["duplicate_conflict"].tolist() == [False, True, True, False, False, False]
    assert "duplicate_group" not in report.columns  # the caller's frame is left as it was
    out = with_duplicates(report, np.arange(5), None)
    assert out["duplicate_group"].isna().all() and not out["duplicate_conflict"].any()


@pytest.fixture(scope="module")
def copied_digits(tmp_path_factory) -> tuple[Path, Path]:
    """300 digits, one copied under another label, one copied twice under its own."""
    root = tmp_path_factory.mktemp("copies")
    digits = load_digits()
    images = (digits.images[:300] * (255.0 / 16.0)).round().astype(np.uint8)
    (root / "images").mkdir()
    rows = []
    for i, img in enumerate(images):
        Image.fromarray(img, "L").save(root / "images" / f"d{i}.png")
        rows.append((f"d{i}.png", int(digits.target[i])))
    for name, source, label in (("x1.png", 1, (int(digits.target[1]) + 1) % 10), ("y5.png", 5, None),
                                ("z5.png", 5, None)):
        shutil.copy(root / "images" / f"d{source}.png", root / "images" / name)
        rows.append((name, int(digits.target[source]) if label is None else label))
    csv = root / "labels.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(csv, index=False)
    return root / "images", csv


def test_scan_reports_identical_images_and_says_so(copied_digits, tmp_path):
    images, csv = copied_digits
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "--epochs", "1", "--device", "cpu",
                                      "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert ("5 samples are identical images in 2 groups; 1 group (2 samples) carry different labels, so at least "
            f"one label in each is wrong: noiseaudit show {out} --by duplicate lists them.") in " ".join(
        result.stdout.split())
    report = pd.read_parquet(out)
    by_path = report.set_index("path")
    assert by_path.loc[["d1.png", "x1.png"], "duplicate_group"].tolist() == [1, 1]
    assert by_path.loc[["d5.png", "y5.png", "z5.png"], "duplicate_group"].tolist() == [5, 5, 5]
    assert report.loc[report["duplicate_conflict"], "path"].tolist() == ["d1.png", "x1.png"]
    assert report["duplicate_group"].notna().sum() == 5
    shown = CliRunner().invoke(app, ["show", str(out), "--by", "duplicate", "--json"])
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.stdout)
    assert (listed["n_groups"], listed["n_samples"]) == (1, 2)
    assert [(r["duplicate_group"], r["path"]) for r in listed["rows"]] == [(1, "d1.png"), (1, "x1.png")]
    shown = CliRunner().invoke(app, ["show", str(out), "--by", "duplicate", "--class", "3"])
    assert shown.exit_code == 0 and "0 groups" in shown.stdout  # neither copy is labelled 3
    older = tmp_path / "older.parquet"
    report.drop(columns=["duplicate_group", "duplicate_conflict"]).to_parquet(older)
    shown = CliRunner().invoke(app, ["show", str(older), "--by", "duplicate"])
    assert shown.exit_code == 2 and "before noiseaudit looked for identical inputs" in shown.stderr
    page = tmp_path / "r.html"
    assert CliRunner().invoke(app, ["html", str(out), "-o", str(page)]).exit_code == 0
    text = page.read_text()
    assert "Identical images, different labels" in text and text.count('class="gallery dup"') == 1
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "--epochs", "1", "--device", "cpu",
                                      "-o", str(tmp_path / "s.parquet"), "--json"])
    assert json.loads(result.stdout)["duplicates"] == {"of": "images", "groups": 2, "samples": 5,
                                                       "conflicting_groups": 1, "conflicting_samples": 2}


def test_scan_features_reports_identical_vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = np.arange(200) % 2
    x[199], y[199] = x[0], 1 - y[0]
    report = scan_features(x, y, epochs=1, device="cpu", seed=0)
    assert report.loc[[0, 199], "duplicate_group"].tolist() == [0, 0]
    assert report["duplicate_conflict"].sum() == 2 and report["duplicate_group"].notna().sum() == 2
