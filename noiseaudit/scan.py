"""``scan``: images + labels in, ranked per-sample report out.

source -> dataset -> trainer -> per-sample records -> report (-> Parquet).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noiseaudit._version import __version__
from noiseaudit.backbone import (BackbonePlan, build_top, check_options, encoder, plan_backbone,
                                 training_defaults)
from noiseaudit.checkpoint import Checkpointer, check_resumable, dataset_fingerprint
from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.checks import check_source
from noiseaudit.data.csvfile import table_name
from noiseaudit.data.dataset import (
    SampleData,
    SkippedImage,
    check_bad_image_policy,
    load_dataset,
    sorted_classes,
    source_key,
)
from noiseaudit.data.features import in_memory_matrix, load_features
from noiseaudit.data.source import LabeledSource, load_source, read_label_table
from noiseaudit.data.trusted import merge_trusted
from noiseaudit.distributed import Distributed, from_environment, local_device
from noiseaudit.errors import (HeavyFlagging, InputError, NoiseAuditError, NoiseAuditWarning, TrainingFailed,
                               UsageError, check_number, check_switch, check_whole_number, option)
from noiseaudit.model_io import save_model
from noiseaudit.models import FEATURE_MODELS, MODELS, build_feature_model, build_model, default_model
from noiseaudit.optim import META_OBJECTIVES
from noiseaudit.optim.averaging import fits as averaging_fits
from noiseaudit.optim.layerwise import RULES as LAYERWISE_RULES
from noiseaudit.optim.schedule import SCHEDULES
from noiseaudit.progress import ProgressCallback
from noiseaudit.report.build import add_skipped, build_report, carried_columns
from noiseaudit.report.io import OutputAppeared, check_writable, cut_name, same_file, write_report
from noiseaudit.report.summary import heavy_flagging
from noiseaudit.report.threshold import Threshold, choose_threshold, rank_sum, reranked, unranked
from noiseaudit.runtime import check_seed, resolve_device, seed_everything
from noiseaudit.train import METHODS, PREDICT_BATCH, StepCallback, TrainConfig, TrainResult, train


MAX_IMAGE_SIZE = 1024  # --image-size: images are decoded whole into memory at this side
TRUSTED_WEIGHT = 0.5  # weight of the trusted samples' class references (measured in bench/detect.py --trusted)


@dataclass
class ScanConfig:
    """Every option of a scan; stored whole in the report's metadata.

    The fields are the ``scan`` command's options with ``_`` for ``-`` (``hyper_lr`` is ``--hyper-lr``,
    ``cache=False`` is ``--no-cache``); docs/cli.md says what each does. None means chosen from the input
    (``epochs``, ``lr``, ``hyper_lr``, ``model``, ``image_size``, ``augment``). ``workers`` is min(8, CPU count)
    from Python, 2 on the command line. ``scan`` and ``scan_features`` take any of them as keywords.
    """

    images_dir: str | None
    labels_csv: str | None = None
    features: str | None = None  # a features file, or "<array>" / "<DataFrame>" from scan_features
    path_col: str | None = None
    label_col: str | None = None
    model: str | None = None
    backbone: str = "auto"
    finetune: str = "auto"
    image_size: int | None = None
    method: str = "learned-lr"
    epochs: int | None = None
    batch_size: int = 128
    lr: float | None = None
    hyper_lr: float | None = None
    margin_weight: float = 0.5
    meta: str = "auto"
    schedule: str = "constant"
    layerwise: bool = False  # per-layer rate multipliers (noiseaudit.optim.layerwise)
    layerwise_rule: str = "grad-norm"
    augment: bool | None = None
    device: str = "auto"
    seed: int = 0
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    noise_rate: float | None = None
    on_bad_image: str = "fail"
    checkpoint_dir: str | None = None
    resume: bool = False
    cache_dir: str | None = None
    cache: bool = True
    force: bool = False  # scan even when the data looks like the wrong folder level or label column
    trusted: str | None = None  # a CSV of verified labels (see noiseaudit.data.trusted)
    trusted_weight: float = TRUSTED_WEIGHT
    save_model: str | None = None  # write the trained classifier here (noiseaudit.model_io; noiseaudit predict)
    rank_by: str = "auto"  # see RANK_BY

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.model is not None and self.model not in MODELS + FEATURE_MODELS:
            raise UsageError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        for name in ("epochs", "batch_size", "workers", "image_size", "seed"):  # 1.5 epochs trained 2
            check_whole_number(name, getattr(self, name))
        for name in ("lr", "hyper_lr", "margin_weight", "trusted_weight", "noise_rate"):  # '0.1' failed at '<'
            check_number(name, getattr(self, name))
        for name in ("layerwise", "resume", "cache", "force"):  # resume="no" resumed
            check_switch(name, getattr(self, name))
        check_switch("augment", self.augment, optional=True)
        for name in ("epochs", "batch_size", "workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"{option(name)} must be at least 1, got {getattr(self, name)}")
        if self.lr is not None and not 0 < self.lr < math.inf:
            raise UsageError(f"{option('lr')} must be a positive number, got {self.lr}")
        if self.image_size is not None and not 4 <= self.image_size <= MAX_IMAGE_SIZE:
            raise UsageError(f"{option('image_size')} must be between 4 and {MAX_IMAGE_SIZE} (the side of the square "
                             f"images are resized to), got {self.image_size}")
        check_seed(self.seed)
        check_options(self.backbone, self.finetune)
        if self.features is not None:
            if self.model is not None and self.model not in FEATURE_MODELS:
                raise UsageError(f"{option('model', self.model)} takes images; on feature vectors choose one of "
                                 f"{', '.join(FEATURE_MODELS)}")
            if self.backbone not in ("auto", "none"):
                raise UsageError(f"{option('backbone', self.backbone)} encodes images; feature vectors are used "
                                 "as given")
        if self.model is not None and self.backbone not in ("auto", "none"):
            raise UsageError(f"{option('model', self.model)} trains from scratch; it cannot go with "
                             f"{option('backbone', self.backbone)}")

        if self.meta not in META_OBJECTIVES:
            raise UsageError(f"unknown meta-objective {self.meta!r}; choose one of {', '.join(META_OBJECTIVES)}")
        if self.hyper_lr is not None and not 0 <= self.hyper_lr < math.inf:
            raise UsageError(f"{option('hyper_lr')} must be a non-negative number, got {self.hyper_lr}")
        if not 0 <= self.margin_weight < math.inf:
            raise UsageError(f"{option('margin_weight')} must be a non-negative number, got {self.margin_weight}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.layerwise_rule not in LAYERWISE_RULES:
            raise UsageError(f"unknown {option('layerwise_rule')} {self.layerwise_rule!r}; choose one of "
                             f"{', '.join(LAYERWISE_RULES)}")
        check_bad_image_policy(self.on_bad_image)
        if not 0.0 <= self.trusted_weight <= 1.0:
            raise UsageError(f"{option('trusted_weight')} must be in [0, 1], got {self.trusted_weight}")
        if self.rank_by not in RANK_BY:
            raise UsageError(f"unknown {option('rank_by')} {self.rank_by!r}; choose one of {', '.join(RANK_BY)}")
        if self.rank_by != "auto" and self.method != "learned-lr":
            raise UsageError(f"{option('rank_by', self.rank_by)} ranks learned rates; {option('method', self.method)} "
                             f"ranks by {RANKED_BY[self.method]} (leave {option('rank_by')} at auto)")
        if self.noise_rate is not None and not 0.0 <= self.noise_rate < 1.0:
            raise UsageError(f"{option('noise_rate')} must be in [0, 1), got {self.noise_rate}")


# epochs, lr, hyper-lr of a scan of feature vectors: a lower lr than from scratch (the MLP memorises wrong labels
# within 10 epochs at 0.05 and the count collapses) and a larger rate step (measured in bench/README.md)
FEATURE_DEFAULTS = (10, 0.01, 0.3)
# what other libraries call some options: a suggestion by spelling alone gave noise_rate for learning_rate
ALIASES = {"learning_rate": "lr", "num_epochs": "epochs", "n_epochs": "epochs", "max_epochs": "epochs",
           "random_state": "seed", "batchsize": "batch_size", "num_workers": "workers", "n_jobs": "workers"}
PATH_OPTIONS = frozenset({"trusted", "save_model", "checkpoint_dir", "cache_dir"})  # ScanConfig fields naming files
RANKED_BY = {"learned-lr": "log learned_lr", "plain": "minus mean loss", "dba": "dba_selected_frac"}
# --rank-by: the learned rate alone, or the mean of its rank and the rank of the final model's probability of the
# given label; auto is the latter with a pretrained backbone (it ranked CIFAR-10N's human label noise better,
# bench/README.md "Ranking a pretrained model's scan"), the rate alone from scratch (whose model memorises its
# training labels, so that probability says little)
RANK_BY = ("auto", "rate", "rate+prob")
RATE_AND_PROB = "mean rank of log learned_lr and given_prob"


def resolve_rank_by(rank_by: str, method: str, pretrained: bool) -> str:
    """What ``--rank-by auto`` means for a scan: ``rate+prob`` for learned rates on a pretrained backbone,
    otherwise ``rate`` (for ``--method plain`` / ``dba``: their own score, as ``RANKED_BY`` says)."""
    if rank_by != "auto":
        return rank_by
    return "rate+prob" if method == "learned-lr" and pretrained else "rate"


def ranking_score(signals: dict[str, np.ndarray], method: str) -> np.ndarray:
    """Lower = more suspect: the log learned rate, the DBA selection frequency (dba), or minus the
    mean loss when rates are uniform (plain)."""
    if method == "plain":
        return -signals["loss"].astype(np.float64)
    if method == "dba":
        return signals["dba_selected_frac"].astype(np.float64)
    return np.log(signals["learned_lr"].astype(np.float64))


def skipped_rows(source: LabeledSource, skipped: list[SkippedImage]) -> pd.DataFrame:
    """Report rows for samples left out under ``on_bad_image="skip"``."""
    rows = [b.row for b in skipped]
    frame = pd.DataFrame({"sample_id": np.asarray(rows, dtype=np.int64), "path": [source.paths[i] for i in rows],
                          "given_label": [source.labels[i] for i in rows], "status": [b.status for b in skipped]})
    return pd.concat([frame, carried_columns(source.extra.iloc[rows])], axis=1)


def _config(**options: Any) -> ScanConfig:
    """A validated :class:`ScanConfig`; an option it does not have is a UsageError naming the closest one."""
    names = [f.name for f in fields(ScanConfig)]
    unknown = [k for k in options if k not in names]
    if unknown:
        close = [ALIASES[unknown[0]]] if unknown[0] in ALIASES else difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown option {unknown[0]!r}{hint}; the options are ScanConfig's fields: "
                         f"{', '.join(n for n in names if n not in ('images_dir', 'labels_csv', 'features'))}")
    cfg = ScanConfig(**options)
    cfg.validate()
    return cfg


def scan(images_dir: str | Path, labels_csv: str | Path | pd.DataFrame | None = None, *,
         output: str | Path | None = None, overwrite: bool = False, on_progress: ProgressCallback | None = None,
         **options: Any) -> pd.DataFrame:
    """Train with per-sample learned rates and rank every sample by how likely its label is wrong.

    Parameters
    ----------
    images_dir : path
        Image root. Without ``labels_csv`` it must hold one subfolder per class.
    labels_csv : path or pandas.DataFrame, optional
        CSV with a path column (relative to ``images_dir``) and a label column, or a DataFrame
        of the same (errors then name its 0-based row: ``<labels DataFrame> row 5``).
    output : path, optional
        Write the report here as Parquet (atomically), with run metadata.
    overwrite : bool
        Allow replacing an existing ``output``.
    on_progress : callable, optional
        Called as ``on_progress(stage, done, total, info)`` while decoding and training.
    **options
        Any field of :class:`ScanConfig` (``epochs``, ``lr``, ``seed``, ``noise_rate``, ...);
        ``trusted`` may be a DataFrame too.

    Returns
    -------
    pandas.DataFrame
        One row per sample (see README, "Report schema"); the run metadata is
        in ``report.attrs["noiseaudit"]``.
    """
    if not isinstance(images_dir, (str, os.PathLike)):
        raise UsageError(f"the image folder comes first, as a path, then the labels: scan('images/', labels); got a "
                         f"{type(images_dir).__name__} as the image folder")
    images_dir, labels_csv, output, options = _home(images_dir), _home(labels_csv), _home(output), _homes(options)
    _check_callback(on_progress)
    trusted_table = options.pop("trusted", None)
    cfg = _config(images_dir=str(images_dir), labels_csv=_table_name(labels_csv, "labels CSV"),
                  trusted=_table_name(trusted_table, "trusted labels CSV"), **options)
    device, dist, output = _start(cfg, output, overwrite)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source = load_source(cfg.images_dir, labels_csv, path_col=cfg.path_col, label_col=cfg.label_col)
    check_source(source, force=cfg.force)
    trusted = None
    if trusted_table is not None:
        source, trusted = merge_trusted(source, trusted_table, images=True, images_dir=cfg.images_dir)
    data, model, model_name, plan, gen = prepare(cfg, source, device, on_progress, timings)
    data.trusted = _rows_mask(trusted, data)
    timings["load_s"] = time.perf_counter() - t0
    return _train_and_report(cfg, source, data, model, model_name, plan, gen, device, dist, output, on_progress,
                             timings, t0, overwrite=overwrite)


def scan_features(features: str | Path | np.ndarray | torch.Tensor | list | pd.DataFrame, labels: Any, *,
                  output: str | Path | None = None, overwrite: bool = False,
                  on_progress: ProgressCallback | None = None, key_col: str | None = None,
                  **options: Any) -> pd.DataFrame:
    """:func:`scan` for samples given as feature vectors (embeddings of any modality, tabular columns).

    Parameters
    ----------
    features : path, numpy.ndarray, torch.Tensor, list of rows or pandas.DataFrame
        (N, d) numbers: a ``.npy`` file or an array row-aligned with ``labels`` (a tensor on
        any device, as a model's embeddings come); a Parquet file with one list column of
        vectors or numeric columns, row-aligned or carrying ``labels``' key column to join
        on; or a DataFrame of numeric columns.
    labels : path, sequence or pandas.DataFrame
        A labels CSV (a label column; a path or id column is optional and becomes the
        report's ``path``), a DataFrame of the same, or one label per row.
    output, overwrite, on_progress
        As for :func:`scan`.
    key_col : str, optional
        The key column of ``labels`` (default: a column named like a path or an id, if any;
        else a sample's key is its 0-based row number).
    **options
        As for :func:`scan`; ``model`` is ``mlp`` (default) or ``linear``.

    Returns
    -------
    pandas.DataFrame
        The same report as :func:`scan`.
    """
    features, labels, output, options = _home(features), _home(labels), _home(output), _homes(options)
    for taken in ("images_dir", "labels_csv", "features", "path_col"):  # set here: a second value was a TypeError
        if taken in options:
            instead = "key_col" if taken == "path_col" else "features and labels, the first two arguments"
            raise UsageError(f"scan_features takes no {taken}; give {instead}")
    _check_callback(on_progress)
    origin = features if isinstance(features, (str, Path)) else f"<{type(features).__name__}>"
    trusted_table = options.pop("trusted", None)
    labels_name = _table_name(labels, "labels CSV") if isinstance(labels, (str, Path, pd.DataFrame)) else None
    cfg = _config(images_dir=None, labels_csv=labels_name, features=str(origin),
                  label_col=options.pop("label_col", None), path_col=key_col,
                  trusted=_table_name(trusted_table, "trusted labels CSV"), **options)
    if not isinstance(features, (str, Path, pd.DataFrame)):
        features = in_memory_matrix(features)  # a tensor or a list of rows as an array; anything else refused
    device, dist, output = _start(cfg, output, overwrite)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source = _label_source(labels, key_col, cfg.label_col)
    check_source(source, force=cfg.force)
    trusted = None
    if trusted_table is not None:
        source, trusted = merge_trusted(source, trusted_table, images=False)
    table = load_features(features, source)
    classes = sorted_classes(source.labels)
    if len(classes) < 2:
        raise InputError(f"need at least two classes to find wrong labels, found {len(classes)} ({classes})",
                         path=source.origin)
    index = {c: k for k, c in enumerate(classes)}
    targets = torch.tensor([index[v] for v in source.labels], dtype=torch.int64)
    data = SampleData(inputs=torch.from_numpy(table.values), targets=targets, classes=classes, image_size=0,
                      trusted=None if trusted is None else torch.from_numpy(trusted))
    gen = seed_everything(cfg.seed)
    model_name = cfg.model or "mlp"
    model = build_feature_model(model_name, table.dim, len(classes))
    cfg.epochs, cfg.lr, cfg.hyper_lr = (d if g is None else g for g, d in
                                        zip((cfg.epochs, cfg.lr, cfg.hyper_lr), FEATURE_DEFAULTS))
    cfg.augment = False
    timings["load_s"] = time.perf_counter() - t0
    return _train_and_report(cfg, source, data, model, model_name, BackbonePlan(None), gen, device, dist, output,
                             on_progress, timings, t0, extra_meta={"features": {
                                 "origin": table.origin, "dim": table.dim, "stored_as": str(table.values.dtype),
                                 "key_col": source.path_col}}, standardisation=(table.mean, table.scale),
                             overwrite=overwrite)


def _home(value: Any) -> Any:
    """A path from Python with ``~`` expanded, as pandas and the shell do ("~/data"); anything else as it is."""
    if isinstance(value, (str, Path)) and str(value).startswith("~"):
        return type(value)(os.path.expanduser(value))
    return value


def _homes(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with :func:`_home` applied to the ones that name files or folders."""
    return {k: _home(v) if k in PATH_OPTIONS else v for k, v in options.items()}


def _check_callback(on_progress: Any) -> None:
    if on_progress is not None and not callable(on_progress):
        raise UsageError(f"on_progress must be a function on_progress(stage, done, total, info), not "
                         f"{type(on_progress).__name__}")


def _table_name(table: str | Path | pd.DataFrame | None, what: str) -> str | None:
    """How the config records an input table: the name its errors give it (:func:`table_name`), if any."""
    return None if table is None else table_name(table, what)


def _rows_mask(mask: np.ndarray | None, data: SampleData) -> torch.Tensor | None:
    """A per-source-row mask as a per-sample one (skipped images dropped)."""
    if mask is None:
        return None
    return torch.from_numpy(mask if data.rows is None else mask[data.rows])


def _label_source(labels: Any, key_col: str | None, label_col: str | None) -> LabeledSource:
    """The labels of a features scan: a CSV path, a DataFrame, or one label per row."""
    if not isinstance(labels, (str, Path, pd.DataFrame)):
        try:
            shape = np.shape(labels)
        except ValueError:  # rows of different lengths
            shape = (len(labels), None)
        if len(shape) != 1:  # the feature matrix, most likely: quoting its rows made a message of kilobytes
            raise UsageError(f"labels must be one per sample (a sequence, a DataFrame or a CSV path), not of shape "
                             f"{shape}; the features come first: scan_features(features, labels)")
    table = labels if isinstance(labels, (str, Path, pd.DataFrame)) else pd.DataFrame({"label": list(labels)})
    return read_label_table(table, key_col=key_col, label_col=label_col)


def _train_progress(on_progress: ProgressCallback, epochs: int) -> StepCallback:
    """The trainer's per-step callback, reporting to ``on_progress`` as stage "train"."""

    def step_cb(epoch: int, step: int, steps: int, loss: float | None) -> None:
        on_progress("train", epoch * steps + step, epochs * steps, {"epoch": epoch + 1, "epochs": epochs, "loss": loss})

    return step_cb


def _start(cfg: ScanConfig, output: str | Path | None,
           overwrite: bool) -> tuple[torch.device, Distributed | None, str | Path | None]:
    """The device, the data-parallel group (under torchrun) and the output this process writes, checked."""
    device = local_device(resolve_device(cfg.device))
    dist = from_environment(device)
    if dist is not None and cfg.resume:
        raise UsageError(f"{option('resume', True)} is not supported under torchrun yet; resume with a single process")
    if dist is not None and not dist.is_main:
        output = None  # rank 0 writes the report
    inputs = ((cfg.labels_csv, "labels CSV"), (cfg.trusted, f"{option('trusted')} file"),
              (cfg.features, f"{option('features')} file"))
    if output is not None:
        check_writable(output, overwrite, inputs, image_folder=cfg.images_dir)
        if Path(output).suffix.lower() in (".csv", ".json", ".tsv", ".txt", ".xlsx", ".html"):
            warnings.warn(f"{output}: the report is a Parquet file whatever its name (noiseaudit export writes a "
                          "CSV of the suspects, noiseaudit html a page)", NoiseAuditWarning, stacklevel=3)
    if cfg.resume and checkpoint_dir(cfg, output) is not None:
        check_resumable(checkpoint_dir(cfg, output))
    if cfg.save_model is not None and (dist is None or dist.is_main):
        if output is not None and same_file(cfg.save_model, output):
            raise UsageError(f"{cfg.save_model}: {option('save_model')} and {option('output')} name the same file")
        ckpt = checkpoint_dir(cfg, output)
        if ckpt is not None and Path(cfg.save_model).resolve() == Path(ckpt).resolve():
            raise UsageError(f"{cfg.save_model}: {option('save_model')} names the folder this scan keeps its "
                             "checkpoint in")
        check_writable(cfg.save_model, overwrite, inputs, image_folder=cfg.images_dir, name="save_model")
    return device, dist, output


def checkpoint_dir(cfg: ScanConfig, output: str | Path | None) -> str | None:
    """Where a scan keeps its checkpoint: ``--checkpoint-dir``, else OUTPUT.ckpt beside the report (None: neither);
    for a report name near the 255 bytes a name may have, its first 200 bytes and a hash of the rest."""
    if cfg.checkpoint_dir or output is None:
        return cfg.checkpoint_dir
    name = Path(output).name
    if len(name.encode()) + len(".ckpt") > 255:
        name = cut_name(name) + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return str(Path(output).with_name(name + ".ckpt"))


def _train_and_report(cfg: ScanConfig, source: LabeledSource, data: SampleData, model: torch.nn.Module,
                      model_name: str, plan: BackbonePlan, gen: torch.Generator, device: torch.device,
                      dist: Distributed | None, output: str | Path | None, on_progress: ProgressCallback | None,
                      timings: dict[str, float], t0: float, extra_meta: dict[str, Any] | None = None,
                      standardisation: tuple[np.ndarray, np.ndarray] | None = None,
                      overwrite: bool = False) -> pd.DataFrame:
    """Train, rank, threshold, and assemble (and write) the report: the stages every scan shares."""
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, method=cfg.method,
                            hyper_lr=cfg.hyper_lr, margin_weight=cfg.margin_weight, meta=cfg.meta,
                            augment=bool(cfg.augment) and not plan.frozen_bottom, schedule=cfg.schedule,
                            precision="fp32" if plan.name is None else plan.precision,
                            trusted_weight=cfg.trusted_weight, layerwise=cfg.layerwise,
                            layerwise_rule=cfg.layerwise_rule,
                            # the final model is the last epoch's mean weights where BatchNorm does not train:
                            # a backbone's top (its count is the model's disagreements), models without any
                            average_last_epoch=plan.name is not None or averaging_fits(model))
    step_cb = None if on_progress is None else _train_progress(on_progress, cfg.epochs)
    checkpoints = None
    ckpt_dir = checkpoint_dir(cfg, output)
    if ckpt_dir is not None and dist is None:
        checkpoints = Checkpointer(ckpt_dir, training_fingerprint(cfg, model_name, data, source,
                                                                  train_cfg.average_last_epoch))
        if not cfg.resume and checkpoints.path.exists():
            warnings.warn(f"{checkpoints.path}: an earlier run's checkpoint will be replaced; "
                          f"pass {option('resume', True)} to continue that run instead", NoiseAuditWarning,
                          stacklevel=2)
    elif cfg.resume:
        raise UsageError(f"{option('resume', True)} needs {option('output')} or {option('checkpoint_dir')} to find "
                         "the checkpoint")
    t1 = time.perf_counter()
    with nullcontext() if checkpoints is None else checkpoints.in_use():
        try:
            result = train(data, model, train_cfg, device, gen, on_step=step_cb, checkpoints=checkpoints,
                           resume=cfg.resume, dist=dist)
        except TrainingFailed:
            if checkpoints is not None:
                checkpoints.remove()  # resuming would train on from the same failure
            raise
        timings["train_s"] = time.perf_counter() - t1
        report = _report(cfg, source, data, result, plan, train_cfg, model_name, device, dist, timings, t0,
                         extra_meta)
        try:
            if cfg.save_model is not None and (dist is None or dist.is_main):
                save_model(cfg.save_model, model, data, plan, model_name, precision=train_cfg.precision,
                           batch_size=PREDICT_BATCH, standardisation=standardisation, overwrite=overwrite)
            if output is not None:
                write_report(report, report.attrs["noiseaudit"], output, overwrite=overwrite)
        except (OutputAppeared, OSError) as exc:  # another run's file, a full disk: the training is not lost
            if checkpoints is None or not checkpoints.path.exists():
                raise
            appeared = isinstance(exc, OutputAppeared)
            again = option("resume", True) + (f" {option('overwrite', True)}" if appeared else "")
            error = OutputAppeared if appeared else NoiseAuditError
            raise error(f"{exc if appeared else f'{exc.filename}: {exc.strerror or exc}'}; the trained run is kept "
                        f"in {checkpoints.path}: run again with {again} to write it") from exc
    if checkpoints is not None:
        checkpoints.remove()  # the report is safe; a stale checkpoint would only confuse a later --resume
    return report


def _report(cfg: ScanConfig, source: LabeledSource, data: SampleData, result: TrainResult, plan: BackbonePlan,
            train_cfg: TrainConfig, model_name: str, device: torch.device, dist: Distributed | None,
            timings: dict[str, float], t0: float, extra_meta: dict[str, Any] | None) -> pd.DataFrame:
    """The report of a trained run: ranked, thresholded, with its trusted and skipped rows and its metadata."""

    trusted = np.zeros(len(data), dtype=bool) if data.trusted is None else data.trusted.numpy()
    ranked = np.flatnonzero(~trusted)  # trusted samples are kept out of the ranking and the threshold
    disagrees = result.probs.argmax(axis=1) != data.targets.numpy()
    score = ranking_score(result.signals, cfg.method)
    loss = result.signals["loss"]
    threshold = choose_threshold(score[ranked], loss[ranked], disagrees[ranked],
                                 noise_rate=cfg.noise_rate, seed=cfg.seed, trust_disagreements=plan.name is not None)
    ranked_by = RANKED_BY[cfg.method]
    if resolve_rank_by(cfg.rank_by, cfg.method, plan.name is not None) == "rate+prob":
        # the count stays the one above; the mean rank only orders who fills it
        given_prob = result.probs[np.arange(len(data)), data.targets.numpy()]
        threshold = reranked(threshold, rank_sum(score[ranked], given_prob[ranked]), loss[ranked])
        ranked_by = RATE_AND_PROB
    rows = data.rows if data.rows is not None else np.arange(len(data))

    def part(keep: np.ndarray, thr: Threshold) -> pd.DataFrame:
        return build_report([source.paths[rows[i]] for i in keep], data.targets.numpy()[keep], data.classes,
                            {k: v[keep] for k, v in result.signals.items()}, result.probs[keep], thr,
                            source.extra.iloc[rows[keep]].reset_index(drop=True), sample_ids=rows[keep])

    report = part(ranked, threshold)
    if trusted.any():
        verified = part(np.flatnonzero(trusted), unranked(int(trusted.sum())))
        report = add_skipped(report, verified.drop(columns=["rank", "suspicion"]).assign(status="trusted"))
    report = add_skipped(report, skipped_rows(source, data.skipped))
    if data.trusted is not None:
        report["trusted"] = (report["status"] == "trusted").to_numpy()
    timings["total_s"] = time.perf_counter() - t0
    report.attrs["noiseaudit"] = {
        "version": __version__,
        "config": asdict(cfg),
        "images_root": str(source.root),
        **(extra_meta or {}),
        "seed": cfg.seed,
        "model": model_name,
        "final_model": "mean of the last epoch's weights" if train_cfg.average_last_epoch else "last step's weights",
        "backbone": plan.metadata(),
        "image_size": data.image_size or None,
        "channels": None if data.is_features else data.channels if plan.name is None else 3,
        "device": str(device),
        "world_size": 1 if dist is None else dist.world,
        "torch": torch.__version__,
        "classes": list(data.classes),
        "n_samples": len(data),
        "n_trusted": int(trusted.sum()),
        "threshold": {"method": threshold.method, "n_flagged": threshold.n_flagged,
                      "estimated_noise_rate": threshold.estimated_noise_rate,
                      "ranked_by": ranked_by,
                      "rate_choice": result.rate_choice,
                      "score_cutoff": threshold.cutoff},
        "skipped": [{"path": source.paths[b.row], "line": source.lines[b.row], "status": b.status,
                     "reason": b.reason} for b in data.skipped],
        "epoch_losses": result.epoch_losses,
        "two_regime_switch_epoch": result.switch_epoch,
        "layer_multipliers": result.layer_multipliers,
        "recoveries": result.recoveries,
        "timings": timings,
    }
    agreement = float((result.probs.argmax(axis=1) == data.targets.numpy())[ranked].mean()) if len(ranked) else 0.0
    note = heavy_flagging(threshold.estimated_noise_rate, agreement, threshold.method)
    if note is not None:
        warnings.warn(f"{threshold.n_flagged} of {len(ranked)} samples flagged. {note}", HeavyFlagging, stacklevel=4)
    return report


def prepare(cfg: ScanConfig, source: LabeledSource, device: torch.device, on_progress: ProgressCallback | None,
            timings: dict[str, float]) -> tuple[SampleData, torch.nn.Module, str, BackbonePlan, torch.Generator]:
    """The dataset, the model to train, its name, the backbone plan and the training generator.

    Decoded images and a model from scratch, or a backbone's cached activations and its top.
    Fills in ``cfg``'s defaults that depend on which (epochs, lr, hyper-lr, augment); everything
    is seeded just before the model is built.
    """
    cache = DecodeCache(cfg.cache_dir) if cfg.cache else None
    key = None if cache is None else source_key(source)  # stat every file once, for both uses
    t0 = time.perf_counter()
    plan = plan_backbone("none" if cfg.model else cfg.backbone, cfg.finetune, source, device, seed=cfg.seed,
                         workers=cfg.workers, cache=cache, key=key, on_progress=on_progress)
    timings["choose_backbone_s"] = time.perf_counter() - t0
    if plan.name is not None and cfg.image_size is not None:
        plan.image_size = cfg.image_size
    if cfg.augment is None:  # on with a backbone (measured in bench/real.py), off from scratch as ever
        cfg.augment = plan.name is not None
    # a cached mirror image stands in for augmentation
    frozen = encoder(plan, device, mirrored=cfg.augment) if plan.frozen_bottom else None
    stage = "decode" if frozen is None else "embed"
    decode_cb = None if on_progress is None else (lambda done, total: on_progress(stage, done, total, {}))
    if on_progress is not None:
        on_progress(stage, 0, len(source), {})  # the stage starts now, after the backbone choice
    data = load_dataset(source, image_size=cfg.image_size if plan.name is None else plan.image_size,
                        workers=cfg.workers, progress=decode_cb, on_bad_image=cfg.on_bad_image, cache=cache,
                        encoder=frozen, cache_key=key)
    gen = seed_everything(cfg.seed)
    if plan.name is None:
        model_name = cfg.model or default_model(data.channels, data.image_size)
        model = build_model(model_name, data.channels, data.image_size, len(data.classes))
    else:
        model_name = f"{plan.name} (finetune {plan.finetune})"
        model = build_top(plan, len(data.classes))
    cfg.epochs, cfg.lr, cfg.hyper_lr = training_defaults(plan, cfg.epochs, cfg.lr, cfg.hyper_lr)
    if plan.name is not None:  # the metadata's backbone.epochs: what trained, an --epochs given included
        plan.epochs = cfg.epochs
    return data, model, model_name, plan, gen


# Options that change what training computes; any change makes a checkpoint unusable.
TRAINING_OPTIONS = ("method", "epochs", "batch_size", "lr", "hyper_lr", "margin_weight", "meta", "schedule", "augment",
                    "seed", "trusted_weight", "layerwise", "layerwise_rule")


def training_fingerprint(cfg: ScanConfig, model_name: str, data: SampleData, source: LabeledSource,
                         average_last_epoch: bool = False) -> dict[str, Any]:
    rows = data.rows if data.rows is not None else range(len(data))
    trusted = [] if data.trusted is None else np.flatnonzero(data.trusted.numpy()).tolist()
    # the weight average only where it is on, so that checkpoints made before it existed still resume from scratch
    averaged = {"average_last_epoch": True} if average_last_epoch else {}
    return {"dataset": dataset_fingerprint(data.inputs, data.targets, [source.paths[i] for i in rows]),
            "trusted": hashlib.sha256(repr(trusted).encode()).hexdigest(),
            "model": model_name, **{k: getattr(cfg, k) for k in TRAINING_OPTIONS}, **averaged}
