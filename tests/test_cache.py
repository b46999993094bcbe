"""The decoded-image cache: a warm scan opens no image; any change to the files is a miss."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noiseaudit.data import dataset as dataset_module
from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.dataset import load_dataset
from noiseaudit.data.source import load_source
from noiseaudit.errors import InputError


def _folder(tmp_path: Path, bad: bool = False) -> tuple[Path, Path]:
    root = tmp_path / "img"
    root.mkdir()
    rows = ["path,label"]
    for i in range(12):
        Image.fromarray(np.full((10, 10), i * 20, np.uint8), "L").save(root / f"{i}.png")
        rows.append(f"{i}.png,{i % 3}")
    if bad:
        (root / "bad.png").write_bytes(b"not a png")
        rows.append("bad.png,0")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    return root, csv


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("an image was opened although the cache should have answered")
    monkeypatch.setattr(dataset_module, "decode_image", refuse)
    monkeypatch.setattr(dataset_module, "image_header", refuse)


def test_warm_load_opens_no_image_and_gives_the_same_tensor(tmp_path, monkeypatch):
    root, csv = _folder(tmp_path)
    cache = DecodeCache(tmp_path / "cache")
    cold = load_dataset(load_source(root, csv), workers=1, cache=cache)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    _forbid_decoding(monkeypatch)
    warm = load_dataset(load_source(root, csv), workers=1, cache=cache)
    assert warm.image_size == cold.image_size == 10
    assert (warm.inputs == cold.inputs).all() and (warm.targets == cold.targets).all()


def test_a_changed_file_is_a_miss(tmp_path):
    root, csv = _folder(tmp_path)
    cache = DecodeCache(tmp_path / "cache")
    load_dataset(load_source(root, csv), workers=1, cache=cache)
    Image.fromarray(np.full((10, 10), 255, np.uint8), "L").save(root / "0.png")
    os.utime(root / "0.png", ns=(1, 1))  # even with an old modification time
    again = load_dataset(load_source(root, csv), workers=1, cache=cache)
    assert int(again.inputs[0, 0, 0, 0]) == 255
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_bad_images_are_remembered_for_both_policies(tmp_path, monkeypatch):
    root, csv = _folder(tmp_path, bad=True)
    cache = DecodeCache(tmp_path / "cache")
    first = load_dataset(load_source(root, csv), image_size=8, workers=1, on_bad_image="skip", cache=cache)
    _forbid_decoding(monkeypatch)
    second = load_dataset(load_source(root, csv), image_size=8, workers=1, on_bad_image="skip", cache=cache)
    assert [(s.row, s.status) for s in second.skipped] == [(s.row, s.status) for s in first.skipped] == \
        [(12, "not_image")]
    assert (second.inputs == first.inputs).all()
    with pytest.raises(InputError, match=r"labels.csv:14: 'bad.png': not a recognised image"):
        load_dataset(load_source(root, csv), image_size=8, workers=1, cache=cache)


def test_no_cache_writes_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from noiseaudit.cli import app

    root, csv = _folder(tmp_path)
    monkeypatch.setenv("NOISEAUDIT_CACHE_DIR", str(tmp_path / "env-cache"))
    args = ["scan", str(root), str(csv), "--epochs", "1", "--device", "cpu", "--quiet"]
    assert CliRunner().invoke(app, [*args, "-o", str(tmp_path / "a.parquet"), "--no-cache"]).exit_code == 0
    assert not (tmp_path / "env-cache").exists()
    assert CliRunner().invoke(app, [*args, "-o", str(tmp_path / "b.parquet")]).exit_code == 0
    assert len(list((tmp_path / "env-cache").glob("*.npy"))) == 1
    assert CliRunner().invoke(app, [*args, "-o", str(tmp_path / "c.parquet"), "--cache-dir",
                                    str(tmp_path / "mine")]).exit_code == 0
    assert len(list((tmp_path / "mine").glob("*.npy"))) == 1
    assert CliRunner().invoke(app, [*args, "-o", str(tmp_path / "d.parquet")]).exit_code == 0
    # whether a report's pixels came from the cache is on record (a tester could not tell)
    from noiseaudit import read_report

    assert [read_report(tmp_path / f"{n}.parquet")[1]["decode_cache"] for n in "abcd"] == ["off", "miss", "miss",
                                                                                          "hit"]


def test_an_unwritable_cache_warns_once_and_the_scan_goes_on(tmp_path):
    import warnings

    from noiseaudit import scan
    from noiseaudit.errors import NoiseAuditWarning

    root, csv = _folder(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = scan(root, csv, output=tmp_path / "r.parquet", cache_dir=str(blocker / "cache"), epochs=1,
                      device="cpu", workers=1)
    said = [str(w.message) for w in caught if issubclass(w.category, NoiseAuditWarning)]
    assert len(said) == 1 and said[0].startswith(f"cannot write the decode cache in {blocker / 'cache'}"), said
    assert "cache_dir to put it elsewhere, cache=False to skip it" in said[0]
    assert len(report) == 12 and (tmp_path / "r.parquet").is_file()
    assert blocker.read_text() == "a file where the cache folder would go\n"


def test_a_cache_write_that_fails_without_an_errno_says_why(tmp_path):
    """A write refused with an OSError that carries only a message (a library's own) was said as '(OSError)'."""
    import warnings

    from noiseaudit.errors import NoiseAuditWarning

    cache = DecodeCache(str(tmp_path / "cache"))

    def refused():
        raise OSError("quota exceeded for this folder")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache._writing(refused)
    said = [str(w.message) for w in caught if issubclass(w.category, NoiseAuditWarning)]
    assert len(said) == 1 and "(quota exceeded for this folder); going on without it" in said[0], said
    assert not cache.writable
