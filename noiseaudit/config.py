"""A scan's options: :class:`ScanConfig`, the values each may take, and their checks.

Nothing here imports PyTorch, so the command line refuses a wrong option at once rather than after the seconds
torch takes to load. The modules that act on an option (``train``, ``models``, ``optim``, ``backbone``) take its
choices from here.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from noiseaudit.errors import UsageError, check_number, check_switch, check_whole_number, option

METHODS = ("learned-lr", "plain", "dba")  # noiseaudit.train
MODELS = ("small-cnn", "resnet18", "mlp")  # noiseaudit.models: image models
FEATURE_MODELS = ("mlp", "linear")  # what trains on feature vectors; mlp is the default
META_OBJECTIVES = ("given", "given+predicted", "auto")  # noiseaudit.optim.per_sample_rate
SCHEDULES = ("constant", "cosine", "step", "two-regime", "mlr-snet")  # noiseaudit.optim.schedule
LAYERWISE_RULES = ("grad-norm", "secant")  # noiseaudit.optim.layerwise
LITE0 = "efficientnet-lite0"  # noiseaudit.models.efficientnet, the one pretrained backbone
BACKBONES = ("auto", "none", LITE0)
FINETUNE = ("auto", "none", "top", "deep", "all")  # noiseaudit.backbone
BAD_IMAGE_POLICIES = ("fail", "skip")  # noiseaudit.data.dataset


def check_seed(seed: int) -> None:
    """Refuse a seed that NumPy or torch cannot take (both take 0 to 2**32 - 1 alike)."""
    if not 0 <= seed < 2**32:
        raise UsageError(f"{option('seed')} must be an integer from 0 to 2**32 - 1, got {seed}")


def check_bad_image_policy(on_bad_image: str) -> None:
    """Refuse an ``--on-bad-image`` other than fail or skip (scan and predict check it before reading any input)."""
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise UsageError(f"{option('on_bad_image')} must be one of {', '.join(BAD_IMAGE_POLICIES)}, "
                         f"got {on_bad_image!r}")


def check_backbone_options(backbone: str, finetune: str) -> None:
    if backbone not in BACKBONES:
        raise UsageError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if finetune not in FINETUNE:
        raise UsageError(f"unknown {option('finetune')} {finetune!r}; choose one of {', '.join(FINETUNE)}")


MAX_IMAGE_SIZE = 1024  # --image-size: images are decoded whole into memory at this side
TRUSTED_WEIGHT = 0.5  # weight of the trusted samples' class references (measured in bench/detect.py --trusted)


@dataclass
class ScanConfig:
    """Every option of a scan; stored whole in the report's metadata.

    The fields are the ``scan`` command's options with ``_`` for ``-`` (``hyper_lr`` is ``--hyper-lr``,
    ``cache=False`` is ``--no-cache``); docs/cli.md says what each does. None means chosen from the input
    (``epochs``, ``lr``, ``hyper_lr``, ``model``, ``image_size``, ``augment``). ``workers`` is min(8, CPU count)
    from Python, 2 on the command line. ``scan`` takes any of them as keywords but ``features``; ``scan_features``
    any but the image options (``IMAGE_OPTIONS``) and those it sets from its arguments (``images_dir``,
    ``labels_csv``, ``features``; ``path_col`` is its ``key_col``).
    """

    images_dir: str | None
    labels_csv: str | None = None
    features: str | None = None  # a features file, or what scan_features was given ("<ndarray>", "<Tensor>")
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
    balance_classes: bool = False  # train on logits + log(class frequency), rank with the logits (train.py)
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
        models = MODELS if self.features is None else FEATURE_MODELS
        if self.model is not None and self.model not in MODELS + models:  # an image model on features: below
            raise UsageError(f"unknown model {self.model!r}; choose one of {', '.join(models)}")
        for name in ("epochs", "batch_size", "workers", "image_size", "seed"):  # 1.5 epochs trained 2
            check_whole_number(name, getattr(self, name))
        for name in ("lr", "hyper_lr", "margin_weight", "trusted_weight", "noise_rate"):  # '0.1' failed at '<'
            check_number(name, getattr(self, name))
        for name in ("layerwise", "balance_classes", "resume", "cache", "force"):  # resume="no" resumed
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
        check_backbone_options(self.backbone, self.finetune)
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
        if self.hyper_lr == 0 and self.method == "learned-lr":  # every rate stays 1: nothing ranks, none is flagged
            raise UsageError(f"{option('hyper_lr', 0)} keeps every learned rate at 1, so they rank nothing; "
                             f"{option('method', 'plain')} trains with uniform rates and ranks by the loss")
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
IMAGE_OPTIONS = ("finetune", "image_size", "augment", "on_bad_image", "cache", "cache_dir", "workers")  # not features
PATH_OPTIONS = frozenset({"trusted", "save_model", "checkpoint_dir", "cache_dir"})  # ScanConfig fields naming files
# the automatic threshold's rules, as the metadata's threshold.rule names them (noiseaudit.report.threshold)
NOT_BIMODAL, AGREED, DISPUTED, VALLEY, MIDPOINT = ("lower: not bimodal", "lower: the model agrees", "upper",
                                                   "valley", "midpoint")
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


def make_config(**options: Any) -> ScanConfig:
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
