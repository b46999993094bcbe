"""noiseaudit in a pipeline and a CI job (a fourth first-hour test): exit codes when stdout goes away, an empty
review, SIGTERM outside the training loop, piped tables, the report's metadata.

Each test names what it did before the fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_cli_output import synthetic_report
from test_errors import invoke, scan_args

from noiseaudit import apply_review, read_report, scan
from noiseaudit.checkpoint import Interrupted


def run_cli(*args: object, stdout: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "noiseaudit", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, check=False)


def gate_args(noisy_digits, out: Path) -> list[str]:
    images, csv = noisy_digits
    return scan_args(images, csv, out, "--label-col", "digit", "--fail-above", "0.01")


def test_a_gate_keeps_its_exit_code_and_reason_when_the_reader_of_stdout_is_gone(noisy_digits, tmp_path):
    """`scan --fail-above ... | head` exited 141 with nothing on stderr: a CI step read 'broken', not 'too noisy'."""
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line
    try:
        proc = run_cli(*gate_args(noisy_digits, tmp_path / "r.parquet"), stdout=write)
    finally:
        os.close(write)
    assert proc.returncode == 1, proc.stderr
    assert "above --fail-above 0.01: exit 1" in proc.stderr and (tmp_path / "r.parquet").is_file()
    read, write = os.pipe()
    os.close(read)
    try:  # no gate: the results were cut short, as a shell reports it
        proc = run_cli(*gate_args(noisy_digits, tmp_path / "s.parquet")[:-2], stdout=write)
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_stdout_is_named_and_the_report_said_to_be_written(noisy_digits, tmp_path):
    """A stdout on a full disk gave 'error: No space left on device', naming neither stdout nor the report."""
    out = tmp_path / "r.parquet"
    with open("/dev/full", "w") as full:
        proc = run_cli(*gate_args(noisy_digits, out)[:-2], stdout=full.fileno())
    assert proc.returncode == 2 and out.is_file()
    assert proc.stderr == f"error: stdout: No space left on device (the report is written to {out} all the same)\n"


def test_an_empty_review_sheet_changes_nothing(tmp_path):
    """export wrote a sheet of nothing when nothing was flagged, and apply refused it ('header but no rows';
    for JSON '[]', 'no path column'): the scan-export-apply loop broke on clean data."""
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na.png,x\nb.png,y\n")
    (tmp_path / "empty.csv").write_text("path,given_label,suggested_label,verdict,new_label\n")
    (tmp_path / "empty.json").write_text("[]\n")
    for sheet in ("empty.csv", "empty.json"):
        result = apply_review(labels, tmp_path / sheet)
        assert (result.relabeled, result.dropped, result.kept, result.edits) == (0, 0, 0, {})
        out = tmp_path / f"fixed-{sheet}.csv"
        cli = invoke("apply", labels, tmp_path / sheet, "-o", out)
        assert cli.exit_code == 0, cli.output
        assert out.read_bytes() == labels.read_bytes()


def test_sigterm_before_training_ends_as_ctrl_c_does(noisy_digits, tmp_path, monkeypatch):
    """SIGTERM between decoding and the first training step killed the scan silently (exit 143, no message) and
    left OUT.ckpt/ with its lock behind."""
    import importlib

    scan_module = importlib.import_module("noiseaudit.scan")  # the module: noiseaudit.scan is the function
    real_train = scan_module.train

    def terminated_first(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(scan_module, "train", terminated_first)
    def uncaught(_signum, _frame):  # the command did not take SIGTERM: fail this test, not the whole run
        raise AssertionError("SIGTERM reached the test runner")

    previous = signal.signal(signal.SIGTERM, uncaught)
    images, csv = noisy_digits
    out = tmp_path / "r.parquet"
    try:
        result = invoke(*scan_args(images, csv, out, "--label-col", "digit"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143 and result.stderr == "interrupted\n"
    assert not out.exists() and not (tmp_path / "r.parquet.ckpt").exists()


def test_the_resume_advice_of_an_overwriting_scan_says_overwrite(noisy_digits, tmp_path):
    """It said 'run again with --resume', which then failed: the output exists; pass --overwrite."""
    images, csv = noisy_digits
    out = tmp_path / "r.parquet"
    out.write_bytes(b"an older report")

    def stop_at_step_3(stage: str, done: int, total: int, info: dict) -> None:
        if stage == "train" and done == 3:
            os.kill(os.getpid(), signal.SIGINT)

    options = dict(epochs=2, seed=0, device="cpu", workers=1, label_col="digit", overwrite=True)
    with pytest.raises(Interrupted, match=r"; run again with resume=True overwrite=True to continue$"):
        scan(images, csv, output=out, on_progress=stop_at_step_3, **options)
    scan(images, csv, output=out, resume=True, **options)
    assert len(read_report(out)[0]) == 1797


def test_piped_tables_keep_each_row_whole(tmp_path):
    """Piped (160 columns), a long path was cut to 'datasets/customer_x/…/fmn…' on every row."""
    report = synthetic_report(tmp_path / "r.parquet")
    frame, meta = read_report(report)
    long = "datasets/customer_x/2026/a_very_long_subfolder_name/another_level_of_folders/yet_another/"
    frame["path"] = long + frame["path"]
    frame.attrs = {}
    from noiseaudit import write_report

    write_report(frame, meta, tmp_path / "long.parquet")
    result = invoke("show", tmp_path / "long.parquet", "--top", "3")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if long in line]
    assert len(rows) == 3 and all(p in result.stdout for p in frame.sort_values("rank")["path"].head(3))


def test_the_report_holds_its_metadata_once_and_where_its_paths_are_from(noisy_digits, tmp_path, monkeypatch):
    """pyarrow stored the run metadata a second time in its pandas metadata (report.attrs); the config's relative
    paths did not say what they were relative to."""
    images, csv = noisy_digits
    monkeypatch.chdir(images.parent)
    out = tmp_path / "r.parquet"
    scan(images.name, csv.name, output=out, epochs=1, device="cpu", workers=1, label_col="digit")
    pandas_meta = json.loads(pq.read_schema(out).metadata[b"pandas"])
    assert "noiseaudit" not in pandas_meta.get("attributes", {})
    meta = read_report(out)[1]
    assert meta["config"]["images_dir"] == images.name and meta["working_dir"] == str(images.parent)
    assert isinstance(read_report(out)[0], pd.DataFrame)
