"""Where samples come from: a labels CSV beside an image folder, an ImageFolder tree, or a
labels table for feature vectors (:func:`read_label_table`).

A :class:`LabeledSource` lists, for every sample, its path relative to the
image root (or, for feature vectors, its key: a path or id column, else its row
number), its given label and the CSV line it came from, plus any extra CSV
columns, which are carried unchanged into the report.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from noiseaudit.data.csvfile import KIND_ATTR, frame_column, read_table, read_text_table
from noiseaudit.errors import (InputError, NoiseAuditWarning, UsageError, check_image_dir, header_line, in_memory,
                               line_word, option, place, warn)
from noiseaudit.formats import quoted

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
NOT_IMAGES = f"file(s) without an image extension ({', '.join(sorted(IMAGE_EXTENSIONS))}) left out"
BROKEN_LINKS = "link(s) to a file that is not there left out"
PATH_COLUMN_NAMES = ("path", "file", "filename", "image", "image_path", "filepath")
LABEL_COLUMN_NAMES = ("label", "class", "target", "category", "y")
ID_COLUMN_NAMES = ("id", "key", "uid", "sample_id", "name")


@dataclass
class LabeledSource:
    """Samples to scan, before any image is decoded."""

    root: Path
    paths: list[str]
    labels: list
    lines: list[int | None]
    origin: str
    extra: pd.DataFrame = field(default_factory=pd.DataFrame)
    path_col: str | None = "path"  # None: a labels table without a key column (keys are row numbers)
    label_col: str | None = "label"  # None: unlabelled samples (labels all None), only for prediction
    columns: list[str] = field(default_factory=lambda: ["path", "label"])  # input column order
    from_folders: bool = False  # an ImageFolder tree: the label is each path's first folder
    row_origins: dict[int, str] = field(default_factory=dict)  # rows read from another file (a trusted CSV)

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, i: int) -> tuple[str, int | None]:
        """The file and line to name in an error about sample ``i``."""
        return self.row_origins.get(i, self.origin), self.lines[i]


def pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], kind: str, csv: Path) -> str:
    if wanted is not None:
        if wanted in columns:
            return wanted
        alike = [c for c in columns if c.strip().casefold() == wanted.strip().casefold()]
        if len(alike) == 1:  # as the automatic detection does: 'Label' for --label-col label
            return alike[0]
        raise InputError(f"no {kind} column {wanted!r}; columns are {columns}", path=csv, line=header_line(csv))
    lowered = {c.strip().lower(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if any(PurePosixPath(c.strip()).suffix.lower() in IMAGE_EXTENSIONS for c in columns):
        raise InputError(f"no header: the first line names an image ({columns}); add a header line such as "
                         "path,label", path=csv, line=header_line(csv))
    raise InputError(
        f"no {kind} column found (looked for {', '.join(candidates)}); columns are {columns}; "
        f"name one with {option(f'{kind}_col')}",
        path=csv,
        line=header_line(csv),
    )


def _label_column(columns: list[str], wanted: str | None, csv: Path, optional: bool) -> str | None:
    """The label column (:func:`pick_column`); with ``optional``, None when none is named or found."""
    if optional and wanted is None and not any(c.strip().lower() in LABEL_COLUMN_NAMES for c in columns):
        return None
    return pick_column(columns, wanted, LABEL_COLUMN_NAMES, "label", csv)


def _is_absolute(path: str) -> bool:
    """POSIX, UNC or drive-letter absolute, with either separator."""
    return path.startswith("/") or (len(path) > 1 and path[1] == ":")


def resolve_inside(root: Path, relative: str, *, origin: str, line: int | None) -> Path:
    """Resolve ``relative`` under ``root`` and refuse anything that escapes it.

    Absolute paths, ``..`` components and symlinks that point outside the root
    are all refused before any file is opened (a labels CSV's absolute paths are
    made relative first, by :func:`root_relative`).
    """
    if "\x00" in relative:
        raise InputError(f"path {quoted(relative)} contains a NUL character", path=origin, line=line)
    rel = relative.replace("\\", "/")
    if _is_absolute(rel):
        raise InputError(f"absolute path {quoted(relative)} is not allowed; paths must be relative to the image folder",
                         path=origin, line=line)
    if ".." in rel.split("/"):
        plain = posixpath.normpath(rel)
        if plain == ".." or plain.startswith("../"):
            raise InputError(f"path {quoted(relative)} escapes the image folder", path=origin, line=line)
        raise InputError(f"path {quoted(relative)} has a '..' component, which paths may not have; write it as "
                         f"{quoted(plain)}", path=origin, line=line)
    # Plain string operations: this runs twice for every sample of a scan.
    top = str(root)
    resolved = os.path.realpath(os.path.join(top, rel))
    if resolved != top and not resolved.startswith(top.rstrip(os.sep) + os.sep):
        raise InputError(f"path {quoted(relative)} resolves outside the image folder (symlink?)",
                         path=origin, line=line)
    return Path(resolved)


def root_relative(root: Path, path: str, *, given_root: str | Path | None = None, origin: str,
                  line: int | None) -> str:
    """``path`` as a labels CSV's path is stored: relative paths as written; an absolute one made relative.

    An absolute path is accepted when it lies inside the image folder: under ``root`` (its
    real path) or ``given_root`` (the folder as the user named it, links and all), or when
    the file it names really resolves inside ``root``. Anything else is refused, as are
    ``..`` components and NUL characters. :func:`resolve_inside` still checks the result
    (a symlink below the root that leads out of it is refused there).
    """
    rel = path.replace("\\", "/")
    if not _is_absolute(rel) or "\x00" in rel:
        return path
    if ".." in rel.split("/"):
        raise InputError(f"path {quoted(path)} escapes the image folder", path=origin, line=line)
    outside = InputError(f"absolute path {quoted(path)} is outside the image folder {root}", path=origin, line=line)
    if rel[1:2] == ":":
        raise outside  # a drive letter: never inside a POSIX folder
    normal = os.path.normpath(rel)
    for top in {str(root), os.path.abspath(given_root) if given_root is not None else str(root)}:
        if normal.startswith(top.rstrip("/") + "/"):
            return normal[len(top.rstrip("/")) + 1:]
    real = os.path.realpath(normal)
    if real.startswith(str(root).rstrip("/") + "/"):
        return real[len(str(root).rstrip("/")) + 1:]
    raise outside


_INT64 = (-(2**63), 2**63 - 1)


def _canonical_ints(text: pd.Series) -> list[int] | None:
    """The values as ints if every one is written the way Python writes an int ("7", "-3"; not "007", "7.0")."""
    out = []
    for v in text:
        try:
            i = int(v)
        except ValueError:
            return None
        if str(i) != v or not _INT64[0] <= i <= _INT64[1]:
            return None
        out.append(i)
    return out


def _normalise_labels(values: pd.Series, text: bool = False) -> list:
    """Integer labels become ints; anything else stays a stripped string ("007" and "7" stay distinct). With
    ``text`` (a DataFrame's column of strings) every label stays a string: "3" is not made the int 3."""
    as_text = values.astype(str).str.strip()
    ints = None if text else _canonical_ints(as_text)
    return ints if ints is not None else list(as_text)


def holds_text(table: object, column: str | None) -> bool:
    """Whether ``table`` is a DataFrame whose ``column`` (named as its text table names it) holds strings: a
    str or string column, or a categorical of strings. Its labels then stay strings (a file's are guessed)."""
    if not isinstance(table, pd.DataFrame) or column is None:
        return False
    values = table[frame_column(table, column)]
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.cat.categories
    return pd.api.types.infer_dtype(values, skipna=True) == "string"  # str objects or a string dtype; not empty


def read_labels_csv(
    images_dir: str | Path,
    labels_csv: str | Path | pd.DataFrame,
    *,
    path_col: str | None = None,
    label_col: str | None = None,
    optional_label: bool = False,
) -> LabeledSource:
    """Read a labels CSV (or a DataFrame of the same) whose path column is relative to ``images_dir``.

    With ``optional_label`` (prediction) a CSV without a label column is a list of paths: every
    label is None and ``label_col`` is None.
    """
    root = check_image_dir(images_dir)
    frame, lines, origin = read_table(labels_csv)
    csv = Path(origin)
    columns = [str(c) for c in frame.columns]
    pcol = pick_column(columns, path_col, PATH_COLUMN_NAMES, "path", csv)
    lcol = _label_column(columns, label_col, csv, optional_label)
    if pcol == lcol:
        raise InputError(f"path and label columns are the same column {pcol!r}", path=csv, line=header_line(csv))
    _refuse_empty(frame, pcol, lcol, lines, csv)
    stored = []  # checked row by row, so that the first bad line is the one named
    for p, line in zip(frame[pcol], lines):
        stored.append(root_relative(root, p, given_root=images_dir, origin=origin, line=line))
        resolve_inside(root, stored[-1], origin=origin, line=line)
    frame[pcol] = stored
    keys = [PurePosixPath(p.replace("\\", "/")) for p in frame[pcol]]  # "./a.png" and "a.png" are one path
    given = list(frame[lcol].str.strip()) if lcol is not None else [""] * len(frame)
    keep = unique_rows(keys, list(frame[pcol]), given, lines, csv)
    if len(keep) != len(frame):
        frame, lines = frame.iloc[keep].reset_index(drop=True), [lines[i] for i in keep]
    paths = list(frame[pcol])
    extra = frame.drop(columns=[c for c in (pcol, lcol) if c is not None]).reset_index(drop=True)
    extra = extra.apply(_infer_column)
    labels = _normalise_labels(frame[lcol], holds_text(labels_csv, lcol)) if lcol is not None else [None] * len(paths)
    return LabeledSource(root=root, paths=paths, labels=labels, lines=lines,
                         origin=origin, extra=extra, path_col=pcol, label_col=lcol, columns=columns)


def _refuse_empty(frame: pd.DataFrame, pcol: str | None, lcol: str | None, lines: list[int], csv: Path,
                  what: str = "image") -> None:
    """An InputError at the first empty path (key) or label cell; ``what`` names what the path column holds."""
    for kind, col in (("path", pcol), ("label", lcol)):
        if col is None:
            continue
        empty = frame[col] == ""
        if empty.any():
            first = int(empty.to_numpy().nonzero()[0][0])
            image = f" for {what} {frame[pcol].iloc[first]!r}" if kind == "label" and pcol is not None else ""
            count = int(empty.sum())
            raise InputError(f"empty {kind} in column {col!r}{image} ({count} row{'s' if count > 1 else ''})", path=csv,
                             line=lines[first])


def _label_sequence(labels: Sequence) -> pd.DataFrame:
    """One label per row as a labels table; errors name it as what it is ("<labels ndarray> row 5")."""
    try:
        shape = np.shape(labels)
    except ValueError:  # rows of different lengths
        shape = (len(labels), None)
    if len(shape) != 1:  # the feature matrix, most likely: quoting its rows made a message of kilobytes
        raise UsageError(f"labels must be one per sample (a sequence, a DataFrame or a CSV path), not of shape "
                         f"{shape}; the features come first, then the labels")
    table = pd.DataFrame({"label": list(labels)})
    table.attrs[KIND_ATTR] = type(labels).__name__
    return table


def read_label_table(labels_csv: str | Path | pd.DataFrame | Sequence, *, key_col: str | None = None,
                     label_col: str | None = None, optional_label: bool = False) -> LabeledSource:
    """A labels CSV (or DataFrame) for feature vectors: a label column and, optionally, a key (a path or id
    column); or one label per row (a list, an array, a Series, a tensor).

    Nothing is looked up on disk. Without a key column a sample's key is its
    0-based row number. A key listed twice is an InputError naming both lines.
    ``optional_label`` as for :func:`read_labels_csv`.
    """
    if not isinstance(labels_csv, (str, os.PathLike, pd.DataFrame)):
        labels_csv = _label_sequence(labels_csv)
    frame, lines, origin = read_table(labels_csv)
    root = Path.cwd() if in_memory(origin) else Path(os.path.realpath(Path(origin).parent))
    return label_table(frame, lines, origin, root, key_col=key_col, label_col=label_col,
                       optional_label=optional_label, given=labels_csv)


def find_key_column(columns: list[str], wanted: str | None, label_col: str | None, table: Path) -> str | None:
    """The key column of a labels table for features: ``wanted``, else the first column named like a
    path or an id, else None (a sample's key is then its 0-based row number)."""
    if wanted is not None:
        return pick_column(columns, wanted, (), "key", table)
    lowered = {c.strip().lower(): c for c in columns if c != label_col}
    return next((lowered[n] for n in PATH_COLUMN_NAMES + ID_COLUMN_NAMES if n in lowered), None)


def has_path_column(labels_csv: str | Path, path_col: str | None = None) -> bool:
    """Whether the CSV names image paths: ``path_col`` is given, or a column is named like a path."""
    if path_col is not None:
        return True
    frame, _ = read_text_table(labels_csv)
    return any(str(c).strip().lower() in PATH_COLUMN_NAMES for c in frame.columns)


def label_table(frame: pd.DataFrame, lines: list[int | None], origin: str, root: Path, *,
                key_col: str | None = None, label_col: str | None = None,
                optional_label: bool = False, given: object = None) -> LabeledSource:
    """:func:`read_label_table` of a table already in memory (cells as stripped text; ``lines`` may be None);
    ``given``: the DataFrame it was read from, whose column of strings keeps its labels strings."""
    columns = [str(c) for c in frame.columns]
    frame = frame.fillna("")  # a missing cell (None/NaN from Python) is an empty one, refused below
    lcol = _label_column(columns, label_col, Path(origin), optional_label)
    kcol = find_key_column(columns, key_col, lcol, Path(origin))
    if kcol is not None and kcol == lcol:
        raise InputError(f"key and label columns are the same column {kcol!r}", path=origin,
                         line=header_line(origin))
    _refuse_empty(frame, kcol, lcol, lines, Path(origin), what="key")
    keys = [str(i) for i in range(len(frame))] if kcol is None else list(frame[kcol])
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        j = first.setdefault(key, i)
        if j != i:
            also = line_word(origin, lines[j])
            raise InputError(f"key {key!r} in column {kcol!r} is listed twice (also {also})", path=origin,
                             line=lines[i])
    extra = frame.drop(columns=[c for c in (kcol, lcol) if c is not None]).reset_index(drop=True)
    labels = _normalise_labels(frame[lcol], holds_text(given, lcol)) if lcol is not None else [None] * len(keys)
    return LabeledSource(root=root, paths=keys, labels=labels, lines=list(lines),
                         origin=origin, extra=extra.apply(_infer_column), path_col=kcol, label_col=lcol,
                         columns=columns)


def unique_rows(keys: list[PurePosixPath], paths: list[str], values: list, lines: list[int], csv: Path, *,
                noun: tuple[str, str] = ("label", "labels"), show: Callable[[int], str] | None = None) -> list[int]:
    """Row indices to keep: a file listed twice with the same value (``values[i]``, any comparable) is kept
    once, with a warning; with different values it is an InputError naming both lines.

    ``noun`` is the value's name, singular and plural ("truth", "truth" for a truth CSV), and ``show(i)``
    how row ``i``'s value reads in a message (``repr`` of the value by default).
    """
    show = show or (lambda i: repr(values[i]))
    first: dict[PurePosixPath, int] = {}
    repeats: list[int] = []
    for i, key in enumerate(keys):
        j = first.setdefault(key, i)
        if j == i:
            continue
        if values[i] != values[j]:
            raise InputError(f"{quoted(paths[i])} is listed twice with different {noun[1]}: {show(j)} on "
                             f"{line_word(csv, lines[j])}, {show(i)} here", path=csv, line=lines[i])
        repeats.append(i)
    if repeats:
        i = repeats[0]
        warn(f"{place(csv, lines[i])}: {quoted(paths[i])} repeats {line_word(csv, lines[first[keys[i]]])} with "
             f"the same {noun[0]}; {len(repeats)} repeated row(s) ignored", NoiseAuditWarning)
    dropped = set(repeats)
    return [i for i in range(len(keys)) if i not in dropped]


def _infer_column(col: pd.Series) -> pd.Series:
    """Give carried CSV columns back their natural types (bools, ints, floats)."""
    text = col.str.strip()
    lowered = text.str.lower()
    if len(text) and lowered.isin({"true", "false", "1", "0"}).all() and lowered.isin({"true", "false"}).any():
        return lowered.isin({"true", "1"})
    ints = _canonical_ints(text) if len(text) else None
    if ints is not None:
        return pd.Series(ints, index=col.index, dtype="int64")
    numeric = pd.to_numeric(text, errors="coerce")
    if len(text) and numeric.notna().all() and np.isfinite(numeric).all() and text.str.contains(r"[.eE]").any():
        return numeric.astype("float64")
    return col


# what systems and tools write into folders of photos: Windows thumbnails and settings, macOS zip leftovers, a
# Synology NAS's thumbnails (real JPEGs), recycle bins; compared case-blind
CLUTTER = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "@eadir", "$recycle.bin",
                     "system volume information"})


def clutter(name: str) -> bool:
    """Whether a file or folder named ``name`` is no data: hidden (a leading dot, ``.DS_Store``), or what an
    operating system or tool leaves in folders (:data:`CLUTTER`). Scans pass over it without a word."""
    return name.startswith(".") or name.casefold() in CLUTTER


def files_under(folder: Path) -> Iterator[Path]:
    """Every file below ``folder`` that is not hidden or clutter (:func:`clutter`), at any depth. Linked folders
    are followed (a link that leads out of the image folder is refused with its first image, by
    :func:`resolve_inside`), but not into a folder the walk is already inside, so that a link back up does not
    loop."""
    inside = {str(folder): frozenset({os.path.realpath(folder)})}  # each folder's real path and its parents'
    for here, folders, names in os.walk(folder, followlinks=True):
        chain = inside.pop(here)
        folders[:] = [f for f in folders if not clutter(f)
                      and os.path.realpath(os.path.join(here, f)) not in chain]
        inside.update((os.path.join(here, f), chain | {os.path.realpath(os.path.join(here, f))}) for f in folders)
        yield from (Path(here, n) for n in names if not clutter(n))


def _images_under(root: Path, folder: Path, ignored: list[str], broken: list[str]) -> list[str]:
    """The image files below ``folder`` (:func:`files_under`), sorted, relative to ``root``; the other files are
    added to ``ignored``, and links to nothing with an image extension to ``broken``."""
    paths = []
    for file in sorted(files_under(folder)):
        rel = file.relative_to(root).as_posix()
        if file.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored.append(rel)
        elif not file.exists():
            broken.append(rel)
        else:
            resolve_inside(root, rel, origin=str(root), line=None)
            paths.append(rel)
    return paths


def _warn_left_out(root: Path, names: list[str], why: str) -> None:
    """One warning line for what a folder scan leaves out, naming the first few."""
    if names:
        shown = ", ".join(repr(p) for p in names[:3]) + (", ..." if len(names) > 3 else "")
        warn(f"{root}: {len(names)} {why}: {shown}", NoiseAuditWarning)


def read_image_files(images_dir: str | Path) -> LabeledSource:
    """Every image file under ``images_dir``, at any depth, unlabelled (labels None): what to predict."""
    root = check_image_dir(images_dir)
    ignored: list[str] = []
    broken: list[str] = []
    paths = _images_under(root, root, ignored, broken)
    _warn_left_out(root, ignored, NOT_IMAGES)
    _warn_left_out(root, broken, BROKEN_LINKS)
    if not paths:
        raise InputError("no images found", path=root)
    return LabeledSource(root=root, paths=paths, labels=[None] * len(paths), lines=[None] * len(paths),
                         origin=str(root), extra=pd.DataFrame(index=range(len(paths))), label_col=None)


def read_image_folder(images_dir: str | Path) -> LabeledSource:
    """One subfolder per class; every image file under it is a sample of that class."""
    root = check_image_dir(images_dir)
    paths: list[str] = []
    labels: list = []
    ignored: list[str] = []
    broken: list[str] = []
    empty: list[str] = []
    for class_dir in sorted(d for d in root.iterdir() if d.is_dir() and not clutter(d.name)):
        found = _images_under(root, class_dir, ignored, broken)
        paths += found
        labels += [class_dir.name] * len(found)
        if not found:
            empty.append(class_dir.name)
    if paths:
        _warn_left_out(root, ignored, NOT_IMAGES)
        _warn_left_out(root, broken, BROKEN_LINKS)
        _warn_left_out(root, empty, "class folder(s) without an image, so not classes")
        loose = sorted(f.name for f in root.iterdir() if f.is_file() and not clutter(f.name))
        _warn_left_out(root, loose, "file(s) outside the class folders left out")
    if not paths:
        raise InputError("no images found in class subfolders (expected IMAGES_DIR/<class>/<image>; "
                         "or pass a labels CSV)", path=root)
    return LabeledSource(root=root, paths=paths, labels=_normalise_labels(pd.Series(labels)),
                         lines=[None] * len(paths), origin=str(root), extra=pd.DataFrame(index=range(len(paths))),
                         from_folders=True)


def load_source(images_dir: str | Path, labels_csv: str | Path | pd.DataFrame | None = None, *,
                path_col: str | None = None, label_col: str | None = None,
                for_prediction: bool = False) -> LabeledSource:
    """A labels CSV (or a DataFrame of one) if one is given, else the ImageFolder layout.

    ``for_prediction``: labels are optional (a CSV may list paths only), and without a CSV every
    image under ``images_dir`` is a sample, unlabelled.
    """
    if labels_csv is None:
        return read_image_files(images_dir) if for_prediction else read_image_folder(images_dir)
    return read_labels_csv(images_dir, labels_csv, path_col=path_col, label_col=label_col,
                           optional_label=for_prediction)
