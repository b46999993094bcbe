"""Checkpoint and resume, signals, kill -9, non-finite recovery and determinism (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from noiseaudit import read_report, scan
from noiseaudit.checkpoint import Interrupted
from noiseaudit.errors import NoiseAuditError, NoiseAuditWarning, TrainingFailed, UsageError
from noiseaudit.train import TrainConfig, train

OPTIONS = dict(epochs=4, seed=3, device="cpu", workers=1, label_col="digit")
STEPS_PER_EPOCH = 15  # 1,797 digits / batch 128


@pytest.fixture(scope="module")
def uninterrupted(noisy_digits, tmp_path_factory) -> pd.DataFrame:
    images, csv = noisy_digits
    return scan(images, csv, output=tmp_path_factory.mktemp("full") / "r.parquet", **OPTIONS)


def assert_same_report(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


def _signal_at(step: int, signum: int):
    def on_progress(stage: str, done: int, total: int, info: dict) -> None:
        if stage == "train" and done == step:
            os.kill(os.getpid(), signum)
    return on_progress


@pytest.mark.parametrize("signum, step", [(signal.SIGTERM, 23), (signal.SIGINT, 45)])
def test_signal_checkpoints_mid_epoch_and_resume_matches(noisy_digits, tmp_path, uninterrupted, signum, step):
    images, csv = noisy_digits
    out = tmp_path / "r.parquet"
    with pytest.raises(Interrupted) as info:
        scan(images, csv, output=out, on_progress=_signal_at(step, signum), **OPTIONS)
    assert info.value.exit_code == 128 + signum and "run again with resume=True" in str(info.value)
    assert not out.exists() and (tmp_path / "r.parquet.ckpt" / "checkpoint.pt").is_file()
    resumed = scan(images, csv, output=out, resume=True, **OPTIONS)
    assert_same_report(resumed, uninterrupted)
    assert_same_report(read_report(out)[0], uninterrupted)
    assert not (tmp_path / "r.parquet.ckpt").exists()  # removed once the report is safe


def test_an_interrupt_after_training_says_resume_writes_the_report(noisy_digits, tmp_path, uninterrupted,
                                                                    monkeypatch):
    """SIGTERM once training was over said only 'interrupted': the trained run was kept, unmentioned."""
    scan_module = sys.modules["noiseaudit.scan"]  # the attribute noiseaudit.scan is the function
    images, csv = noisy_digits
    out = tmp_path / "r.parquet"
    ranking = scan_module._report

    def stopped(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scan_module, "_report", stopped)
    with pytest.raises(Interrupted) as info:
        scan(images, csv, output=out, **OPTIONS)
    kept = tmp_path / "r.parquet.ckpt" / "checkpoint.pt"
    assert str(info.value) == (f"interrupted after training; the trained run is kept in {kept}: run again with "
                               "resume=True to write the report") and info.value.exit_code == 130
    monkeypatch.setattr(scan_module, "_report", ranking)
    assert_same_report(scan(images, csv, output=out, resume=True, **OPTIONS), uninterrupted)


def test_resume_refuses_a_changed_config_or_dataset(noisy_digits, tmp_path):
    images, csv = noisy_digits
    out = tmp_path / "r.parquet"
    with pytest.raises(Interrupted):
        scan(images, csv, output=out, on_progress=_signal_at(20, signal.SIGTERM), **OPTIONS)
    # the checkpoint's values are named, so that a resume that forgot an option can be retyped
    with pytest.raises(UsageError, match=r"changed: lr\); resume with lr=0.05, or run without resume=True"):
        scan(images, csv, output=out, resume=True, **{**OPTIONS, "lr": 0.01})
    with pytest.raises(UsageError, match=r"changed: epochs, lr\); resume with epochs=4 lr=0.05, or run without"):
        scan(images, csv, output=out, resume=True, **{**OPTIONS, "lr": 0.01, "epochs": 6})
    with pytest.raises(UsageError, match=r"changed: balance_classes\)"):  # off: not in the fingerprint, on: there
        scan(images, csv, output=out, resume=True, **{**OPTIONS, "balance_classes": True})
    changed = tmp_path / "changed.csv"
    table = pd.read_csv(csv)
    table.loc[0, "digit"] = (table.loc[0, "digit"] + 1) % 10
    table.to_csv(changed, index=False)
    # which part changed is said (it was "the dataset" for a changed label and a changed image size alike)
    with pytest.raises(UsageError, match=r"changed: the dataset's labels\); run without"):  # no option brings it back
        scan(images, changed, output=out, resume=True, **OPTIONS)
    with pytest.raises(UsageError, match=r"changed: the dataset's inputs \(pixels, activations or vectors\)\)"):
        scan(images, csv, output=out, resume=True, **{**OPTIONS, "image_size": 12})
    with pytest.raises(UsageError, match="no checkpoint"):
        scan(images, csv, output=tmp_path / "other.parquet", resume=True, **OPTIONS)
    with pytest.warns(NoiseAuditWarning, match="will be replaced"):
        scan(images, csv, output=out, **{**OPTIONS, "epochs": 1})


def test_same_seed_gives_an_identical_report(noisy_digits, uninterrupted):
    images, csv = noisy_digits
    assert_same_report(scan(images, csv, **OPTIONS), uninterrupted)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from noiseaudit import scan
    images, csv, out, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    def on_progress(stage, done, total, info):
        if stage == "train" and done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    scan(images, csv, output=out, on_progress=on_progress, epochs=4, seed=3, device="cpu", workers=1,
         label_col="digit")
""")


def kill9_trial(images: Path, csv: Path, tmp_path: Path, kill_at: int) -> pd.DataFrame:
    """Run a scan in a child that SIGKILLs itself at global step ``kill_at``, then resume it here."""
    out = tmp_path / f"kill{kill_at}.parquet"
    child = subprocess.run([sys.executable, "-c", KILLER, str(images), str(csv), str(out), str(kill_at)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert not out.exists()
    # the state before the first step is checkpointed too (the roll-back point of a non-finite first epoch)
    assert (tmp_path / f"kill{kill_at}.parquet.ckpt" / "checkpoint.pt").is_file()
    return scan(images, csv, output=out, resume=True, **OPTIONS)


# Ten distinct random global steps over the 4 epochs; those in the first epoch resume from the start.
KILL_STEPS = [int(s) for s in np.random.default_rng(2026).choice(np.arange(1, 4 * STEPS_PER_EPOCH), 10, replace=False)]


@pytest.mark.parametrize("kill_at", [pytest.param(s, marks=[] if i == 0 else pytest.mark.slow)
                                     for i, s in enumerate(KILL_STEPS)])
def test_kill9_at_a_random_batch_then_resume_equals_uninterrupted(noisy_digits, tmp_path, uninterrupted, kill_at):
    images, csv = noisy_digits
    assert_same_report(kill9_trial(images, csv, tmp_path, kill_at), uninterrupted)


def test_cli_resume_without_checkpoint_and_custom_checkpoint_dir(noisy_digits, tmp_path):
    from typer.testing import CliRunner

    from noiseaudit.cli import app

    images, csv = noisy_digits
    base = [str(images), str(csv), "--label-col", "digit", "--device", "cpu", "--epochs", "1", "--quiet"]
    reads = []  # the refusal comes before any image is read, and leaves no folder (it left one holding a lock)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.modules["noiseaudit.scan"], "load_source", lambda *a, **k: reads.append(1))
        res = CliRunner().invoke(app, ["scan", *base, "-o", str(tmp_path / "r.parquet"), "--resume"])
    assert res.exit_code == 2 and "no checkpoint to resume from" in res.output
    assert reads == [] and list(tmp_path.iterdir()) == []
    res = CliRunner().invoke(app, ["scan", *base, "-o", str(tmp_path / "r.parquet"),
                                   "--checkpoint-dir", str(tmp_path / "ck")])
    assert res.exit_code == 0 and (tmp_path / "r.parquet").is_file() and not (tmp_path / "ck").exists()


class _Exploding(torch.nn.Module):
    """A small net whose features become NaN during one chosen epoch, once."""

    def __init__(self, bad_epoch: int, steps: int):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 10)
        self.calls, self.bad_calls = 0, range(bad_epoch * steps, bad_epoch * steps + 3)
        self.exploded = False

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if self.training:
            if self.calls in self.bad_calls and not self.exploded:
                h = h * float("nan")
                self.exploded = self.calls == self.bad_calls[-1]
            self.calls += 1
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _digits_dataset():
    from sklearn.datasets import load_digits

    from noiseaudit.data.dataset import SampleData

    d = load_digits()
    images = torch.from_numpy((d.images * 255 / 16).round().astype(np.uint8)[:, None])
    return SampleData(images, torch.from_numpy(d.target.astype(np.int64)), list(range(10)), 8)


def test_non_finite_epoch_rolls_back_and_lowers_the_rate():
    data = _digits_dataset()
    model = _Exploding(bad_epoch=1, steps=STEPS_PER_EPOCH)
    result = train(data, model, TrainConfig(epochs=3), torch.device("cpu"), torch.Generator().manual_seed(0))
    assert [r["epoch"] for r in result.recoveries] == [2] and result.recoveries[0]["new_lr"] == pytest.approx(0.025)
    assert len(result.epoch_losses) == 3 and np.isfinite(result.epoch_losses).all()
    for name in ("learned_lr", "loss", "margin"):
        assert np.isfinite(result.signals[name]).all()
    assert (result.signals["learned_lr"] >= 0.01 - 1e-6).all() and (result.signals["learned_lr"] <= 100).all()


def test_persistent_divergence_is_a_clear_error():
    data = _digits_dataset()
    with pytest.raises(NoiseAuditError, match="diverged at epoch 1.*lower lr"):
        train(data, _Exploding(bad_epoch=0, steps=10**9), TrainConfig(epochs=2, lr=float("inf")),
              torch.device("cpu"), torch.Generator().manual_seed(0))


class _NanWhenPredicting(_Exploding):
    """Trains with finite losses, but its final predictions are NaN (a last step or an average gone bad)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out if self.training else out * float("nan")


def test_non_finite_final_predictions_are_a_clear_error():
    with pytest.raises(TrainingFailed, match="final model's predictions are not finite; try a lower lr"):
        train(_digits_dataset(), _NanWhenPredicting(bad_epoch=10**6, steps=1), TrainConfig(epochs=1),
              torch.device("cpu"), torch.Generator().manual_seed(0))


def test_a_scan_that_diverges_leaves_no_checkpoint_behind(noisy_digits, tmp_path, monkeypatch):
    """Epoch 1 trains and is checkpointed; from epoch 2 every step is NaN, so the restarts give up. Resuming would
    only meet the same failure, so the checkpoint goes (an interrupted run keeps its checkpoint: tests above)."""
    import importlib

    scan_module = importlib.import_module("noiseaudit.scan")  # the module; noiseaudit.scan is also the function

    class DivergesFromEpoch2(_Exploding):
        def __init__(self, *_: object) -> None:
            super().__init__(bad_epoch=1, steps=STEPS_PER_EPOCH)
            self.bad_calls = range(STEPS_PER_EPOCH, 10**12)

    saved = []
    real_save = scan_module.Checkpointer.save
    monkeypatch.setattr(scan_module, "build_model", lambda *a, **k: DivergesFromEpoch2())
    monkeypatch.setattr(scan_module.Checkpointer, "save",
                        lambda self, *a, **k: (saved.append(self.path), real_save(self, *a, **k))[1])
    images, csv = noisy_digits
    out = tmp_path / "r.parquet"
    with pytest.raises(TrainingFailed, match="diverged at epoch 2"):
        scan(images, csv, output=out, **OPTIONS)
    assert saved and not out.exists() and not (tmp_path / "r.parquet.ckpt").exists()


def test_a_collapsed_learned_rate_model_is_a_clear_error():
    """Too large a rate step drives the rates to their bounds and the model to a constant while the loss stays
    finite (measured: digits, 40% symmetric noise, lr 0.02, hyper-lr 0.5 give 10% accuracy); the trainer refuses
    to hand that model's ranking on."""
    from noiseaudit.models import build_model, default_model
    from noiseaudit.noise import inject_symmetric
    from noiseaudit.runtime import seed_everything

    data = _digits_dataset()
    data.targets = torch.from_numpy(inject_symmetric(data.targets.numpy(), 0.4, 10, seed=0).labels)
    gen = seed_everything(0)
    model = build_model(default_model(1, 8), 1, 8, 10)
    collapsed = r"training collapsed: the model agrees with \d+\.\d% .* lower hyper_lr"
    with pytest.raises(NoiseAuditError, match=collapsed):
        train(data, model, TrainConfig(epochs=20, lr=0.02, hyper_lr=0.5), torch.device("cpu"), gen)


def test_the_collapse_check_passes_a_better_model_and_rates_inside_their_bounds():
    from noiseaudit.optim import PerSampleRate
    from noiseaudit.train import refuse_collapse

    targets = np.repeat(np.arange(4), 25)
    rates = PerSampleRate(100, 4)
    constant = np.zeros(100, dtype=np.int64)
    refuse_collapse(constant, targets, rates)  # no better than a guess, but the rates are where they started
    rates.log_rates[:20] = rates.log_max
    refuse_collapse(np.where(np.arange(100) % 10 < 4, targets, 0), targets, rates)  # 55% against 25%: fine
    with pytest.raises(NoiseAuditError, match=r"agrees with 25\.0% .* most common one \(25\.0%\), and 20% of"):
        refuse_collapse(constant, targets, rates)


def test_a_refused_resume_spells_the_checkpoints_options_as_the_command_line_does():
    from noiseaudit.checkpoint import _saved_options
    from noiseaudit.errors import command_line

    saved = {"lr": 0.1, "augment": False, "layerwise": False, "dataset": "abc", "seed": 0}
    with command_line():
        assert _saved_options(saved, ["augment", "layerwise", "lr"]) == \
            "resume with --no-augment --no-layerwise --lr 0.1, or "
        assert _saved_options(saved, ["dataset", "lr"]) == ""  # a changed dataset: no option brings it back
    assert _saved_options(saved, ["seed"]) == "resume with seed=0, or "


def test_a_disk_that_fills_while_torch_writes_is_an_oserror(tmp_path, monkeypatch):
    """On a real full disk torch's zip writer turned the file's ENOSPC into a RuntimeError ("unexpected pos"), so a
    checkpoint or --save-model on a full disk ended in a traceback and exit 1 (a tester's tmpfs); the fake disk of
    the older test failed every write, which torch passed on as it was."""
    import builtins
    import errno

    from noiseaudit import checkpoint

    class FillsUp:
        def __init__(self, fh):
            self.fh, self.room = fh, 2000

        def write(self, data):
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.room -= len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    real_open = builtins.open
    monkeypatch.setattr(checkpoint, "open", lambda *a, **k: FillsUp(real_open(*a, **k)), raising=False)
    with pytest.raises(OSError) as info:
        checkpoint.save_tensors({"w": torch.zeros(4096)}, tmp_path / "c.pt")
    assert info.value.errno == errno.ENOSPC
