"""``scan``: images + labels in, ranked per-sample report out.

source -> dataset -> trainer -> per-sample records -> report (-> Parquet).
"""

from __future__ import annotations

import hashlib
import os
import platform
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noiseaudit._version import __version__
from noiseaudit.backbone import (BackbonePlan, build_top, encoder, plan_backbone, slow_precision,
                                 training_defaults)
from noiseaudit.checkpoint import (TRAINING_OPTIONS, Checkpointer, Interrupted, check_resumable, dataset_fingerprint,
                                   dataset_parts, refuse_if_in_use)
from noiseaudit.config import (FEATURE_DEFAULTS, IMAGE_OPTIONS, PATH_OPTIONS, RANKED_BY, RATE_AND_PROB, ScanConfig,
                               make_config, resolve_rank_by)
from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.checks import check_source
from noiseaudit.data.csvfile import table_name
from noiseaudit.data.dataset import (SampleData, SkippedImage, load_dataset, say_skipped, sorted_classes,
                                     source_key)
from noiseaudit.data.duplicates import first_identical, row_digests
from noiseaudit.data.features import in_memory_matrix, load_features
from noiseaudit.data.source import LabeledSource, load_source, read_label_table
from noiseaudit.data.trusted import merge_trusted
from noiseaudit.distributed import Distributed, from_environment, local_device
from noiseaudit.errors import (HeavyFlagging, InputError, ModelAtChance, NoiseAuditError, NoiseAuditHint,
                               NoiseAuditWarning, TrainingFailed, UnlearnedClasses, UsageError, option, warn)
from noiseaudit.model_io import save_model
from noiseaudit.models import build_feature_model, build_model, default_model
from noiseaudit.optim.averaging import fits as averaging_fits
from noiseaudit.progress import ProgressCallback, stage_progress
from noiseaudit.report.build import add_skipped, build_report, carried_columns, with_duplicates
from noiseaudit.report.io import OutputAppeared, check_writable, cut_name, same_file, save_report
from noiseaudit.report.groups import unlearned_line
from noiseaudit.report.summary import at_chance, heavy_flagging, unlearned_classes
from noiseaudit.report.threshold import Threshold, choose_threshold, rank_sum, reranked, unranked
from noiseaudit.runtime import keeps_random_state, resolve_device, seed_everything
from noiseaudit.train import PREDICT_BATCH, StepCallback, TrainConfig, TrainResult, train


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


@keeps_random_state
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
    overwrite : bool, default False
        Allow replacing an existing ``output``.
    on_progress : callable, optional
        Called as ``on_progress(stage, done, total, info)``. ``stage`` is ``"decode"`` (or ``"embed"``
        through a backbone), ``"choose"`` (the backbone probe) or ``"train"``; a training step's ``info``
        holds ``epoch``, ``epochs`` and ``loss`` (the epoch's mean loss at its last step, else None), the
        other stages' info is empty.
    **options
        Any field of :class:`ScanConfig` (``epochs``, ``lr``, ``seed``, ``noise_rate``, ...);
        ``trusted`` may be a DataFrame too.

    Returns
    -------
    pandas.DataFrame
        One row per sample (see README, "Report schema"); the run metadata is
        in ``report.attrs["noiseaudit"]``.

    Raises
    ------
    InputError
        Bad input (a missing image, a malformed CSV, a likely wrong folder level), naming the file and line.
    UsageError
        An option out of range or misspelt, or an output that exists without ``overwrite``.
    TrainingFailed
        Training diverged or collapsed at these settings.
    Interrupted
        SIGINT or SIGTERM; the run is checkpointed and ``resume=True`` continues it.

    Warns
    -----
    NoiseAuditWarning
        Something left out or doubtful (files without an image extension, a file under two names, ...).
    HeavyFlagging
        A large share flagged: many wrong labels, or a model too weak for the data.
    ModelAtChance
        The model agrees with the given labels no more than always predicting the most common one would: the
        ranking means nothing (labels that do not belong to the samples, or failed training).
    SkippedImages
        With ``on_bad_image="skip"``: the images left out (also in the report, with their ``status``).
    """
    if not isinstance(images_dir, (str, os.PathLike)):
        raise UsageError(f"the image folder comes first, as a path, then the labels: scan('images/', labels); got a "
                         f"{type(images_dir).__name__} as the image folder")
    images_dir, labels_csv, output, options = _home(images_dir), _home(labels_csv), _home(output), _homes(options)
    if "features" in options:  # a ScanConfig field, which scan would record and never read
        raise UsageError("scan takes images; feature vectors go to scan_features(features, labels)")
    _check_callback(on_progress)
    trusted_table = options.pop("trusted", None)
    cfg = make_config(images_dir=str(images_dir), labels_csv=_table_name(labels_csv, "labels CSV"),
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


@keeps_random_state
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
    for name in IMAGE_OPTIONS:  # taken silently, and used by nothing
        if name in options:
            raise UsageError(f"{name} is an option of images; scan_features uses its feature vectors as given")
    _check_callback(on_progress)
    origin = features if isinstance(features, (str, Path)) else f"<{type(features).__name__}>"
    trusted_table = options.pop("trusted", None)
    labels_name = _table_name(labels, "labels CSV") if isinstance(labels, (str, Path, pd.DataFrame)) else None
    cfg = make_config(images_dir=None, labels_csv=labels_name, features=str(origin),
                  label_col=options.pop("label_col", None), path_col=key_col,
                  trusted=_table_name(trusted_table, "trusted labels CSV"), **options)
    if not isinstance(features, (str, Path, pd.DataFrame)):
        features = in_memory_matrix(features)  # a tensor or a list of rows as an array; anything else refused
    device, dist, output = _start(cfg, output, overwrite)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source = read_label_table(labels, key_col=key_col, label_col=cfg.label_col)
    check_source(source, force=cfg.force)
    trusted = None
    if trusted_table is not None:
        source, trusted = merge_trusted(source, trusted_table, images=False)
    _check_same_order(features, labels, source)
    table = load_features(features, source)
    classes = sorted_classes(source.labels)
    if len(classes) < 2:
        raise InputError(f"need at least two classes to find wrong labels, found {len(classes)} ({classes})",
                         path=source.origin)
    index = {c: k for k, c in enumerate(classes)}
    targets = torch.tensor([index[v] for v in source.labels], dtype=torch.int64)
    data = SampleData(inputs=torch.from_numpy(table.values), targets=targets, classes=classes, image_size=0,
                      trusted=None if trusted is None else torch.from_numpy(trusted),
                      identical=first_identical(row_digests(table.values)))
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


def _check_same_order(features: Any, labels: Any, source: LabeledSource) -> None:
    """Refuse pandas features and labels paired by position (no key column to join on) whose indexes differ: one
    of them reordered (``df.sample(frac=1)``) was paired row by row, silently, and most labels flagged."""
    if not (isinstance(features, pd.DataFrame) and isinstance(labels, (pd.Series, pd.DataFrame))):
        return
    joined = source.path_col is not None and source.path_col in features.columns
    if joined or len(features) != len(labels) or features.index.equals(labels.index):
        return
    ours, theirs = features.index.tolist(), labels.index.tolist()
    k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), 0)
    raise UsageError(f"features and labels are paired by position, but their indexes differ (at row {k}: "
                     f"{ours[k]!r} in the features, {theirs[k]!r} in the labels): put them in one "
                     "order (labels.loc[features.index]), or reset both indexes if the order is right")


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
    if dist is not None and cfg.checkpoint_dir:  # it was ignored without a word: nothing is checkpointed there
        raise UsageError(f"{option('checkpoint_dir')}: a torchrun scan keeps no checkpoints yet (they are "
                         "single-process); leave it out, or run alone to checkpoint")
    if dist is not None and not dist.is_main:
        output = None  # rank 0 writes the report
    inputs = ((cfg.labels_csv, "labels CSV"), (cfg.trusted, f"{option('trusted')} file"),
              (cfg.features, f"{option('features')} file"))
    if output is not None:
        check_writable(output, overwrite, inputs, image_folder=cfg.images_dir)
        if Path(output).suffix.lower() in (".csv", ".json", ".tsv", ".txt", ".xlsx", ".html"):
            warn(f"{output}: the report is a Parquet file whatever its name (noiseaudit export writes a "
                 "CSV of the suspects, noiseaudit html a page)", NoiseAuditWarning)
    ckpt = checkpoint_dir(cfg, output)
    if ckpt is not None and dist is None:
        refuse_if_in_use(ckpt)  # now, not after the images are decoded
    if cfg.resume and ckpt is not None:
        check_resumable(ckpt)
    if cfg.save_model is not None and (dist is None or dist.is_main):
        if output is not None and same_file(cfg.save_model, output):
            raise UsageError(f"{cfg.save_model}: {option('save_model')} and {option('output')} name the same file")
        if ckpt is not None and same_file(cfg.save_model, ckpt):
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
                            layerwise_rule=cfg.layerwise_rule, balance_classes=cfg.balance_classes,
                            # the final model is the last epoch's mean weights where BatchNorm does not train:
                            # a backbone's top (its count is the model's disagreements), models without any
                            average_last_epoch=plan.name is not None or averaging_fits(model))
    step_cb = None if on_progress is None else _train_progress(on_progress, cfg.epochs)
    t1 = time.perf_counter()
    checkpoints = None
    ckpt_dir = checkpoint_dir(cfg, output)
    fingerprint = training_fingerprint(cfg, model_name, data, source, train_cfg.average_last_epoch)
    timings["fingerprint_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    if ckpt_dir is not None and dist is None:
        checkpoints = Checkpointer(ckpt_dir, fingerprint, overwrite=output is not None and Path(output).exists())
    elif cfg.resume:
        raise UsageError(f"{option('resume', True)} needs {option('output')} or {option('checkpoint_dir')} to find "
                         "the checkpoint")
    with nullcontext() if checkpoints is None else checkpoints.in_use():
        # said once the folder is this run's: a second scan into the same output is refused by in_use instead
        if checkpoints is not None and not cfg.resume and checkpoints.path.exists():
            warn(f"{checkpoints.path}: an earlier run's checkpoint will be replaced; "
                 f"pass {option('resume', True)} to continue that run instead", NoiseAuditWarning)
        try:
            result = train(data, model, train_cfg, device, gen, on_step=step_cb, checkpoints=checkpoints,
                           resume=cfg.resume, dist=dist)
        except TrainingFailed:
            if checkpoints is not None:
                checkpoints.remove()  # resuming would train on from the same failure
            raise
        timings["train_s"] = time.perf_counter() - t1
        try:
            report = _report(cfg, source, data, result, plan, train_cfg, model_name, device, dist, timings, t0,
                             {**(extra_meta or {}), "data_fingerprint": fingerprint["dataset"]})
            if cfg.save_model is not None and (dist is None or dist.is_main):
                save_model(cfg.save_model, model, data, plan, model_name, precision=train_cfg.precision,
                           batch_size=PREDICT_BATCH, standardisation=standardisation, overwrite=overwrite)
            if output is not None:
                save_report(report, report.attrs["noiseaudit"], output, overwrite=overwrite)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM after training: its last checkpoint holds the run
            if checkpoints is None or not checkpoints.path.exists():
                raise
            raise Interrupted(f"interrupted after training; {checkpoints.kept('write the report')}",
                              getattr(exc, "signum", signal.SIGINT)) from None
        except (OutputAppeared, OSError) as exc:  # another run's file, a full disk: the training is not lost
            if checkpoints is None or not checkpoints.path.exists():
                raise
            appeared = isinstance(exc, OutputAppeared)
            checkpoints.overwrite |= appeared  # the file there now is the one to replace
            error = OutputAppeared if appeared else NoiseAuditError
            raise error(f"{exc if appeared else f'{exc.filename}: {exc.strerror or exc}'}; "
                        f"{checkpoints.kept('write it')}") from exc
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
    report = with_duplicates(add_skipped(report, skipped_rows(source, data.skipped)), rows, data.identical)
    if data.trusted is not None:
        report["trusted"] = (report["status"] == "trusted").to_numpy()
    timings["total_s"] = time.perf_counter() - t0
    report.attrs["noiseaudit"] = {
        "version": __version__,
        "config": asdict(cfg),
        "images_root": None if data.is_features else str(source.root),
        "working_dir": os.getcwd(),  # what the config's relative paths (as the user typed them) are relative to
        **(extra_meta or {}),
        "seed": cfg.seed,
        "model": model_name,
        "final_model": "mean of the last epoch's weights" if train_cfg.average_last_epoch else "last step's weights",
        "backbone": plan.metadata(),
        "image_size": data.image_size or None,
        "decode_cache": data.cache,  # hit: the pixels (or activations) came from the cache, not the files
        "channels": None if data.is_features else data.channels if plan.name is None else 3,
        "device": str(device),
        "world_size": 1 if dist is None else dist.world,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),  # another count orders float sums otherwise: another report
        "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
        "classes": list(data.classes),
        "n_samples": len(data),
        "n_trusted": int(trusted.sum()),
        "threshold": {"method": threshold.method, "n_flagged": threshold.n_flagged,
                      "estimated_noise_rate": threshold.estimated_noise_rate,
                      "ranked_by": ranked_by,
                      "rate_choice": result.rate_choice,
                      "score_cutoff": threshold.cutoff,
                      # the automatic count's brackets: low-rate samples, and those of them the model disputes
                      "upper_count": threshold.counts[0], "lower_count": threshold.counts[1],
                      "rule": threshold.rule},
        "skipped": [{"path": source.paths[b.row], "line": source.lines[b.row], "status": b.status,
                     "reason": b.reason} for b in data.skipped],
        "epoch_losses": result.epoch_losses,
        "two_regime_switch_epoch": result.switch_epoch,
        "layer_multipliers": result.layer_multipliers,
        "recoveries": result.recoveries,
        "timings": timings,
    }
    agreement = float((result.probs.argmax(axis=1) == data.targets.numpy())[ranked].mean()) if len(ranked) else 0.0
    majority = float(np.bincount(data.targets.numpy()[ranked]).max() / len(ranked)) if len(ranked) else 0.0
    chance = at_chance(agreement, majority, len(ranked), len(data.classes))
    if chance is not None:
        warn(chance, ModelAtChance)
    elif barely := unlearned_line(unlearned_classes(report), cfg.balance_classes):
        warn(barely, UnlearnedClasses)
    note = heavy_flagging(threshold.estimated_noise_rate, agreement, threshold.method)
    if note is not None:
        warn(f"{threshold.n_flagged} of {len(ranked)} samples flagged. {note}", HeavyFlagging)
    say_skipped(source, data.skipped, "the report")
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
                         workers=cfg.workers, cache=cache, key=key, on_progress=on_progress,
                         on_bad_image=cfg.on_bad_image)
    timings["choose_backbone_s"] = time.perf_counter() - t0
    if (slow := slow_precision(plan, device)) is not None:
        warn(slow, NoiseAuditHint)
    if plan.name is not None and cfg.image_size is not None:
        plan.image_size = cfg.image_size
    if cfg.augment is None:  # on with a backbone (measured in bench/real.py), off from scratch as ever
        cfg.augment = plan.name is not None
    # a cached mirror image stands in for augmentation
    frozen = encoder(plan, device, mirrored=cfg.augment) if plan.frozen_bottom else None
    stage = "decode" if frozen is None else "embed"
    decode_cb = stage_progress(on_progress, stage)
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
def training_fingerprint(cfg: ScanConfig, model_name: str, data: SampleData, source: LabeledSource,
                         average_last_epoch: bool = False) -> dict[str, Any]:
    rows = data.rows if data.rows is not None else range(len(data))
    trusted = [] if data.trusted is None else np.flatnonzero(data.trusted.numpy()).tolist()
    # the weight average and class balancing only where on, so that checkpoints made before they existed still resume
    switches = {"average_last_epoch": average_last_epoch, "balance_classes": cfg.balance_classes}
    switched = {name: True for name, on in switches.items() if on}
    parts = dataset_parts(data.inputs, data.targets, [source.paths[i] for i in rows])
    return {"dataset": dataset_fingerprint(parts), "dataset_parts": parts,
            "trusted": hashlib.sha256(repr(trusted).encode()).hexdigest(),
            "model": model_name, **{k: getattr(cfg, k) for k in TRAINING_OPTIONS if k not in switches},
            **switched}
