"""A 2-process torchrun scan (gloo, CPU) ranks like one process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from scipy.stats import spearmanr

from noiseaudit import read_report, scan


def test_two_process_torchrun_matches_one_process(noisy_digits, tmp_path):
    images, csv = noisy_digits
    out = tmp_path / "ddp.parquet"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "noiseaudit.cli", "scan", str(images), str(csv), "--label-col", "digit", "-o", str(out),
           "--epochs", "10", "--device", "cpu", "--seed", "0", "--quiet", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('"n_samples"') == 1  # rank 0 alone reports
    ddp, meta = read_report(out)
    assert meta["world_size"] == 2
    single = scan(images, csv, label_col="digit", epochs=10, device="cpu", seed=0)
    rho = spearmanr(single["learned_lr"], ddp["learned_lr"]).statistic
    assert rho >= 0.95, rho
    truth = ddp["given_label"] != ddp["original_label"]
    assert (ddp["is_suspect"] & truth).sum() >= 0.9 * truth.sum()


def test_two_process_torchrun_with_mlr_snet_and_layerwise_rates(noisy_digits, tmp_path):
    """Both ranks must step alike: the schedule net reads the loss averaged over the ranks, and the
    layer multipliers come from the all-reduced gradients; the result then matches one process."""
    images, csv = noisy_digits
    out = tmp_path / "ddp.parquet"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    options = ["--epochs", "6", "--device", "cpu", "--seed", "1", "--schedule", "mlr-snet", "--layerwise"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "noiseaudit.cli", "scan", str(images), str(csv), "--label-col", "digit", "-o", str(out),
           "--quiet", *options]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    ddp, meta = read_report(out)
    assert meta["world_size"] == 2 and meta["config"]["schedule"] == "mlr-snet" and meta["layer_multipliers"]
    single = scan(images, csv, label_col="digit", epochs=6, device="cpu", seed=1, schedule="mlr-snet", layerwise=True)
    multipliers = single.attrs["noiseaudit"]["layer_multipliers"]
    assert meta["layer_multipliers"] == pytest.approx(multipliers, rel=0.05)
    assert spearmanr(single["learned_lr"], ddp["learned_lr"]).statistic >= 0.95


@pytest.mark.parametrize("method", ["plain", "dba"])
def test_two_process_torchrun_without_learned_rates(noisy_digits, tmp_path, method):
    """--method plain and dba crashed on every rank under torchrun ('Distributed' object has no attribute
    '_epoch_start'): the epoch's start was recorded only where there were learned rates."""
    images, csv = noisy_digits
    out = tmp_path / f"{method}.parquet"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "noiseaudit.cli", "scan", str(images), str(csv), "--label-col", "digit", "-o", str(out),
           "--epochs", "4", "--device", "cpu", "--seed", "0", "--quiet", "--method", method]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    ddp, meta = read_report(out)
    assert meta["world_size"] == 2 and meta["config"]["method"] == method
    truth = ddp["given_label"] != ddp["original_label"]
    assert (ddp["is_suspect"] & truth).sum() >= 0.5 * truth.sum()  # it trained: most wrong labels flagged


def test_a_checkpoint_folder_under_torchrun_is_refused_not_ignored(tmp_path, monkeypatch):
    """--checkpoint-dir under torchrun wrote nothing there, before or after an interrupt, and said nothing."""
    import importlib

    from noiseaudit.config import make_config
    from noiseaudit.distributed import Distributed
    from noiseaudit.errors import UsageError

    scan_module = importlib.import_module("noiseaudit.scan")
    monkeypatch.setattr(scan_module, "from_environment", lambda device: Distributed(rank=0, world=2))
    cfg = make_config(images_dir=str(tmp_path), checkpoint_dir=str(tmp_path / "ck"), device="cpu")
    with pytest.raises(UsageError, match=r"^checkpoint_dir: a torchrun scan keeps no checkpoints yet"):
        scan_module._start(cfg, tmp_path / "r.parquet", overwrite=False)


def test_an_interrupted_torchrun_scan_says_it_kept_no_checkpoint(monkeypatch, capsys):
    """It said only 'interrupted' (on every rank), where a single process says where its checkpoint is."""
    import typer

    from noiseaudit.cli.console import exits_on_errors

    @exits_on_errors
    def stopped():
        raise KeyboardInterrupt

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(typer.Exit) as stop:
        stopped()
    assert stop.value.exit_code == 130
    assert capsys.readouterr().err == "interrupted; a torchrun scan keeps no checkpoint: run it again from the start\n"
    monkeypatch.setenv("RANK", "1")  # torchrun stops the other ranks when one fails: rank 0 alone speaks
    with pytest.raises(typer.Exit) as stop:
        stopped()
    assert stop.value.exit_code == 130 and capsys.readouterr().err == ""
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(typer.Exit):
        stopped()
    assert capsys.readouterr().err == "interrupted\n"


def test_an_input_error_under_torchrun_is_said_once_by_rank_0(monkeypatch, capsys):
    """Every rank reads the same inputs, so every rank printed the same error line."""
    import typer

    from noiseaudit.cli.console import exits_on_errors
    from noiseaudit.errors import InputError

    @exits_on_errors
    def refused():
        raise InputError("need at least two classes", path="labels.csv")

    job = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    for name, value in job.items():
        monkeypatch.setenv(name, value)
    said = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(typer.Exit) as stop:
            refused()
        assert stop.value.exit_code == 2
        said[rank] = capsys.readouterr().err
    assert said == {"0": "error: labels.csv: need at least two classes\n", "1": ""}
    monkeypatch.delenv("MASTER_PORT")  # RANK left in a shell, no torchrun job: the error is said
    with pytest.raises(typer.Exit):
        refused()
    assert capsys.readouterr().err == "error: labels.csv: need at least two classes\n"
