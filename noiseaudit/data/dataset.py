"""Decode a :class:`LabeledSource` into an in-memory tensor dataset (:class:`SampleData`).

The tensor holds either the decoded uint8 images or, with an :class:`Encoder`,
what a frozen network computes from each of them (a pretrained backbone's
activations): images are then decoded in batches at the encoder's input size and
only its output is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from noiseaudit import formats
from noiseaudit.config import BAD_IMAGE_POLICIES
from noiseaudit.data.cache import DecodeCache, files_key
from noiseaudit.data.duplicates import digest, first_identical, from_groups, groups_of, row_digests
from noiseaudit.data.hints import missing_image_hint
from noiseaudit.data.images import GRAY_MODES, GRAY_TOLERANCE, LUMA, DecodeError, decode_image, image_header
from noiseaudit.data.source import LabeledSource, resolve_inside
from noiseaudit.errors import InputError, NoiseAuditWarning, SkippedImages, line_word, option, warn
from noiseaudit.progress import StageProgress as Progress


@dataclass
class SkippedImage:
    """A sample left out under ``on_bad_image="skip"``: its source row, why, and the details."""

    row: int
    status: str  # missing, empty, not_image, too_large, unreadable or corrupt
    reason: str


@dataclass(frozen=True)
class Encoder:
    """What to store for each decoded image instead of its pixels.

    ``encode`` maps a (B, S, S, 3) uint8 batch to a (B, *shape) array of
    ``dtype``; ``name`` tells cache entries of different encoders apart (it
    should name the network, where it was cut and the precision it ran at).
    A ``shape`` of (V, C, H, W) stores V views of each image (e.g. it and its
    mirror image), of which training sees one at random per visit.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    encode: Callable[[np.ndarray], np.ndarray]
    batch_size: int = 256


@dataclass
class SampleData:
    """What training reads: the inputs of every sample, integer targets and the class list.

    ``inputs`` holds decoded images (N, C, S, S) uint8; or an encoder's (N, C, H, W)
    outputs (N, V, C, H, W with V views of each sample); or feature vectors (N, d)
    (:mod:`noiseaudit.data.features`). ``image_size`` is the side images were decoded
    at (0 for feature vectors). ``rows`` maps each sample to its row in the source
    (all rows, in order, unless some were skipped); ``skipped`` lists the rows left out;
    ``trusted`` marks samples whose labels were verified (see ``--trusted``); ``identical``
    holds, for each sample, the position of the first sample with an identical input, or -1
    (:mod:`noiseaudit.data.duplicates`; None where it was not computed).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    classes: list
    image_size: int
    rows: np.ndarray | None = None
    skipped: list[SkippedImage] = field(default_factory=list)
    trusted: torch.Tensor | None = None  # (N,) bool: samples whose labels were verified (a trusted set)
    identical: np.ndarray | None = None  # (N,) int64: the first sample with the same input, or -1
    cache: str = "off"  # the decode cache: "hit" (read from it), "miss" (decoded, then stored) or "off"

    @property
    def is_features(self) -> bool:
        """Feature vectors (N, d) rather than images or activation maps."""
        return self.inputs.dim() == 2

    @property
    def channels(self) -> int:
        """Image channels; for feature vectors, their dimension."""
        return int(self.inputs.shape[-1 if self.is_features else -3])

    @property
    def views(self) -> int:
        """How many views of each sample are stored (1 unless an encoder stored several)."""
        return int(self.inputs.shape[1]) if self.inputs.dim() == 5 else 1

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def sorted_classes(labels: list) -> list:
    """Classes in a stable order: numeric for int labels, lexicographic otherwise."""
    uniq = set(labels)
    if all(isinstance(v, int) for v in uniq):
        return sorted(uniq)
    return sorted(uniq, key=str)


GRAY_CAP, COLOUR_CAP = 64, 32  # the largest automatic image side for gray and for colour content
GRAY_SAMPLE = 256  # images decoded to tell gray content in colour-mode files, where the cap depends on it
SIZE_RULE = 2  # part of the cached size's name: raised when the rule changes (2: gray content, not file modes)


def choose_image_size(shorter_sides: list[int], all_gray: bool) -> int:
    """Median shorter side, clipped to [8, GRAY_CAP] for grayscale and [8, COLOUR_CAP] for colour."""
    median = int(np.median(shorter_sides))
    return int(np.clip(median, 8, GRAY_CAP if all_gray else COLOUR_CAP))


def _sample_is_gray(source: LabeledSource, files: list[Path], rows: list[int], workers: int) -> bool:
    """Whether up to GRAY_SAMPLE of the ``rows`` (a fixed draw) hold gray pixels only, as :func:`as_gray` reads them.

    Gray scans, X-rays and documents are often saved as RGB files; their headers say colour,
    their pixels do not."""
    pick = np.sort(np.random.default_rng(0).permutation(len(rows))[:GRAY_SAMPLE])
    decoded = _each_file(lambda _, f: decode_image(f, 16), files, [rows[j] for j in pick], source, workers, None, {})
    images = [d for d in decoded if not isinstance(d, DecodeError)]
    return bool(images) and as_gray(np.stack(images)).shape[-1] == 1


def _map(fn: Callable, items: list, workers: int, progress: Progress | None) -> list:
    out = []
    if workers <= 1:
        it = map(fn, items)
    else:
        pool = ThreadPoolExecutor(max_workers=workers)
        it = pool.map(fn, items, chunksize=64)
    try:
        for i, res in enumerate(it, 1):
            out.append(res)
            if progress is not None and (i % 256 == 0 or i == len(items)):
                progress(i, len(items))
    finally:
        if workers > 1:
            pool.shutdown(wait=True, cancel_futures=True)
    return out


def _warn_one_file_twice(source: LabeledSource, files: list[Path]) -> None:
    """One warning when two samples are one file under two names (a symlink, a hard-linked copy is not seen): it
    trains twice, and with two labels one of them is wrong, or the data is multi-label."""
    first: dict[Path, int] = {}
    twice: list[tuple[int, int]] = []  # (the file's first sample, this one)
    for i, f in enumerate(files):
        if first.setdefault(f, i) != i:
            twice.append((first[f], i))
    if not twice or all(v is None for v in source.labels):
        return
    clashing = [(a, b) for a, b in twice if source.labels[a] != source.labels[b]]
    a, b = (clashing or twice)[0]
    where = [f"{source.paths[k]!r}" + (f" ({line_word(source.origin, source.lines[k])})"
                                       if source.lines[k] is not None else "") for k in (a, b)]
    labels = (f", labelled {source.labels[a]!r} and {source.labels[b]!r}" if clashing else
              ", with the same label")
    warn(f"{source.origin}: {len(twice)} sample(s) are a file listed under another name too (a symlink), "
         f"{len(clashing)} of them with another label; the first: {where[0]} and {where[1]} are one "
         f"file{labels}. Each name trains as a sample", NoiseAuditWarning)


def say_skipped(source: LabeledSource, skipped: list[SkippedImage], where: str) -> dict[str, Any]:
    """The summary keys of the images ``skipped`` (:func:`noiseaudit.formats.skipped_counts`), said to a notebook
    as a :class:`SkippedImages` warning where there are any (the command line's summary says it instead); ``where``
    names what lists them ("the report")."""
    counts = formats.skipped_counts([(source.paths[b.row], b.status) for b in skipped])
    if skipped:
        warn(formats.skipped_images(counts, where), SkippedImages)
    return counts


def bad_image_error(source: LabeledSource, row: int, reason: str, others: int = 0,
                    read_with: int | None = None) -> InputError:
    """The fail-policy error for an undecodable image: its path, why, the file and line naming it, how many
    ``others`` failed (among the ``read_with`` images of its batch, where not the whole dataset was read), and the
    option that would leave them out."""
    origin, line = source.where(row)
    among = "" if read_with is None else f" among the {read_with} images read with it"
    more = f" (and {others} more{among})" if others else ""
    return InputError(f"{source.paths[row]!r}: {reason}{more}; {option('on_bad_image', 'skip')} leaves "
                      "such images out and lists them in the report", path=origin, line=line)


def _each_file(fn: Callable, files: list[Path], rows: list[int], source: LabeledSource, workers: int,
               progress: Progress | None, bad: dict[int, SkippedImage] | None, batch: bool = False) -> list:
    """``fn(j, files[rows[j]])`` for every position j.

    A DecodeError is recorded in ``bad`` under its source row when ``bad`` is
    given (the skip policy); otherwise the first one, in input order, becomes
    an InputError naming the file and its CSV line, and how many others failed
    (among these ``rows``: a ``batch`` of the dataset, or all of it).
    """
    def call(j: int):
        try:
            return fn(j, files[rows[j]])
        except DecodeError as err:
            return err

    results = _map(call, list(range(len(rows))), workers, progress)
    failed = [j for j, r in enumerate(results) if isinstance(r, DecodeError)]
    if failed and bad is None:
        raise bad_image_error(source, rows[failed[0]], str(results[failed[0]]), len(failed) - 1,
                              len(rows) if batch else None)
    for j in failed:
        bad.setdefault(rows[j], SkippedImage(rows[j], results[j].status, str(results[j])))
    return results


def source_key(source: LabeledSource) -> str:
    """The cache key of the files of ``source`` that exist (their identity, not their pixels)."""
    files = [resolve_inside(source.root, p, origin=source.origin, line=line)
             for p, line in zip(source.paths, source.lines)]
    return files_key(source.root, [f for f in files if _is_file(f)])


def load_dataset(source: LabeledSource, *, image_size: int | None = None, workers: int = 2,
                 progress: Progress | None = None, on_bad_image: str = "fail",
                 cache: DecodeCache | None = None, encoder: Encoder | None = None,
                 cache_key: str | None = None, min_classes: int = 2) -> SampleData:
    """Check, size and decode every image of ``source``.

    With ``on_bad_image="fail"`` a missing or undecodable image raises
    :class:`InputError` naming the file and CSV line. With ``"skip"`` such
    samples are left out and listed in ``SampleData.skipped``. Either way,
    fewer than two classes among the usable samples is an InputError. With a
    ``cache`` the decoded images (and which files failed) are read from it when
    the same files were decoded at the same size before, and stored otherwise.
    With an ``encoder`` (which needs ``image_size``) images are decoded in
    batches and the dataset holds the encoder's outputs, cached the same way.
    ``cache_key`` passes the cache key when the caller already has it
    (:func:`source_key` of the same source), so the files are not stat-ed twice.
    ``min_classes`` is how many classes the usable samples need (prediction asks for none).
    """
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
    if encoder is not None and image_size is None:
        raise ValueError("an encoder needs the image_size it takes")
    _require_two_classes(source.labels, source, minimum=min_classes)
    files = [resolve_inside(source.root, p, origin=source.origin, line=line)
             for p, line in zip(source.paths, source.lines)]
    _warn_one_file_twice(source, files)
    bad: dict[int, SkippedImage] | None = {} if on_bad_image == "skip" else None
    missing = [i for i, f in enumerate(files) if not _is_file(f)]
    if missing and bad is None:
        origin, line = source.where(missing[0])
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        hint = missing_image_hint(source.root, source.paths[missing[0]])
        raise InputError(f"image {formats.quoted(source.paths[missing[0]])} not found under {source.root}{more}{hint}",
                         path=origin, line=line)
    for i in missing:
        bad[i] = SkippedImage(i, "missing", "file not found")
    keep = [i for i in range(len(files)) if bad is None or i not in bad]
    key = None if cache is None else cache_key or files_key(source.root, [files[i] for i in keep])
    if image_size is not None:
        if image_size < 4:
            raise InputError(f"{option('image_size')} must be at least 4, got {image_size}")
        return _decoded(source, files, keep, image_size, workers, progress, bad, cache, key, encoder, min_classes)
    image_size = None if key is None else cache.auto_size(key, SIZE_RULE)
    if image_size is None:
        known_bad = len(bad or {})
        image_size = _auto_size(source, files, keep, workers, bad)
        if key is not None and len(bad or {}) == known_bad:  # every header read: the size holds for these files
            cache.store_auto_size(key, image_size, SIZE_RULE)
    data = _decoded(source, files, keep, image_size, workers, progress, bad, cache, key, encoder, min_classes)
    return _colour_capped(data)


def _auto_size(source: LabeledSource, files: list[Path], keep: list[int], workers: int,
               bad: dict[int, SkippedImage] | None) -> int:
    """The automatic image side (:func:`choose_image_size`), from the headers of the ``keep`` files and,
    where they say colour but the colour cap would bite, a sample of their pixels."""
    headers = _each_file(lambda _, f: image_header(f), files, keep, source, workers, None, bad)
    good = {keep[j]: h for j, h in enumerate(headers) if not isinstance(h, DecodeError)}
    if not good:
        raise InputError("no readable images", path=source.origin)
    sides = [min(w, h) for w, h, _ in good.values()]
    gray = all(m in GRAY_MODES for *_, m in good.values())
    if not gray and np.median(sides) > COLOUR_CAP:
        gray = _sample_is_gray(source, files, list(good), workers)
    return choose_image_size(sides, gray)


def _colour_capped(data: SampleData) -> SampleData:
    """``data`` shrunk to COLOUR_CAP when its automatic size came from a gray sample but its
    images turned out colour (a few colour images among gray ones), so the model stays small."""
    if data.channels != 3 or data.image_size <= COLOUR_CAP:
        return data
    small = torch.empty((len(data.inputs), 3, COLOUR_CAP, COLOUR_CAP), dtype=torch.uint8)
    for start in range(0, len(small), 4096):
        part = F.interpolate(data.inputs[start:start + 4096].float(), size=(COLOUR_CAP, COLOUR_CAP), mode="area")
        small[start:start + 4096] = part.round_().clamp_(0, 255)
    data.inputs, data.image_size = small, COLOUR_CAP
    return data


def _decoded(source: LabeledSource, files: list[Path], keep: list[int], image_size: int, workers: int,
             progress: Progress | None, bad: dict[int, SkippedImage] | None, cache: DecodeCache | None,
             key: str | None, encoder: Encoder | None = None, min_classes: int = 2) -> SampleData:
    """Decode the ``keep`` files (or read them from the cache), encode them if asked, and assemble the dataset."""
    entry = {} if encoder is None else {"variant": encoder.name, "shape": encoder.shape, "dtype": encoder.dtype}
    hit = None if cache is None or key is None else cache.load(key, image_size, **entry)
    if hit is not None and encoder is not None and "identical" not in hit[1]:
        hit = None  # an entry from before duplicates were found: its pixels are gone, so embed again
    identical = None
    if hit is not None:
        stacked, meta = hit
        for j, status, reason in meta["bad"]:
            if bad is None:
                raise bad_image_error(source, keep[j], reason, len(meta["bad"]) - 1)
            bad.setdefault(keep[j], SkippedImage(keep[j], status, reason))
        if progress is not None:
            progress(len(keep), len(keep), cached=True)
        if encoder is not None:
            identical = from_groups(meta["identical"], len(keep))
    else:
        stacked, digests = _decode_all(source, files, keep, image_size, workers, progress, bad, encoder)
        identical = None if digests is None else first_identical(digests)
        if cache is not None and key is not None:  # the failures of these files, header pass included
            failed = [[j, bad[i].status, bad[i].reason] for j, i in enumerate(keep) if bad and i in bad]
            found = {} if identical is None else {"identical": groups_of(identical)}
            cache.store(key, image_size, stacked, {"bad": failed, **found}, variant=entry.get("variant"))
    decoded = [j for j, i in enumerate(keep) if bad is None or i not in bad]
    if not decoded:  # every image skipped (prediction asks for no class, so the class check would let it by)
        raise InputError("no readable images", path=source.origin)
    rows = np.asarray([keep[j] for j in decoded], dtype=np.int64)
    stacked = stacked[decoded] if len(decoded) != len(keep) else np.asarray(stacked)
    labels = [source.labels[i] for i in rows]
    classes = _require_two_classes(labels, source, skipped=0 if bad is None else len(bad), minimum=min_classes)
    index = {c: k for k, c in enumerate(classes)}
    targets = torch.tensor([index[v] for v in labels], dtype=torch.int64)
    if encoder is None:
        stacked = np.ascontiguousarray(as_gray(stacked).transpose(0, 3, 1, 2))
        identical = first_identical(row_digests(stacked))  # the pixels the model reads
    else:  # found among the decoded pixels the backbone embedded: as positions among the decoded samples
        identical = _among(identical, np.asarray(decoded, dtype=np.int64), len(keep))
    used = "off" if cache is None or key is None else "hit" if hit is not None else "miss"
    return SampleData(inputs=torch.from_numpy(stacked), targets=targets, classes=classes, image_size=image_size,
                      rows=rows, skipped=sorted((bad or {}).values(), key=lambda b: b.row), identical=identical,
                      cache=used)


def _among(identical: np.ndarray, decoded: np.ndarray, n: int) -> np.ndarray:
    """A :func:`first_identical` array over ``n`` positions restricted to the ``decoded`` ones and renumbered
    (an undecodable sample is never identical, so every group's first sample is among them)."""
    position = np.full(n, -1, dtype=np.int64)
    position[decoded] = np.arange(len(decoded))
    heads = identical[decoded]
    return np.where(heads >= 0, position[np.maximum(heads, 0)], -1)


def as_gray(stacked: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(N, S, S, 3) uint8 images as (N, S, S, 1) when every pixel's channels agree within
    ``GRAY_TOLERANCE`` (gray content, also from RGB files and lossy codecs), else unchanged.

    Exactly gray images keep their values; near-gray ones are converted by luma, as Pillow does.
    """
    spread = 0
    for start in range(0, len(stacked), chunk):
        part = stacked[start:start + chunk]
        spread = max(spread, int((part.max(axis=-1) - part.min(axis=-1)).max(initial=0)))
        if spread > GRAY_TOLERANCE:
            return stacked
    if spread == 0:
        return stacked[..., :1]
    gray = np.empty((*stacked.shape[:-1], 1), dtype=np.uint8)
    weights = np.asarray(LUMA, dtype=np.float32)
    for start in range(0, len(stacked), chunk):
        luma = stacked[start:start + chunk].astype(np.float32) @ weights
        gray[start:start + chunk, ..., 0] = np.clip(np.rint(luma), 0, 255)
    return gray


def _decode_all(source: LabeledSource, files: list[Path], keep: list[int], image_size: int, workers: int,
                progress: Progress | None, bad: dict[int, SkippedImage] | None,
                encoder: Encoder | None) -> tuple[np.ndarray, list[bytes | None] | None]:
    """Decode the ``keep`` files into one (N, S, S, 3) uint8 array, or, with an ``encoder``, decode
    them a batch at a time and return the encoder's (N, *shape) outputs (undecodable images are
    recorded in ``bad``; their rows hold whatever the encoder made of a blank image) with the
    digest of each decoded image (None for an undecodable one), since its pixels are not kept."""
    if encoder is None:
        stacked = np.empty((len(keep), image_size, image_size, 3), dtype=np.uint8)

        def decode_into(j: int, file: Path) -> None:
            stacked[j] = decode_image(file, image_size)

        _each_file(decode_into, files, keep, source, workers, progress, bad)
        return stacked, None
    out = np.empty((len(keep), *encoder.shape), dtype=encoder.dtype)
    digests: list[bytes | None] = [None] * len(keep)
    batch = np.empty((encoder.batch_size, image_size, image_size, 3), dtype=np.uint8)
    for start in range(0, len(keep), encoder.batch_size):
        part = keep[start:start + encoder.batch_size]
        batch[:len(part)] = 0

        def decode_batch(j: int, file: Path) -> None:
            batch[j] = decode_image(file, image_size)
            digests[start + j] = digest(batch[j])

        _each_file(decode_batch, files, part, source, workers, None, bad, batch=True)
        out[start:start + len(part)] = encoder.encode(batch[:len(part)])
        if progress is not None:
            progress(start + len(part), len(keep))
    return out, digests


def _is_file(path: Path) -> bool:
    """Path.is_file, but False rather than OSError for a path the OS cannot even look up (name too long, ...)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _require_two_classes(labels: list, source: LabeledSource, skipped: int = 0, minimum: int = 2) -> list:
    classes = sorted_classes(labels)
    if len(classes) < minimum:
        after = f" after skipping {skipped} bad images" if skipped else ""
        raise InputError(f"need at least two classes to find wrong labels, found {len(classes)} ({classes}){after}",
                         path=source.origin)
    return classes
