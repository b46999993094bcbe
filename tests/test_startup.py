"""Commands that train nothing start without PyTorch (issue 18, item 1).

The start-up time itself is measured by bench/startup.py, not here: these tests check the cause,
which heavy libraries each command imports, in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_cli_output import synthetic_report

HEAVY = ("torch", "torchvision", "sklearn", "scipy", "matplotlib", "pandas")
RUN_CLI = """
import sys
from typer.testing import CliRunner
from noiseaudit.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == {code}, result.output
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def heavy_imports(*args: str, code: int = 0) -> set[str]:
    """The heavy libraries a fresh interpreter holds after running ``noiseaudit ARGS`` (which exits with ``code``)."""
    proc = subprocess.run([sys.executable, "-c", RUN_CLI.format(heavy=HEAVY, code=code), *map(str, args)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return set(filter(None, proc.stdout.strip().split(",")))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("startup")
    report = synthetic_report(tmp / "r.parquet")
    pd.DataFrame({"path": [f"img_{i:03d}.png" for i in range(40)], "label": ["Bag"] * 40}).to_csv(
        tmp / "labels.csv", index=False)
    pd.DataFrame({"path": ["img_000.png"], "verdict": ["drop"]}).to_csv(tmp / "review.csv", index=False)
    return {"report": report, "labels": tmp / "labels.csv", "review": tmp / "review.csv", "dir": tmp}


def test_help_imports_nothing_heavy():
    assert heavy_imports("--help") == set()
    assert heavy_imports("scan", "--help") == set()


def test_show_reads_the_report_without_pandas(files):
    assert heavy_imports("show", files["report"]) == set()
    assert heavy_imports("show", files["report"], "--class", "bag") == set()
    assert heavy_imports("show", files["report"], "--json") == set()
    assert heavy_imports("show", files["report"], "--by", "pair") == set()


def test_export_and_apply_import_neither_torch_nor_sklearn(files):
    assert heavy_imports("export", files["report"], "-o", files["dir"] / "sheet.csv", "--top", "5") == {"pandas"}
    assert heavy_imports("apply", files["labels"], files["review"], "-o", files["dir"] / "fixed.csv") == {"pandas"}


def test_scan_refuses_a_wrong_option_or_a_mistyped_path_before_loading_torch(files):
    """The import of torch takes seconds, pandas one; an option out of range or a path that is not there is said
    before either."""
    labels, missing = files["labels"], files["dir"] / "nope.csv"
    assert set() == heavy_imports("scan", files["dir"], labels, "--epochs", "0", code=2)
    assert set() == heavy_imports("scan", files["dir"], labels, "--backbone", "vit", code=2)
    assert set() == heavy_imports("scan", "--features", labels, labels, "--model", "small-cnn", code=2)
    assert set() == heavy_imports("scan", files["dir"], missing, code=2)
    assert set() == heavy_imports("scan", files["dir"] / "nope", labels, code=2)
    assert set() == heavy_imports("scan", labels, code=2)  # a file where the image folder goes
    assert set() == heavy_imports("scan", files["dir"], labels, "--trusted", missing, code=2)
    assert set() == heavy_imports("scan", "--features", missing, labels, code=2)


def test_evaluate_needs_sklearn_for_its_metrics_but_not_torch(files):
    assert heavy_imports("evaluate", files["report"]) == {"sklearn", "scipy", "pandas"}


def test_the_public_names_still_import_and_scan_is_the_function():
    code = ("import sys, noiseaudit; assert 'torch' not in sys.modules; "
            "from noiseaudit import (scan, scan_features, ScanConfig, read_report, write_report, "
            "detection_metrics, ranking_metrics, InputError, __version__); "
            "import noiseaudit.scan; assert callable(noiseaudit.scan) and noiseaudit.scan is scan; "
            "from noiseaudit.scan import scan_features as f; assert f is scan_features; "
            "import noiseaudit.evaluate; from noiseaudit import evaluate; "
            "assert callable(noiseaudit.evaluate) and noiseaudit.evaluate is evaluate; "
            "assert all(callable(getattr(noiseaudit, n)) for n in noiseaudit.__all__ if n != '__version__'); "
            "assert set(noiseaudit.__all__) <= set(dir(noiseaudit)); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "ok", proc.stderr
