"""File-level label-noise injection: a labels table in, the same table with corrupted labels out.

The output keeps every input column, replaces the label and adds
``original_label`` and ``is_noisy``. ``instance`` noise first trains a quick
model (plain training, a few epochs) on the images, or on feature vectors, to
learn which wrong class is most plausible for each sample. A labels CSV without
image paths (labels for feature vectors) takes symmetric and pair-flip noise as
it is, and instance noise given its features.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from noiseaudit.config import check_seed
from noiseaudit.data.csvfile import frame_column, with_labels
from noiseaudit.data.dataset import SampleData, load_dataset, sorted_classes
from noiseaudit.data.source import LabeledSource, has_path_column, load_source, read_label_table
from noiseaudit.errors import InputError, UsageError, check_number, check_whole_number, header_line, option
from noiseaudit.noise import KINDS, check_rate, inject_noise
from noiseaudit.runtime import keeps_random_state


@dataclass
class InjectionResult:
    table: pd.DataFrame  # the output rows
    classes: list
    noise_matrix: np.ndarray  # (K, K) counts of original -> new

    def __repr__(self) -> str:  # the dataclass's printed the whole table and matrix
        return (f"InjectionResult({int(self.table['is_noisy'].sum())} of {len(self.table)} labels changed, "
                f"{len(self.classes)} classes; .table, .noise_matrix)")

    @property
    def per_class_rate(self) -> np.ndarray:
        totals = self.noise_matrix.sum(axis=1)
        flipped = totals - np.diag(self.noise_matrix)
        return np.divide(flipped, totals, out=np.zeros(len(totals)), where=totals > 0)


def read_pairs(path: str | Path | Mapping, classes: list) -> dict[int, int]:
    """A JSON object mapping class name to class name, e.g. {"T-shirt": "Shirt"}, or that dict from Python."""
    if isinstance(path, Mapping):
        raw, path = dict(path), "<pairs dict>"
    else:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read pair map ({exc})", path=path) from None
    if not isinstance(raw, dict) or not raw:
        raise InputError("pair map must be a non-empty JSON object of class -> class", path=path)
    index = {str(c): k for k, c in enumerate(classes)}
    pairs = {}
    for src, dst in raw.items():
        for name in (src, dst):
            if str(name) not in index:
                raise InputError(f"unknown class {name!r} in pair map; classes are {classes}", path=path)
        if str(src) == str(dst):
            raise InputError(f"pair map sends class {src!r} to itself; a flip must change the label", path=path)
        pairs[index[str(src)]] = index[str(dst)]
    return pairs


@keeps_random_state
def instance_probs(data: SampleData, seed: int = 0, device: str = "auto") -> np.ndarray:
    """Class probabilities from a quick model (default model, plain training, 3 epochs) on the clean labels.

    ``instance`` noise flips each chosen sample to the wrong class this model finds most plausible.
    """
    from noiseaudit.models import build_feature_model, build_model, default_model
    from noiseaudit.runtime import resolve_device, seed_everything
    from noiseaudit.train import TrainConfig, train

    gen = seed_everything(seed)
    if data.is_features:
        model = build_feature_model("mlp", data.channels, len(data.classes))
    else:
        model = build_model(default_model(data.channels, data.image_size), data.channels, data.image_size,
                            len(data.classes))
    return train(data, model, TrainConfig(epochs=3, method="plain"), resolve_device(device), gen).probs


def inject(source: LabeledSource, rate: float, kind: str = "symmetric", seed: int = 0,
           pairs_file: str | Path | Mapping | None = None, device: str = "auto",
           features: str | Path | None = None) -> InjectionResult:
    """Corrupt exactly round(rate * N) labels of ``source``, keeping its columns and their order.

    ``instance`` noise trains on the images of ``source``, or on ``features`` when given.
    """
    if kind not in KINDS:
        raise UsageError(f"unknown noise kind {kind!r}; choose one of {', '.join(KINDS)}")
    check_seed(seed)
    classes = sorted_classes(source.labels)
    if len(classes) < 2:
        raise InputError(f"need at least two classes to inject noise, found {len(classes)}", path=source.origin)
    index = {c: k for k, c in enumerate(classes)}
    original = np.array([index[v] for v in source.labels], dtype=np.int64)
    pairs = None if pairs_file is None else read_pairs(pairs_file, classes)
    if pairs is not None and kind != "asymmetric":
        raise UsageError(f"{option('pairs_file', flag='--pairs')} only applies to {option('kind', 'asymmetric')}")
    probs = None
    if kind == "instance":
        data = load_dataset(source) if features is None else features_dataset(features, source)
        probs = instance_probs(data, seed, device)
    noisy = inject_noise(original, rate, kind, len(classes), seed=seed, pairs=pairs, probs=probs)
    names = np.asarray(classes, dtype=object)
    table = source.extra.reset_index(drop=True).copy()
    if source.path_col is not None:
        table[source.path_col] = source.paths
    table[source.label_col] = names[noisy.labels]
    table = table[source.columns]
    table["original_label"] = names[original]
    table["is_noisy"] = noisy.is_noisy
    return InjectionResult(table=table, classes=classes, noise_matrix=noisy.noise_matrix(original, len(classes)))


def inject_file(input_path: str | Path | pd.DataFrame, rate: float, kind: str = "symmetric", seed: int = 0, *,
                images_dir: str | Path | None = None, pairs_file: str | Path | Mapping | None = None,
                path_col: str | None = None, label_col: str | None = None, device: str = "auto",
                features: str | Path | np.ndarray | None = None) -> InjectionResult:
    """Corrupt exactly ``round(rate * N)`` labels on purpose, keeping the truth, to check detection.

    Parameters
    ----------
    input_path : str, Path or DataFrame
        A labels CSV (paths relative to ``images_dir``, by default its own folder), an ImageFolder
        tree, or the labels of feature vectors (a CSV with ``features``, or one without a path column).
        A DataFrame is a labels CSV whose images are looked up only with ``images_dir``.
    rate : float
        The fraction of labels to change, in [0, 1).
    kind : {"symmetric", "asymmetric", "instance"}
        To any other class at random; to one fixed other class per class (``pairs_file``, a JSON map or
        a dict, or the next class); or to the class a quickly trained model confuses each sample with
        (this trains on ``device``).
    seed : int
        Seeds the draw (and the model for ``instance``).
    images_dir, pairs_file, path_col, label_col, device
        As the ``inject`` command's options.
    features : path or numpy.ndarray, optional
        For ``instance`` noise on feature vectors: a features file as for ``scan_features``, or the array.

    Returns
    -------
    InjectionResult
        ``table``: the input rows with the new labels, plus ``original_label`` and ``is_noisy``;
        ``classes``; ``noise_matrix``, the (K, K) counts of original to new label.
    """
    if not isinstance(input_path, (str, os.PathLike, pd.DataFrame)):
        raise UsageError(f"the labels come first, as a path or a DataFrame, then the rate: inject_file('labels.csv', "
                         f"0.2); got a {type(input_path).__name__} as the labels")
    check_number("rate", rate)
    check_whole_number("seed", seed)
    check_rate(rate)
    frame = isinstance(input_path, pd.DataFrame)
    if not frame:
        input_path = Path(input_path)
    if not frame and input_path.is_dir():
        source = load_source(input_path)
    elif features is not None or (images_dir is None and (frame or not has_path_column(input_path, path_col))):
        if kind == "instance" and features is None:
            raise UsageError(f"{option('kind', 'instance')} trains a model: pass {option('features')} (or "
                             f"{option('images_dir')} for images)")
        source = read_label_table(input_path, key_col=path_col, label_col=label_col)
    else:
        if images_dir is None:
            if kind == "instance":
                raise UsageError(f"{option('kind', 'instance')} trains a model on the images: pass "
                                 f"{option('images_dir')}")
            images_dir = input_path.parent
        source = load_source(images_dir, input_path, path_col=path_col, label_col=label_col)
    for clash in ("original_label", "is_noisy"):
        if clash in source.extra.columns:
            raise InputError(f"input already has a {clash!r} column (was noise injected already?)",
                             path=source.origin, line=header_line(source.origin))
    result = inject(source, rate, kind, seed, pairs_file, device, features)
    if frame:  # the caller's DataFrame back in its own types and index, not as text
        column = frame_column(input_path, source.label_col)
        given = dict(zip(result.table["original_label"], input_path[column]))
        table = with_labels(input_path, column, result.table[source.label_col].tolist(), given)
        result.table = table.assign(original_label=input_path[column], is_noisy=result.table["is_noisy"].to_numpy())
    return result


def features_dataset(features: str | Path, source: LabeledSource) -> SampleData:
    """The feature vectors of ``source``'s samples as training data, with its labels as targets."""
    from noiseaudit.data.features import load_features

    classes = sorted_classes(source.labels)
    index = {c: k for k, c in enumerate(classes)}
    targets = torch.tensor([index[v] for v in source.labels], dtype=torch.int64)
    return SampleData(torch.from_numpy(load_features(features, source).values), targets, classes, 0)
