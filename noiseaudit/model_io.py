"""The trained classifier as a product: what ``scan --save-model`` writes, and :func:`load_model` reads back.

A model file is one ``torch.save`` of plain tensors, numbers, strings, lists and dicts, read with
``weights_only=True`` (opening a file runs no code from it). It holds:

- ``format``, ``version``, ``noiseaudit``: what the file is, its layout version, the writer's version;
- ``kind``: ``images`` or ``features``; ``classes`` (ints or strings, in the report's order);
- ``model``: the from-scratch network's name (``small-cnn``, ``resnet18``, ``mlp``; on features ``mlp`` or
  ``linear``), or None with a backbone; ``description``: the report's ``model`` (e.g.
  ``efficientnet-lite0 (finetune top)``);
- ``backbone``: None, or the plan ``{name, finetune, split, image_size, precision}`` and ``views``. The
  frozen bottom of the backbone is not in the file: it is rebuilt from the ``pretrained`` extra's
  ImageNet weights and run over the images, at predict time, as a scan runs it (``views`` 2: each
  image and its mirror image, their probabilities averaged, as the scan's report was computed);
- ``channels`` and ``image_size`` (images) or ``dim`` (features);
- ``input``: the per-channel ``mean`` and ``std`` the model's inputs are standardised with (the training
  images' own statistics from scratch, the backbone's fixed scaling, 0 and 1 for activations and features);
- ``standardisation``: for features, the per-column ``mean`` and ``scale`` of the training vectors
  (float64), so new vectors are standardised exactly as the training ones were;
- ``precision`` and ``batch_size`` of the forward passes, and the ``state_dict`` of the trained part.

Predictions (:meth:`SavedModel.predict`) are a DataFrame with one row per input: ``sample_id`` (the input
row), ``path`` (the image path, or a feature row's key), ``given_label`` (when the input has labels),
``predicted_label``, ``pred_prob`` and ``prob_<class>`` for every class. On the images or vectors a scan
trained on, ``predicted_label`` and the probabilities are the scan report's own.
"""

from __future__ import annotations

import os
import time
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from noiseaudit import formats
from noiseaudit._version import __version__
from noiseaudit.backbone import BackbonePlan, build_top, encoder
from noiseaudit.checkpoint import save_tensors
from noiseaudit.config import check_bad_image_policy
from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.dataset import SampleData, SkippedImage, load_dataset, say_skipped
from noiseaudit.data.features import FEATURE_SUFFIXES, load_features
from noiseaudit.data.images import LUMA
from noiseaudit.data.source import (IMAGE_EXTENSIONS, LabeledSource, clutter, files_under, load_source,
                                    read_image_folder, read_label_table)
from noiseaudit.errors import InputError, NoiseAuditWarning, UsageError, input_file, option, warn
from noiseaudit.models import build_feature_model, build_model
from noiseaudit.progress import ProgressCallback, stage_progress
from noiseaudit.report.build import carried_columns
from noiseaudit.report.io import atomic_write
from noiseaudit.runtime import resolve_device
from noiseaudit.train import PREDICT_BATCH, autocast, normaliser, predict

FORMAT = "noiseaudit-model"
VERSION = 1


def save_model(path: str | Path, model: nn.Module, data: SampleData, plan: BackbonePlan, description: str, *,
               precision: str = "fp32", batch_size: int = PREDICT_BATCH,
               standardisation: tuple[np.ndarray, np.ndarray] | None = None, overwrite: bool = True) -> Path:
    """Write a trained classifier to ``path`` atomically (temp file, then rename); ``overwrite`` False keeps a
    file that exists by then (:func:`~noiseaudit.report.io.atomic_write`).

    Parameters
    ----------
    path : path
        The model file (by convention ``.pt``).
    model : torch.nn.Module
        The trained network (from scratch, a feature head, or a backbone's trained top).
    data : SampleData
        What it was trained on: gives the kind, channels, image size and input standardisation.
    plan : BackbonePlan
        The backbone plan of the scan (``BackbonePlan(None)`` from scratch and for features).
    description : str
        The model's name as the report's metadata gives it.
    precision, batch_size
        How the scan's final forward pass ran (``bf16`` autocast or ``fp32``; the chunk size).
    standardisation : (mean, scale), optional
        For feature vectors: the per-column statistics they were standardised with.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    mean, std = normaliser(data.inputs, model)
    backbone = None
    if plan.name is not None:
        backbone = {"name": plan.name, "finetune": plan.finetune, "split": plan.split, "image_size": plan.image_size,
                    "precision": plan.precision, "views": data.views if plan.frozen_bottom else 1}
    classes = [c if isinstance(c, str) else int(c) for c in data.classes]
    features = data.is_features
    state = {
        "format": FORMAT, "version": VERSION, "noiseaudit": __version__,
        "kind": "features" if features else "images",
        "model": None if plan.name is not None else description, "description": description,
        "backbone": backbone, "classes": classes, "num_classes": len(classes),
        "channels": None if features else data.channels if plan.name is None else 3,
        "image_size": None if features else data.image_size if plan.name is None else plan.image_size,
        "dim": data.channels if features else None,
        "input": {"mean": mean.cpu().clone(), "std": std.cpu().clone()},
        "standardisation": None if standardisation is None else {
            "mean": torch.from_numpy(np.asarray(standardisation[0], dtype=np.float64).copy()),
            "scale": torch.from_numpy(np.asarray(standardisation[1], dtype=np.float64).copy())},
        "precision": precision, "batch_size": int(batch_size),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    return atomic_write(path, lambda tmp: save_tensors(state, tmp), replace=overwrite)


@dataclass
class SavedModel:
    """A classifier read back from a model file; :meth:`predict` labels new images or feature vectors."""

    path: str
    info: dict[str, Any]  # the file's header: everything but the weights
    network: nn.Module

    def __repr__(self) -> str:  # the dataclass's would print the standardisation tensors and the whole network
        return f"SavedModel({self.path!r}: {self.info['description']}, {self.kind}, {len(self.classes)} classes)"

    @property
    def kind(self) -> str:
        """``images`` or ``features``."""
        return str(self.info["kind"])

    @property
    def classes(self) -> list:
        return list(self.info["classes"])

    @property
    def plan(self) -> BackbonePlan:
        b = self.info["backbone"]
        return BackbonePlan(None) if b is None else BackbonePlan(b["name"], b["finetune"], b["image_size"],
                                                                  b["precision"])

    def predict(self, inputs: str | Path | np.ndarray | torch.Tensor | pd.DataFrame,
                labels_csv: str | Path | pd.DataFrame | Sequence | None = None, *,
                path_col: str | None = None, label_col: str | None = None, device: str = "auto",
                workers: int = 2, cache: bool = True, cache_dir: str | None = None,
                on_progress: ProgressCallback | None = None, on_bad_image: str = "fail") -> pd.DataFrame:
        """Predict the class of every input.

        Parameters
        ----------
        inputs : path, numpy.ndarray, torch.Tensor or pandas.DataFrame
            For an images model, an image folder: with ``labels_csv`` the images that CSV lists
            (paths relative to the folder, as for ``scan``); else, where its subfolders are named as the
            model's classes (a held-out split laid out as ``scan`` reads one), their images with the
            folder's class as given label; else every image under it at any depth.
            For a features model, the vectors: a ``.npy`` or Parquet file, an array, a tensor or a DataFrame
            (as for ``scan_features``), standardised with the training vectors' statistics.
        labels_csv : path, pandas.DataFrame or sequence, optional
            Images: a CSV (or DataFrame) with a path column and optionally a label column. Features: a
            labels table with a key column (or row order) and optionally labels, or one label per row. Given
            labels must be classes of the model; they become ``given_label``, and the accuracy against them
            goes into the metadata.
        path_col, label_col : str, optional
            Column names (default: detected as for ``scan``); ``path_col`` is the key column for features.
        device : str
            ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        workers : int
            Threads decoding images.
        cache, cache_dir
            Use the decoded-image cache (a scan's own cache entry is reused for the same files).
        on_progress : callable, optional
            Called as ``on_progress(stage, done, total, info)`` while decoding or embedding.
        on_bad_image : {"fail", "skip"}
            ``fail``: a missing or undecodable image is an :class:`InputError`; ``skip``: it is left out
            of the predictions and listed with its ``status``, as ``scan`` does.

        Returns
        -------
        pandas.DataFrame
            ``sample_id, path, [given_label], predicted_label, pred_prob, [given_prob],
            prob_<class>...`` (``given_prob``: the probability of the given label; sort by it to
            check a held-out split's labels), and with ``on_bad_image="skip"`` a ``status`` column
            (``ok``, or why the image was left out; such rows have no predictions); run metadata in
            ``.attrs["noiseaudit"]``.
        """
        check_bad_image_policy(on_bad_image)
        t0 = time.perf_counter()
        dev = resolve_device(device)
        skipped: list[SkippedImage] = []
        if self.kind == "features":
            source, x = self._features(inputs, labels_csv, path_col, label_col)
            rows = np.arange(len(x))
        else:
            if not isinstance(inputs, (str, os.PathLike, np.ndarray, pd.DataFrame, torch.Tensor)):
                raise UsageError(f"{self.path}: a model trained on images predicts from an image folder (a path), "
                                 f"not a {type(inputs).__name__}")
            if not isinstance(inputs, (str, os.PathLike)) or Path(inputs).suffix.lower() in FEATURE_SUFFIXES:
                raise UsageError(f"{self.path}: a model trained on images predicts from an image folder, "
                                 "not from feature vectors")
            if Path(inputs).is_file():
                raise UsageError(f"{self.path}: a model trained on images predicts from an image folder, and "
                                 f"{inputs} is a file: give the folder, then the CSV if any (noiseaudit predict "
                                 "MODEL IMAGES_DIR [LABELS_CSV])")
            source, data = self._images(inputs, labels_csv, path_col, label_col, dev, workers,
                                        DecodeCache(cache_dir) if cache else None, on_progress, on_bad_image)
            x, rows = data.inputs, data.rows if data.rows is not None else np.arange(len(data))
            skipped = data.skipped
        probs = self.probabilities(x, dev)
        frame = self._frame(source, rows, probs)
        meta = self._metadata(frame, source, dev, time.perf_counter() - t0)
        if on_bad_image == "skip" and source is not None:
            frame = _with_skipped(frame.assign(status="ok"), source, skipped)
            counts = say_skipped(source, skipped, "the predictions")
            meta["n_skipped"], meta["skipped_by_status"] = counts["n_skipped"], counts["skipped_by_status"]
        frame = _with_extra(frame, source)
        frame.attrs["noiseaudit"] = meta
        return frame

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, device: torch.device | str = "cpu") -> np.ndarray:
        """Softmax probabilities (N, K) of stored inputs: uint8 images at the model's size and channels,
        the backbone's activations, or standardised feature vectors (what a scan's SampleData holds)."""
        if self.kind == "images" and self.info["backbone"] is None:
            self._check_images(x)
        device = torch.device(device)
        mean, std = (self.info["input"][k].to(device) for k in ("mean", "std"))
        self.network.to(device)
        with autocast(device, self.info["precision"]):
            return predict(self.network, x.to(device), mean, std, batch_size=int(self.info["batch_size"]))

    def _check_images(self, x: torch.Tensor) -> None:
        """Images as the model reads them, or a UsageError saying how they should be: a float image in 0-255
        gave confident nonsense, and a wrong size a matrix-shape error from inside the network."""
        shape = (int(self.info["channels"]), int(self.info["image_size"]), int(self.info["image_size"]))
        wanted = f"uint8 images (N, {', '.join(map(str, shape))}), or floats in [0, 1]"
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise UsageError(f"{self.path}: probabilities takes {wanted}, not {got}; predict(IMAGES_DIR) reads, "
                             "resizes and converts image files")
        if x.is_floating_point() and x.numel() and float(x.max()) > 1.0 + 1e-6:
            raise UsageError(f"{self.path}: probabilities takes {wanted}; these floats reach {float(x.max()):g} "
                             "(divide by 255, or pass uint8)")

    def _images(self, images_dir: str | Path, labels_csv: str | Path | pd.DataFrame | None, path_col: str | None,
                label_col: str | None, device: torch.device, workers: int, cache: DecodeCache | None,
                on_progress: ProgressCallback | None, on_bad_image: str) -> tuple[LabeledSource, SampleData]:
        named, strays = _folders_by_class(Path(images_dir), self.classes) if labels_csv is None else ([], [])
        if named and not strays:  # a held-out split's tree: the folders give the labels
            source = read_image_folder(images_dir)
        else:
            if named:  # a held-out tree but for a class the model lacks: its labels would go unsaid
                warn(f"{images_dir}: {formats.plural(len(strays), 'folder')} not named as a class of the "
                     f"model ({', '.join(map(repr, strays[:5]))}{', …' if len(strays) > 5 else ''}), so "
                     "the class folders give no labels: every image is predicted without one; move those "
                     "folders out to get the accuracy", NoiseAuditWarning)
            source = load_source(images_dir, labels_csv, path_col=path_col, label_col=label_col, for_prediction=True)
        self._check_labels(source)
        plan = self.plan
        frozen = encoder(plan, device, mirrored=self.info["backbone"]["views"] == 2) if plan.frozen_bottom else None
        stage = "decode" if frozen is None else "embed"
        data = load_dataset(source, image_size=self.info["image_size"], workers=workers,
                            progress=stage_progress(on_progress, stage), cache=cache, encoder=frozen, min_classes=0,
                            on_bad_image=on_bad_image)
        if frozen is None:
            data.inputs = match_channels(data.inputs, int(self.info["channels"]))
        return source, data

    def _features(self, features: str | Path | np.ndarray | pd.DataFrame,
                  labels_csv: str | Path | pd.DataFrame | Sequence | None,
                  key_col: str | None, label_col: str | None) -> tuple[LabeledSource | None, torch.Tensor]:
        if isinstance(features, (str, Path)) and Path(features).is_dir():
            raise UsageError(f"{self.path}: a features model predicts from feature vectors ({option('features')}), "
                             f"not an image folder")
        source = None
        if labels_csv is not None:
            source = read_label_table(labels_csv, key_col=key_col, label_col=label_col, optional_label=True)
            self._check_labels(source)
        stats = self.info["standardisation"]
        table = load_features(features, source, standardisation=(stats["mean"].numpy(), stats["scale"].numpy()))
        return source, torch.from_numpy(table.values)

    def _class_index(self) -> dict[str, int]:
        """Each class's position, by its name as text in composed Unicode form: "3" is the class 3, and a folder
        named on macOS (decomposed accents) is the class of the same name."""
        return {class_key(c): k for k, c in enumerate(self.classes)}

    def _check_labels(self, source: LabeledSource) -> None:
        """Every given label must be a class of the model (:meth:`_class_index`)."""
        known = self._class_index()
        for i, label in enumerate(source.labels):
            if label is not None and class_key(label) not in known:
                origin, line = source.where(i)
                shown = ", ".join(map(str, self.classes[:12])) + (", ..." if len(self.classes) > 12 else "")
                raise InputError(f"label {label!r} is not a class of the model {self.path} (its classes: {shown})",
                                 path=origin, line=line)

    def _frame(self, source: LabeledSource | None, rows: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
        names = np.asarray(self.classes, dtype=object)
        predicted = probs.argmax(axis=1)
        frame = pd.DataFrame({"sample_id": rows.astype(np.int64),
                              "path": [str(r) for r in rows] if source is None else [source.paths[r] for r in rows]})
        given = None
        if source is not None and source.label_col is not None:
            index = self._class_index()
            given = np.asarray([index[class_key(source.labels[r])] for r in rows], dtype=np.int64)
            frame["given_label"] = names[given]
        frame["predicted_label"] = names[predicted]
        frame["pred_prob"] = probs[np.arange(len(rows)), predicted].astype(np.float32)
        if given is not None:  # low: the model doubts the given label (a held-out split's label check)
            frame["given_prob"] = probs[np.arange(len(rows)), given].astype(np.float32)
        for k, c in enumerate(self.classes):
            frame[f"prob_{c}"] = probs[:, k].astype(np.float32)
        if all(isinstance(c, int) for c in self.classes):
            for col in ("given_label", "predicted_label"):
                if col in frame:
                    frame[col] = frame[col].astype(np.int64)
        return frame

    def _metadata(self, frame: pd.DataFrame, source: LabeledSource | None, device: torch.device,
                  seconds: float) -> dict[str, Any]:
        labelled = "given_label" in frame
        disagree = int((frame["given_label"] != frame["predicted_label"]).sum()) if labelled else None
        accuracy = (len(frame) - disagree) / len(frame) if labelled and len(frame) else None  # 0.7555, not 1 - 0.2445
        counts = frame["predicted_label"].value_counts()
        return {"version": __version__, "model_file": self.path, "model": self.info["description"],
                "kind": self.kind, "classes": self.classes, "input": None if source is None else source.origin,
                "n_samples": len(frame), "accuracy": accuracy, "n_disagree": disagree,
                "predicted_counts": {str(c): int(counts.get(c, 0)) for c in self.classes},
                "device": str(device), "timings": {"total_s": seconds}}


def _with_extra(frame: pd.DataFrame, source: LabeledSource | None) -> pd.DataFrame:
    """The predictions with the CSV's other columns carried, as a scan's report carries them (a name the
    predictions use gets ``input_``)."""
    if source is None or not len(source.extra.columns):
        return frame
    probs = [c for c in source.extra.columns if str(c).startswith("prob_")]  # the predictions' own prefix
    return frame.join(carried_columns(source.extra, [*frame.columns, *probs]), on="sample_id")


def _with_skipped(frame: pd.DataFrame, source: LabeledSource, skipped: list[SkippedImage]) -> pd.DataFrame:
    """The predictions with a row for each image left out (its status, no predictions), in input order."""
    if not skipped:
        return frame
    rows = {"sample_id": [s.row for s in skipped], "path": [source.paths[s.row] for s in skipped],
            "status": [s.status for s in skipped]}
    if "given_label" in frame:
        rows["given_label"] = [source.labels[s.row] for s in skipped]
    out = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True).sort_values("sample_id", kind="stable")
    for col in ("given_label", "predicted_label"):
        if col in frame and pd.api.types.is_integer_dtype(frame[col]):
            out[col] = out[col].astype("Int64")
    return out.reset_index(drop=True)


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 images (N, C, S, S) with the model's channel count: gray repeated to RGB, or RGB to gray (luma)."""
    have = int(images.shape[1])
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor(LUMA).view(1, 3, 1, 1)
    return (images.float() * weights).sum(dim=1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _folders_by_class(root: Path, classes: list) -> tuple[list[str], list[str]]:
    """``root``'s subfolders named as a class of the model and the others (all of them others where an image
    sits beside them: then it is no class tree). With some of the first and none of the others, ``root`` is an
    ImageFolder tree of the model's classes: a held-out split laid out as the training data was."""
    if not root.is_dir():
        return [], []
    known = {class_key(c) for c in classes}
    entries = [e for e in root.iterdir() if not clutter(e.name)]
    folders = sorted(e.name for e in entries if e.is_dir())
    if any(e.is_file() and e.suffix.lower() in IMAGE_EXTENSIONS for e in entries):
        return [], folders
    named = [f for f in folders if class_key(f) in known]
    # a folder without an image is no class (a folder scan leaves it out too), so not a stray either
    return named, [f for f in folders if class_key(f) not in known and _has_image(root / f)]


def class_key(label: object) -> str:
    """A class name as predict matches it: as text, in composed Unicode form."""
    return unicodedata.normalize("NFC", str(label))


def _has_image(folder: Path) -> bool:
    """Whether an image file sits below ``folder``, found as a folder scan finds them (:func:`files_under`: links
    followed, hidden files left out, no loop through a link back up)."""
    return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in files_under(folder))


def load_model(path: str | Path) -> SavedModel:
    """Read a model file written by ``scan --save-model`` (``scan(..., save_model=PATH)`` from Python).

    Parameters
    ----------
    path : path
        The model file. It is read with ``weights_only=True``: opening it runs no code.

    Returns
    -------
    SavedModel
        ``.predict(images_dir_or_features, ...)`` gives a predictions DataFrame; ``.info`` holds
        the configuration, classes and input standardisation.

    Raises
    ------
    InputError
        Naming the file when it is missing, not a model file, from a newer noiseaudit, or
        inconsistent with itself.
    UsageError
        When a backbone model needs the ``pretrained`` extra and it is missing.
    """
    path = input_file(path, "model file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols of files that are not ours
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any failure to parse (pickle, zip, truncation, foreign objects) means one thing here
        raise InputError("not a noiseaudit model file (not a PyTorch file of tensors and plain values, or "
                         "truncated)", path=path) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"not a noiseaudit model file (written by scan's {option('save_model')})", path=path)
    if int(state.get("version", 0)) > VERSION:
        raise InputError(f"model file format {state['version']} is newer than this noiseaudit "
                         f"({__version__}) reads; upgrade noiseaudit", path=path)
    try:
        weights = state.pop("state_dict")
        network = _build(state)
        network.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"model file is damaged: its weights or settings do not fit together "
                         f"({(str(exc).splitlines() or [type(exc).__name__])[0][:160]})", path=path) from None
    return SavedModel(str(path), state, network.eval())


def _build(info: dict[str, Any]) -> nn.Module:
    """The untrained network a model file's header describes."""
    k = int(info["num_classes"])
    if info["backbone"] is not None:
        b = info["backbone"]
        return build_top(BackbonePlan(b["name"], b["finetune"], b["image_size"], b["precision"]), k)
    if info["kind"] == "features":
        return build_feature_model(info["model"], int(info["dim"]), k)
    return build_model(info["model"], int(info["channels"]), int(info["image_size"]), k)
