"""Which network a scan trains: one from scratch, or the top of a pretrained backbone.

``--backbone auto`` (the default) uses EfficientNet-Lite0 for colour images when the
``pretrained`` extra is installed, unless a quick measurement on a sample says that
ImageNet features fit this data worse than a small network trained from scratch
(graphics, icons, sketches, scans can be like that): the cross-validated accuracy of a
linear probe on the sample's embeddings against the held-out accuracy of a short
from-scratch run on the same sample (:func:`prefer_backbone`). Both figures and the
choice go into the report's metadata.

``--finetune`` says how much of the backbone trains: ``none`` (a linear head on the
frozen, pooled embedding), ``top`` (the last stage, the conv head and the head, over
cached activations of the frozen part below), ``deep`` (the last two stages, i.e. the four
192-channel blocks and the 320-channel one, the conv head and the head, likewise) or ``all``
(everything, from decoded images; for GPUs). Except with ``all`` the frozen part runs once per
dataset and its output is cached (:class:`noiseaudit.data.dataset.Encoder`). ``auto`` (the
default) is ``deep``, which ranked better than ``top`` at every size and on every label set
measured (CIFAR-10N at 10k: AP +0.018 / +0.047 / +0.050 on ``worse`` / ``aggre`` / ``random1``;
bench/README.md).

What ``deep`` costs grows with the data, so its input size and epochs follow the dataset's size
(:func:`finetune_settings`). Below ``LARGE_FROM`` samples it trains 4 epochs at 128 px: a warm scan
of 10k photos then stays within a minute on 2 bfloat16 CPU cores, and the model memorises fewer
wrong labels than in 6 epochs, so the count of its disagreements holds (``worse`` 0.374 against
0.337 with 6 epochs, 0.410 wrong). From there a scan is a batch job, and it trains 6 epochs at
160 px, which ranked better (50k ``worse``: AUROC 0.954 against 0.950 at 128 px).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from noiseaudit.config import check_backbone_options
from noiseaudit.data.cache import DecodeCache
from noiseaudit.data.dataset import Encoder, SampleData, load_dataset, source_key
from noiseaudit.data.images import GRAY_MODES, DecodeError, image_header
from noiseaudit.data.source import LabeledSource
from noiseaudit.errors import NoiseAuditHint, NoiseAuditWarning, option, warn
from noiseaudit.models import efficientnet as lite0
from noiseaudit.progress import ProgressCallback

AUTO_FINETUNE = "deep"  # what --finetune auto trains with the backbone (bench/README.md, CIFAR-10N)
LARGE_FROM = 20_000  # from this many samples deep trains at DEEP_LARGE's size and epochs, below at DEEP_SMALL's
# the first trained block of each --finetune: top is the last stage (block 15), deep the last two (11-15)
SPLIT = {"none": lite0.NUM_BLOCKS + 1, "top": lite0.NUM_BLOCKS - 1, "deep": lite0.NUM_BLOCKS - 5, "all": 0}
IMAGE_SIZE = 128  # measured in bench/real.py: see bench/README.md; also the size the automatic choice measures at
DEEP_SMALL, DEEP_LARGE = (128, 4), (160, 6)  # deep's (image size, epochs) below / from LARGE_FROM samples
FROZEN_PRECISION = "fp32"  # the frozen part's, whatever the training's (see encoder)
PROBE_SAMPLE = 2000  # images the automatic choice measures on
CHOICE_STEPS = 3  # what its progress counts: the sample decoded, embedded, and a scratch model trained on it
MIN_PROBE, MIN_PROBE_PER_CLASS = 100, 5  # below either there is nothing to measure: the backbone, as for photos
PROBE_MARGIN = 0.0  # the backbone is chosen when its probe is at least the scratch run's accuracy minus this
CHOICE_RULE = 2  # part of the cached choice's name: raised when the rule changes (2: near-gray pixels are gray)
# (epochs, lr, hyper_lr) when not given: from scratch as ever; with the backbone, as measured in bench/real.py
# (deep's epochs: DEEP_SMALL or DEEP_LARGE by the dataset's size)
SCRATCH_DEFAULTS = (10, 0.05, 0.05)
BACKBONE_DEFAULTS = {"none": (20, 0.05, 0.2), "top": (6, 0.02, 0.2), "deep": (DEEP_LARGE[1], 0.02, 0.2),
                     "all": (6, 0.02, 0.2)}


@dataclass
class BackbonePlan:
    """What a scan trains, and why (``evidence`` holds the automatic choice's measurements)."""

    name: str | None  # None: a model from scratch
    finetune: str = "top"
    image_size: int = IMAGE_SIZE
    precision: str = "fp32"
    evidence: dict[str, Any] = field(default_factory=dict)
    finetune_rule: str = ""  # how --finetune auto chose, and deep's size and epochs; empty otherwise
    epochs: int | None = None  # the epochs it trains: the rule's default until the scan fills in --epochs

    @property
    def split(self) -> int:
        return SPLIT[self.finetune]

    @property
    def frozen_bottom(self) -> bool:
        """Whether part of the network runs once, frozen, and the rest trains on its cached outputs."""
        return self.name is not None and self.finetune != "all"

    def metadata(self) -> dict[str, Any]:
        meta = {**asdict(self), "split": self.split if self.name else None}
        if self.name is None:  # from scratch: the backbone's settings did not apply (evidence says why)
            meta.update(finetune=None, image_size=None, precision=None, epochs=None, finetune_rule="")
        return meta


def training_defaults(plan: BackbonePlan, epochs: int | None, lr: float | None,
                      hyper_lr: float | None) -> tuple[int, float, float]:
    """``epochs``, ``lr`` and ``hyper_lr``, each filled in from the defaults of what ``plan`` trains when not given."""
    defaults = SCRATCH_DEFAULTS if plan.name is None else BACKBONE_DEFAULTS[plan.finetune]
    if plan.name is not None and plan.epochs is not None:
        defaults = (plan.epochs, *defaults[1:])
    given = (epochs, lr, hyper_lr)
    return tuple(d if g is None else g for g, d in zip(given, defaults))  # type: ignore[return-value]


def prefer_backbone(probe_accuracy: float, scratch_accuracy: float) -> bool:
    """The selection rule: the backbone unless the from-scratch run beat its linear probe."""
    return probe_accuracy >= scratch_accuracy - PROBE_MARGIN


def autocast_precision(device: torch.device) -> str:
    """bf16 where the hardware runs it natively (CUDA with bf16, CPUs with AVX-512 BF16 / AMX), else fp32."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        try:
            return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
        except (AttributeError, RuntimeError):
            return "fp32"
    return "fp32"


def slow_precision(plan: BackbonePlan, device: torch.device) -> str | None:
    """What to say when a backbone will train in float32 on a CPU (one without AVX-512 BF16 or AMX): the scan
    takes longer than the timings quoted for bfloat16 CPUs, and nothing else would say why. None otherwise."""
    if plan.name is None or device.type != "cpu" or plan.precision != "fp32":
        return None
    return ("this CPU has no bfloat16 (AVX-512 BF16 or AMX), so the backbone trains in float32: expect the scan to "
            f"take longer than the README's timings, measured on bfloat16 CPUs ({option('finetune')} top trains "
            "about 2.5x faster, and ranks worse)")


def finetune_settings(finetune: str, n_samples: int) -> tuple[str, int, int, str]:
    """What ``--finetune`` trains on ``n_samples`` samples: (finetune, image size, default epochs, the rule).

    ``auto`` is ``AUTO_FINETUNE``. ``deep`` trains at ``DEEP_SMALL``'s size and epochs below
    ``LARGE_FROM`` samples and at ``DEEP_LARGE``'s from there; everything else at ``IMAGE_SIZE``
    and its ``BACKBONE_DEFAULTS``. The rule says how ``auto`` and the size chose ("" when nothing
    was chosen).
    """
    chosen = AUTO_FINETUNE if finetune == "auto" else finetune
    rule = f"auto: {AUTO_FINETUNE}" if finetune == "auto" else ""
    if chosen != "deep":
        return chosen, IMAGE_SIZE, BACKBONE_DEFAULTS[chosen][0], rule
    large = n_samples >= LARGE_FROM
    size, epochs = DEEP_LARGE if large else DEEP_SMALL
    sizing = f"{n_samples} samples {'>=' if large else '<'} {LARGE_FROM}: {size} px, {epochs} epochs"
    return chosen, size, epochs, f"{rule}; {sizing}" if rule else sizing


def encoder(plan: BackbonePlan, device: torch.device, *, mirrored: bool = False, batch_size: int = 256) -> Encoder:
    """The frozen part of ``plan`` as an Encoder: (B, S, S, 3) uint8 -> float16 activations, with
    ``mirrored`` a second view of each image flipped left to right, as (B, 2, C, H, W).

    It runs in float32 (``FROZEN_PRECISION``) whatever ``plan.precision`` (which is the training's): the folded forward
    keeps the residual stream in its input's dtype, and in bfloat16 the rounding adds up over
    15 blocks (CIFAR-10N ``aggre`` AP 0.599 against 0.636 from float32 activations; training in
    bfloat16 changed nothing), for a 1.25x speed-up only (bench/results/frozen_speed_bf16.json).
    """
    bottom = lite0.Lite0Bottom(lite0.load_pretrained(plan.image_size), plan.split).to(device)
    if device.type == "cpu":
        bottom = bottom.to(memory_format=torch.channels_last)
    with torch.no_grad():
        shape = tuple(bottom(torch.zeros(1, 3, plan.image_size, plan.image_size, device=device)).shape[1:])
    mean, std = (255.0 * v for v in lite0.INPUT_NORMALIZATION)

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return bottom(x).half()

    def encode(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().sub_(mean).div_(std)
        out = torch.stack([run(x), run(x.flip(3))], dim=1) if mirrored else run(x)
        return out.contiguous().cpu().numpy()

    views = "-mirrored" if mirrored else ""
    # the cache entry names the weights and the device kind too: another file, or GPU kernels, compute other values
    return Encoder(name=f"{plan.name}-b{plan.split}-{FROZEN_PRECISION}-folded{views}-{device.type}-"
                        f"w{lite0.weights_id()}",
                   shape=((2, *shape) if mirrored else shape), dtype="float16", encode=encode, batch_size=batch_size)


def build_top(plan: BackbonePlan, num_classes: int) -> nn.Module:
    """The trained part of ``plan`` with a new linear head, initialised from the ImageNet weights."""
    return lite0.Lite0Top(lite0.load_pretrained(plan.image_size), plan.split, num_classes)


def plan_backbone(backbone: str, finetune: str, source: LabeledSource, device: torch.device, *, seed: int,
                  workers: int, cache: DecodeCache | None = None, key: str | None = None,
                  on_progress: ProgressCallback | None = None, on_bad_image: str = "skip") -> BackbonePlan:
    """Resolve ``--backbone``: an explicit name is used as asked (the extra must be installed);
    ``auto`` measures on a sample of ``source`` (see the module docstring). With a ``cache`` the
    measurement is remembered for these files and this seed, so a warm scan repeats none of it.
    ``key`` is :func:`source_key` of ``source`` when the caller has it already; ``on_progress`` hears the
    measurement's three steps as stage "choose" (decode the sample, embed it, train the scratch model on it).
    ``on_bad_image="fail"``: a bad image in the sample stops the scan there, as decoding all of them would later."""
    check_backbone_options(backbone, finetune)
    finetune, size, epochs, rule = finetune_settings(finetune, len(source))
    if backbone == "none":
        return BackbonePlan(None, finetune)
    if backbone == lite0.NAME:
        lite0.weights_path()  # the one-line install hint when the extra is missing
        return BackbonePlan(lite0.NAME, finetune, size, autocast_precision(device), finetune_rule=rule, epochs=epochs)
    installed = lite0.available()
    plan = BackbonePlan(lite0.NAME, finetune, precision=autocast_precision(device))
    key = None if cache is None else key or source_key(source)
    # the measurement trains on the labels of a sample drawn by position: both are part of what it remembers
    labels = hashlib.sha256(repr(list(zip(source.paths, map(str, source.labels)))).encode()).hexdigest()[:16]
    note = (f"choice{CHOICE_RULE}-{seed}-{PROBE_SAMPLE}-{plan.image_size}-{FROZEN_PRECISION}-{int(installed)}-"
            f"{labels}")
    evidence = None if key is None else cache.note(key, note)
    if evidence is None:
        evidence = measure_choice(plan, source, device, seed=seed, workers=workers, installed=installed,
                                  on_progress=on_progress, on_bad_image=on_bad_image)
        if key is not None:
            cache.store_note(key, note, evidence)
    if evidence["reason"] == "no extra":
        warn(f"colour images: a pretrained backbone usually finds wrong labels here better and faster; "
             f"install it with {lite0.INSTALL}", NoiseAuditHint)
    use = evidence.get("chosen") == lite0.NAME
    return BackbonePlan(lite0.NAME if use else None, finetune, size, plan.precision, evidence, rule if use else "",
                        epochs)


def measure_choice(plan: BackbonePlan, source: LabeledSource, device: torch.device, *, seed: int, workers: int,
                   installed: bool, on_progress: ProgressCallback | None = None,
                   on_bad_image: str = "skip") -> dict[str, Any]:
    """The automatic choice's evidence: grayscale, no extra, or the probe against the scratch run."""
    def step(done: int) -> None:  # a minute of work on 2 CPU cores, said rather than silent
        if on_progress is not None:
            on_progress("choose", done, CHOICE_STEPS, {})

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(len(source))[:PROBE_SAMPLE])
    if all_gray_headers([source.root / source.paths[i] for i in rows]):
        return {"reason": "grayscale", "chosen": "from scratch"}
    sub = LabeledSource(source.root, [source.paths[i] for i in rows], [source.labels[i] for i in rows],
                        [source.lines[i] for i in rows], source.origin)
    step(0)
    with warnings.catch_warnings():  # what the sample's reading warns of, the full reading says again
        warnings.simplefilter("ignore", NoiseAuditWarning)
        data = load_dataset(sub, image_size=plan.image_size, workers=workers, on_bad_image=on_bad_image)
    if data.channels == 1:
        return {"reason": "grayscale", "chosen": "from scratch"}
    if not installed:
        return {"reason": "no extra", "chosen": "from scratch"}
    images, targets = data.inputs.permute(0, 2, 3, 1).numpy(), data.targets.numpy()
    per_class = np.bincount(targets, minlength=len(data.classes))
    if len(targets) < MIN_PROBE or per_class.min() < MIN_PROBE_PER_CLASS:
        smallest = int(per_class.argmin())  # the class too small to measure, where the sample is large enough
        fewest = {} if len(targets) < MIN_PROBE else {"fewest": [str(data.classes[smallest]), int(per_class[smallest])]}
        return {"reason": "too few images to measure", "sample": int(len(targets)), **fewest, "chosen": lite0.NAME}
    step(1)
    probe = probe_accuracy(embed(plan, images, device), targets, seed)
    step(2)
    scratch = scratch_accuracy(images, targets, seed)
    step(3)
    return {"reason": "measured", "sample": int(len(targets)), "probe_accuracy": round(probe, 4),
            "scratch_accuracy": round(scratch, 4), "margin": PROBE_MARGIN,
            "chosen": lite0.NAME if prefer_backbone(probe, scratch) else "from scratch"}


def all_gray_headers(files: list) -> bool:
    """Whether every readable file among ``files`` declares a grayscale mode (no pixels decoded)."""
    for f in files:
        try:
            if image_header(f)[2] not in GRAY_MODES:
                return False
        except (DecodeError, OSError):
            continue
    return True


@torch.no_grad()
def embed(plan: BackbonePlan, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Pooled 1280-d embeddings of (n, S, S, 3) uint8 images under the frozen backbone."""
    frozen = encoder(BackbonePlan(plan.name, "none", plan.image_size, plan.precision), device)
    return np.concatenate([frozen.encode(images[i:i + 256]) for i in range(0, len(images), 256)]).reshape(
        len(images), -1).astype(np.float32)


def probe_accuracy(features: np.ndarray, targets: np.ndarray, seed: int, folds: int = 5) -> float:
    """Cross-validated accuracy of a linear probe (ridge regression on one-hot targets) on ``features``."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = max(2, min(folds, int(np.bincount(targets).min())))
    probe = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(-1, 4, 6)))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(probe, features, targets, cv=cv).mean())


def scratch_accuracy(images: np.ndarray, targets: np.ndarray, seed: int, size: int = 32, epochs: int = 8) -> float:
    """Held-out accuracy (a fifth of the sample) of the small CNN trained from scratch for a few epochs."""
    from noiseaudit.models import build_model
    from noiseaudit.runtime import seed_everything
    from noiseaudit.train import TrainConfig, normaliser, predict, train

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="area").round().clamp(0, 255).to(torch.uint8)
    order = np.random.default_rng(seed).permutation(len(targets))
    test, fit = order[: len(order) // 5], order[len(order) // 5:]
    k = int(targets.max()) + 1
    data = SampleData(x[fit], torch.from_numpy(targets[fit]), list(range(k)), size)
    gen = seed_everything(seed)
    model = build_model("small-cnn", 3, size, k)
    train(data, model, TrainConfig(epochs=epochs, method="plain"), torch.device("cpu"), gen)
    mean, std = normaliser(data.inputs)
    return float((predict(model, x[test], mean, std).argmax(axis=1) == targets[test]).mean())
