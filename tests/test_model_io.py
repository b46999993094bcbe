"""The trained model as a product: ``scan --save-model``, ``noiseaudit predict`` and ``noiseaudit.load_model``.

On the images (or vectors) a scan trained on, the saved model predicts exactly the scan report's own
``predicted_label`` and probabilities: from scratch (sklearn digits), through the pretrained backbone (its
frozen bottom recomputed from the images, not read from a cache) and on feature vectors (standardised with
the training statistics). Bad input is one ``error:`` line naming the file, exit 2, nothing written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from test_backbone import needs_extra, write_textures
from typer.testing import CliRunner

from noiseaudit import load_model, scan, scan_features
from noiseaudit.cli import app
from noiseaudit.errors import InputError, UsageError
from noiseaudit.model_io import match_channels
from noiseaudit.models import efficientnet as lite0
from noiseaudit.report.io import read_report

SCAN = dict(epochs=2, seed=0, device="cpu", workers=1)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_same_predictions(report: pd.DataFrame, predictions: pd.DataFrame) -> None:
    """Every scored sample of the report has the same predicted label, and its probability to float32 rounding
    (a subset goes through the network in other batches, and a batch's composition moves the last bit)."""
    joined = report.merge(predictions, on="path", suffixes=("", "_pred"), validate="one_to_one")
    assert len(joined) == len(report) == len(predictions)
    assert (joined["predicted_label"] == joined["predicted_label_pred"]).all()
    np.testing.assert_allclose(joined["pred_prob"].to_numpy(), joined["pred_prob_pred"].to_numpy(), rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def digits_model(noisy_digits, tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """A from-scratch scan of the noisy digits through the CLI, with its saved model: (images, csv, report, model)."""
    images, csv = noisy_digits
    tmp = tmp_path_factory.mktemp("digits-model")
    report, model = tmp / "report.parquet", tmp / "model.pt"
    result = invoke("scan", images, csv, "--label-col", "digit", "-o", report, "--save-model", model, "--epochs", 2,
                    "--device", "cpu", "--workers", 1, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"Model written to {model}" in result.stdout
    return images, csv, report, model


def test_scratch_model_predicts_the_scans_own_labels(digits_model, tmp_path):
    images, csv, report_path, model = digits_model
    out = tmp_path / "predictions.parquet"
    result = invoke("predict", model, images, csv, "--label-col", "digit", "-o", out, "--device", "cpu", "--json",
                    "--quiet")
    assert result.exit_code == 0, result.output
    report, _ = read_report(report_path)
    predictions, meta = read_report(out)
    assert_same_predictions(report, predictions)
    assert (predictions["given_label"].to_numpy() == report["given_label"].to_numpy()).all()
    summary = json.loads(result.stdout)
    agree = float((report["predicted_label"] == report["given_label"]).mean())
    assert summary["accuracy"] == pytest.approx(agree) and meta["accuracy"] == pytest.approx(agree)
    assert summary["n_samples"] == len(report) and summary["output"] == str(out)
    assert sum(summary["predicted_counts"].values()) == len(report)
    probs = predictions[[f"prob_{k}" for k in range(10)]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == predictions["predicted_label"].to_numpy()).all()
    # given_prob: the probability of the given label, the report's own on the scan's images
    given = predictions["given_label"].to_numpy()
    np.testing.assert_array_equal(predictions["given_prob"].to_numpy(), probs[np.arange(len(given)), given])
    np.testing.assert_allclose(predictions["given_prob"].to_numpy(), report["given_prob"].to_numpy(),
                               rtol=1e-5, atol=1e-6)
    disagree = predictions[predictions["given_label"] != predictions["predicted_label"]]
    assert summary["n_disagree"] == len(disagree) > 10
    doubted = disagree.sort_values("given_prob", kind="stable")["path"][:10]
    assert [d["path"] for d in summary["most_doubted"]] == list(doubted)
    text = invoke("predict", model, images, csv, "--label-col", "digit", "-o", out, "--overwrite", "--device", "cpu",
                  "--quiet").stdout
    assert f"Given labels the model doubts most ({len(disagree)} disagree" in text
    # the CSV's other columns are carried, as the scan's report carries them (they were left out)
    assert predictions["original_label"].tolist() == report["original_label"].tolist()
    assert predictions["is_noisy"].tolist() == report["is_noisy"].tolist()


def test_predict_carries_the_csvs_other_columns_renaming_clashes(digits_model, tmp_path):
    images, csv, _, model = digits_model
    table = pd.read_csv(csv).head(30).assign(split="val", prob_3="mine", status="ours")
    table.to_csv(tmp_path / "subset.csv", index=False)
    out = tmp_path / "p.parquet"
    result = invoke("predict", model, images, tmp_path / "subset.csv", "--label-col", "digit", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    predictions, _ = read_report(out)
    assert (predictions["split"] == "val").all() and (predictions["input_prob_3"] == "mine").all()
    assert (predictions["input_status"] == "ours").all() and "status" not in predictions  # no --on-bad-image skip
    assert predictions["prob_3"].dtype == np.float32  # the model's own column stays its own


def test_load_model_round_trip_and_unlabelled_inputs(digits_model, tmp_path):
    images, csv, report_path, model = digits_model
    report, meta = read_report(report_path)
    saved = load_model(model)
    assert saved.kind == "images" and saved.classes == list(range(10)) == meta["classes"]
    assert saved.info["model"] == "small-cnn" and saved.info["backbone"] is None
    assert (saved.info["channels"], saved.info["image_size"]) == (1, 8)
    everything = saved.predict(images, device="cpu", cache=False)  # no CSV: every image under the folder
    assert "given_label" not in everything and everything.attrs["noiseaudit"]["accuracy"] is None
    assert "given_prob" not in everything and everything.attrs["noiseaudit"]["n_disagree"] is None
    assert_same_predictions(report, everything)
    listed = tmp_path / "paths.csv"  # a CSV of paths only, in another order, one class or none
    pd.DataFrame({"file": report["path"].iloc[::-7]}).to_csv(listed, index=False)
    some = saved.predict(images, listed, device="cpu")
    assert list(some["path"]) == list(report["path"].iloc[::-7])
    assert_same_predictions(report[report["path"].isin(some["path"])], some)
    one_class = tmp_path / "sevens.csv"
    sevens = report[report["given_label"] == 7]
    sevens[["path", "given_label"]].rename(columns={"given_label": "label"}).to_csv(one_class, index=False)
    seven = saved.predict(images, one_class, device="cpu")
    assert seven.attrs["noiseaudit"]["accuracy"] == pytest.approx(float((sevens["predicted_label"] == 7).mean()))


def test_probabilities_refuses_images_it_would_misread(digits_model):
    """A float image in 0-255 gave a confident one-hot answer, a wrong size a raw matrix-shape error."""
    saved = load_model(digits_model[3])
    images = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    np.testing.assert_allclose(saved.probabilities(images), saved.probabilities(images.float() / 255), rtol=1e-5)
    with pytest.raises(UsageError, match=r"floats reach 2\d\d \(divide by 255, or pass uint8\)"):
        saved.probabilities(images.float())
    with pytest.raises(UsageError, match=r"takes uint8 images \(N, 1, 8, 8\), or floats in \[0, 1\], not "
                                         r"\(2, 1, 16, 16\); predict\(IMAGES_DIR\) reads"):
        saved.probabilities(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))


def test_predict_can_skip_bad_images_and_list_them(digits_model, tmp_path):
    """One corrupt image stopped predict; with --on-bad-image skip it is listed with its status, as a scan does,
    and the rest are predicted as before."""
    images, csv, report_path, model = digits_model
    report, _ = read_report(report_path)
    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    broken = report["path"].iloc[3]
    (folder / broken).write_bytes(b"not an image")
    out = tmp_path / "p.parquet"
    refused = invoke("predict", model, folder, csv, "--label-col", "digit", "-o", out, "--device", "cpu", "--quiet")
    assert refused.exit_code == 2 and broken in refused.stderr and not out.exists()
    result = invoke("predict", model, folder, csv, "--label-col", "digit", "-o", out, "--device", "cpu", "--quiet",
                    "--on-bad-image", "skip")
    assert result.exit_code == 0, result.output
    assert f"Skipped 1 bad image (1 not_image): {broken!r} (not_image); it is in the file" in result.stdout
    predictions, meta = read_report(out)
    assert len(predictions) == len(report) and meta["n_skipped"] == 1
    bad = predictions[predictions["path"] == broken].iloc[0]
    assert bad["status"] == "not_image" and pd.isna(bad["predicted_label"]) and bad["given_label"] == \
        report["given_label"].iloc[3]
    ok = predictions[predictions["status"] == "ok"]
    assert_same_predictions(report[report["path"] != broken], ok.astype({"predicted_label": "int64"}))
    only = tmp_path / "only.csv"  # nothing readable: exit 0 and a file of skipped rows alone (a tester's finding)
    pd.DataFrame({"file": [broken, "ghost.png"]}).to_csv(only, index=False)
    result = invoke("predict", model, folder, only, "-o", tmp_path / "none.parquet", "--device", "cpu", "--quiet",
                    "--on-bad-image", "skip")
    assert result.exit_code == 2 and "only.csv: no readable images" in result.stderr
    assert not (tmp_path / "none.parquet").exists()


def test_a_gray_model_takes_colour_images_and_the_other_way_round():
    rgb = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 3, 6, 6), dtype=np.uint8))
    gray = match_channels(rgb, 1)
    pillow = [np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy(), "RGB").convert("L")) for img in rgb]
    assert gray.shape == (5, 1, 6, 6) and np.abs(gray[:, 0].numpy().astype(int) - np.stack(pillow)).max() <= 1
    assert torch.equal(match_channels(gray, 3), gray.expand(-1, 3, -1, -1))
    assert match_channels(rgb, 3) is rgb


@needs_extra
def test_backbone_model_recomputes_the_frozen_bottom_and_predicts_the_scans_labels(tmp_path):
    csv = write_textures(tmp_path / "textures")
    images, model = tmp_path / "textures" / "images", tmp_path / "backbone.pt"
    report = scan(images, csv, backbone=lite0.NAME, cache_dir=str(tmp_path / "cache"), save_model=str(model),
                  **SCAN)
    saved = load_model(model)
    plan = saved.info["backbone"]
    assert plan["name"] == lite0.NAME and plan["finetune"] == "deep" and plan["views"] == 2
    assert saved.info["description"] == report.attrs["noiseaudit"]["model"]
    trained = set(saved.network.state_dict())
    assert not any(k.startswith("stem") for k in trained)  # the frozen bottom is rebuilt, not stored
    predictions = saved.predict(images, csv, device="cpu", cache=False, workers=1)  # decoded and encoded afresh
    assert_same_predictions(report, predictions)
    assert (predictions["given_label"] == report["given_label"]).all()


@pytest.fixture(scope="module")
def digits_features(tmp_path_factory) -> tuple[Path, Path]:
    """sklearn digits' 64 pixels as raw (unstandardised) features in a .npy, and a labels CSV keyed by id."""
    tmp = tmp_path_factory.mktemp("digits-features")
    d = load_digits()
    np.save(tmp / "x.npy", d.data * 3.0 + 7.0)
    pd.DataFrame({"id": [f"s{i}" for i in range(len(d.target))], "label": d.target}).to_csv(tmp / "labels.csv",
                                                                                           index=False)
    return tmp / "x.npy", tmp / "labels.csv"


def test_features_model_predicts_the_scans_labels_with_the_training_standardisation(digits_features, tmp_path):
    x, csv = digits_features
    model = tmp_path / "features.pt"
    report = scan_features(x, csv, save_model=str(model), **{k: v for k, v in SCAN.items() if k != "workers"})
    out = tmp_path / "predictions.parquet"
    result = invoke("predict", model, "--features", x, csv, "-o", out, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    predictions, _ = read_report(out)
    assert_same_predictions(report, predictions)
    saved = load_model(model)
    assert saved.kind == "features" and saved.info["dim"] == 64 and saved.info["model"] == "mlp"
    first = saved.predict(np.load(x)[:25], device="cpu")  # 25 rows: their own statistics would differ
    assert list(first["path"]) == [str(i) for i in range(25)]
    assert (first["predicted_label"].to_numpy() == report["predicted_label"].to_numpy()[:25]).all()


# ------------------------------------------------------------------------------------------------ errors


def assert_user_error(result, written: Path, *fragments: str) -> None:
    """Exit 2, one ``error: ...`` line on stderr naming what was wrong, nothing on stdout, nothing written."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(f in lines[0] for f in fragments), (fragments, lines[0])
    assert result.stdout == "" and not written.exists()
    assert not list(written.parent.glob(f".{written.name}.*")), "temp file left behind"


@pytest.fixture(scope="module")
def bad_models(digits_model, digits_features, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bad-models")
    model = digits_model[3]
    files = {"text": tmp / "text.pt", "truncated": tmp / "truncated.pt", "foreign": tmp / "foreign.pt",
             "features": tmp / "features.pt"}
    files["text"].write_text("not a model\n")
    files["truncated"].write_bytes(model.read_bytes()[:4000])
    torch.save({"weights": torch.zeros(3)}, files["foreign"])
    scan_features(digits_features[0], digits_features[1], save_model=str(files["features"]), epochs=1,
                  device="cpu")
    return files


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "foreign"])
def test_a_missing_or_corrupt_model_file_is_named(kind, digits_model, bad_models, tmp_path):
    images = digits_model[0]
    model = tmp_path / "missing.pt" if kind == "missing" else bad_models[kind]
    out = tmp_path / "p.parquet"
    expected = "model file not found" if kind == "missing" else "not a noiseaudit model file"
    assert_user_error(invoke("predict", model, images, "-o", out, "--device", "cpu"), out, str(model), expected)
    if kind == "missing":  # named before an output that exists, as scan names its inputs first
        out.write_bytes(b"an older prediction")
        result = invoke("predict", model, images, "-o", out, "--device", "cpu")
        assert result.exit_code == 2 and result.stderr == f"error: {model}: model file not found\n"


def test_inputs_that_do_not_fit_the_model_are_refused(digits_model, digits_features, bad_models, tmp_path):
    images, csv, _, model = digits_model
    out = tmp_path / "p.parquet"
    x, labels = digits_features
    assert_user_error(invoke("predict", model, "--features", x, "-o", out), out, str(model), "image folder")
    assert_user_error(invoke("predict", bad_models["features"], images, "-o", out), out, "feature vectors")
    assert_user_error(invoke("predict", model, csv, "-o", out), out, str(model), f"{csv} is a file",
                      "IMAGES_DIR [LABELS_CSV]")
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, np.load(x)[:, :10])
    assert_user_error(invoke("predict", bad_models["features"], "--features", narrow, "-o", out), out, str(narrow),
                      "10 columns", "64")
    unknown = tmp_path / "zebra.csv"
    table = pd.read_csv(csv, dtype=str).head(5)
    table.loc[3, "digit"] = "zebra"
    table.to_csv(unknown, index=False)
    assert_user_error(invoke("predict", model, images, unknown, "--label-col", "digit", "-o", out), out,
                      f"{unknown}:5", "'zebra' is not a class of the model")
    with pytest.raises(UsageError, match="image folder"):
        load_model(model).predict(np.zeros((3, 64)))
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nothing.pt")


def test_existing_outputs_are_kept_without_overwrite(digits_model, tmp_path):
    images, csv, _, model = digits_model
    out = tmp_path / "p.parquet"
    out.write_text("keep me")
    result = invoke("predict", model, images, "-o", out)
    assert result.exit_code == 2 and "--overwrite" in result.stderr and out.read_text() == "keep me"
    taken = tmp_path / "taken.pt"
    taken.write_text("keep me too")
    report = tmp_path / "r.parquet"
    result = invoke("scan", images, csv, "--label-col", "digit", "-o", report, "--save-model", taken, "--epochs", 1,
                    "--device", "cpu", "--quiet")
    assert result.exit_code == 2 and str(taken) in result.stderr and "--overwrite" in result.stderr
    assert taken.read_text() == "keep me too" and not report.exists()  # refused before training
    result = invoke("scan", images, csv, "--label-col", "digit", "-o", report, "--save-model", f"{report}.ckpt",
                    "--epochs", 1, "--device", "cpu", "--quiet")  # trained, then met its own checkpoint folder
    assert result.exit_code == 2 and not report.exists() and not Path(f"{report}.ckpt").exists()
    assert result.stderr == f"error: {report}.ckpt: --save-model names the folder this scan keeps its checkpoint in\n"


def test_predict_help_starts_without_torch():
    from test_startup import heavy_imports

    assert heavy_imports("predict", "--help") == set()


def test_no_command_writes_over_its_own_inputs_even_with_overwrite(digits_model, tmp_path):
    """predict -o labels.csv --overwrite turned the labels into Parquet, predict -o model.pt the model; export and
    html -o REPORT --overwrite replaced the report; scan -o images/x.png --overwrite wrote over a training image."""
    import shutil

    images, csv, report, model = (Path(shutil.copytree(p, tmp_path / p.name)) if p.is_dir() else
                                  Path(shutil.copy(p, tmp_path / p.name)) for p in digits_model)
    image, model_again = images / "d0000.png", tmp_path / "." / model.name
    before = {p: p.read_bytes() for p in (csv, report, model, image)}
    cases = [  # the command, the path its error names, and what it says that path is
        (["predict", model, images, csv, "-o", csv], csv, "--output names the labels CSV"),
        (["predict", model, images, "-o", model_again], model_again, "--output names the model file"),
        (["predict", model, images, "-o", image], image, "--output names an image under the image folder"),
        (["export", report, "-o", report], report, "--output names the report"),
        (["html", report, "-o", report], report, "--output names the report"),
        (["inject", csv, "-o", csv, "--rate", "0.1"], csv, "--output names the labels CSV"),
        (["scan", images, csv, "-o", image, "--label-col", "digit"], image,
         "--output names an image under the image folder"),
        (["scan", images, csv, "-o", tmp_path / "r.parquet", "--save-model", csv, "--label-col", "digit"], csv,
         "--save-model names the labels CSV"),
    ]
    for args, named, message in cases:
        result = invoke(*args, "--overwrite")
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.strip() == f"error: {named}: {message}, an input of this command"
    assert {p: p.read_bytes() for p in before} == before


def test_predict_on_a_class_folder_tree_takes_the_folders_as_labels(digits_model, tmp_path):
    """A held-out split laid out as ImageFolder (val/3/x.png) was predicted unlabelled: no accuracy, no
    given_label."""
    images, csv, _, model = digits_model
    table = pd.read_csv(csv).head(60)
    tree = tmp_path / "val"
    for name, digit in zip(table["file"], table["original_label"]):
        (tree / str(digit)).mkdir(parents=True, exist_ok=True)
        (tree / str(digit) / name).write_bytes((images / name).read_bytes())
    result = invoke("predict", model, tree, "-o", tmp_path / "p.parquet", "--json", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    frame = read_report(tmp_path / "p.parquet")[0]
    truth = dict(zip(table["file"], table["original_label"]))
    assert [truth[p.split("/")[1]] for p in frame["path"]] == frame["given_label"].tolist()
    agree = (frame["given_label"] == frame["predicted_label"]).mean()
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(agree)
    (tree / "empty").mkdir()  # a folder without an image is no class, nor a stray: it cost every label
    result = invoke("predict", model, tree, "-o", tmp_path / "e.parquet", "--device", "cpu", "--quiet")
    assert result.exit_code == 0 and "given_label" in read_report(tmp_path / "e.parquet")[0].columns
    assert "1 class folder(s) without an image, so not classes: 'empty'" in result.stderr
    (tree / "extra").mkdir()  # a folder that is not a class: every image, unlabelled, as before; now said
    (tree / "extra" / "x.png").write_bytes((images / table["file"][0]).read_bytes())
    result = invoke("predict", model, tree, "-o", tmp_path / "q.parquet", "--device", "cpu", "--quiet", "--json")
    assert result.exit_code == 0 and "given_label" not in read_report(tmp_path / "q.parquet")[0].columns
    assert not {"accuracy", "n_disagree"} & set(json.loads(result.stdout))  # left out, not null, as scan's
    assert result.stderr == (f"warning: {tree}: 1 folder not named as a class of the model ('extra'), so the class "
                             "folders give no labels: every image is predicted without one; move those folders out "
                             "to get the accuracy\n")


def test_class_folders_named_in_another_unicode_form_are_the_models_classes(tmp_path):
    """A tree copied from a Mac (decomposed accents) against a model whose class is written composed lost every
    label: the folder was 'not named as a class of the model' (a tester's finding)."""
    import unicodedata

    from noiseaudit.model_io import _folders_by_class, class_key

    composed, decomposed = (unicodedata.normalize(form, "fünf") for form in ("NFC", "NFD"))
    for name in (decomposed, "vier"):
        (tmp_path / name).mkdir()
        Image.new("L", (8, 8), 9).save(tmp_path / name / "a.png")
    assert _folders_by_class(tmp_path, [composed, "vier"]) == ([decomposed, "vier"], [])
    assert class_key(decomposed) == class_key(composed) == composed and class_key(3) == "3"


def test_skipped_images_are_said_to_a_notebook_as_a_warning(digits_model, tmp_path):
    """scan(..., on_bad_image='skip') and predict said nothing in Python; the command line's summary said it (a
    tester's finding). The warning class is public, so a notebook can filter it."""
    import noiseaudit

    images, csv, report_path, model = digits_model
    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    broken = read_report(report_path)[0]["path"].iloc[3]
    (folder / broken).write_bytes(b"not an image")
    with pytest.warns(noiseaudit.SkippedImages, match=rf"Skipped 1 bad image \(1 not_image\): '{broken}'"):
        scan(folder, csv, label_col="digit", on_bad_image="skip", **SCAN)
    with pytest.warns(noiseaudit.SkippedImages, match="it is in the predictions with that status"):
        load_model(model).predict(folder, csv, label_col="digit", device="cpu", on_bad_image="skip")
    assert issubclass(noiseaudit.HeavyFlagging, noiseaudit.NoiseAuditWarning)


def test_a_stray_folder_with_a_link_back_up_is_looked_into_once(tmp_path):
    """Whether a stray folder holds an image was asked with a bare os.walk that followed links: a link back up made
    it walk the loop until the path grew too long. It now walks as a folder scan does."""
    from noiseaudit.model_io import _folders_by_class

    (tmp_path / "1").mkdir()
    Image.new("L", (8, 8), 9).save(tmp_path / "1" / "a.png")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "up").symlink_to(tmp_path / "extra", target_is_directory=True)
    assert _folders_by_class(tmp_path, [1]) == (["1"], [])  # no image below the stray: not a stray class
    Image.new("L", (8, 8), 9).save(tmp_path / "extra" / "b.png")
    assert _folders_by_class(tmp_path, [1]) == (["1"], ["extra"])
