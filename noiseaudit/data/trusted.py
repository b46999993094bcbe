"""A trusted set: labels the user has verified, merged into the samples to scan (``--trusted``).

The trusted CSV has the same path (or key) and label columns as the labels CSV. A
sample listed in both takes the trusted label and is marked trusted; a path listed only
in the trusted file is an extra sample (images only: a feature scan has no vector for
it). Trusted samples train like any other, steer the per-sample rates
(:class:`noiseaudit.optim.PerSampleRate` ``trusted=``) and are kept out of the
ranking and the threshold.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from noiseaudit.data.csvfile import read_table
from noiseaudit.data.source import (
    ID_COLUMN_NAMES,
    LABEL_COLUMN_NAMES,
    PATH_COLUMN_NAMES,
    LabeledSource,
    _normalise_labels,
    _refuse_empty,
    pick_column,
    resolve_inside,
    root_relative,
    unique_rows,
)
from noiseaudit.errors import InputError, NoiseAuditHint, header_line, warn
from noiseaudit.report.export import as_reviewed, last_answers, verified_rows


def _column(columns: list[str], labels_name: str | None, candidates: tuple[str, ...], kind: str, csv: Path) -> str:
    """The trusted file's path or label column: the labels CSV's name for it, else one named like it (a column
    the trusted file names otherwise is found as in any CSV); neither is an error that says whose name it was."""
    if labels_name is not None and labels_name in columns:
        return labels_name
    try:
        return pick_column(columns, None, candidates, kind, csv)
    except InputError:
        if labels_name is None:  # pick_column's own message names an option for the labels' column, not this file's
            name = (" (the labels' keys, or their 0-based row numbers where they have no key column) 'id'"
                    if kind == "key" else f" {candidates[0]!r}")
            raise InputError(f"no {kind} column found (looked for {', '.join(candidates)}); columns are {columns}; "
                             f"name the column of {kind}s{name}", path=csv, line=header_line(str(csv))) from None
        raise InputError(f"no {kind} column {labels_name!r} (the labels CSV's name for it) or one named like "
                         f"{', '.join(candidates)}; columns are {columns}", path=csv, line=header_line(str(csv))) \
            from None


def merge_trusted(source: LabeledSource, trusted_csv: str | Path | pd.DataFrame, *, images: bool,
                  images_dir: str | Path | None = None) -> tuple[LabeledSource, np.ndarray]:
    """``source`` with the trusted file's labels applied (and its new samples appended), and the trusted mask.

    Parameters
    ----------
    source : LabeledSource
        The samples of the scan: a labels CSV or an ImageFolder (``images``), or a labels table of
        feature vectors.
    trusted_csv : path or pandas.DataFrame
        A CSV (or a DataFrame) with the source's path (key) and label columns; for an ImageFolder, a path
        and a label column.
    images : bool
        Paths name images under ``source.root`` (checked as the labels CSV's are; a path absent from
        ``source`` becomes an extra sample). Otherwise they are keys of a features table, and every one
        must be among ``source``'s.
    images_dir : path, optional
        The image folder as the user named it, for absolute paths in the trusted file.

    Returns
    -------
    (LabeledSource, numpy.ndarray)
        The merged samples (extra ones last, named by the trusted file's lines in errors) and a bool
        mask of the trusted ones.
    """
    if isinstance(trusted_csv, (str, Path)) and Path(trusted_csv).suffix.lower() == ".json":
        from noiseaudit.apply import read_reviewed  # a reviewed sheet as JSON: export's records, Label Studio's

        frame, lines, origin = read_reviewed(trusted_csv)
        reviewed = frame
    else:
        frame, lines, origin = read_table(trusted_csv, what="trusted labels CSV")
        frame, lines = last_answers(frame, lines)  # Label Studio's CSV export: the last answer to each task
        reviewed = as_reviewed(frame)
    csv = Path(origin)
    if "verdict" in reviewed.columns:  # export's sheet, reviewed: its keep and relabel rows
        frame, lines = verified_rows(reviewed, lines, origin)
        if frame.empty:
            raise InputError("this reviewed sheet has no keep or relabel verdict, so nothing in it is verified",
                             path=csv)
    columns = [str(c) for c in frame.columns]
    by_name = not source.from_folders  # the labels CSV's own column names; an ImageFolder has none
    keys = PATH_COLUMN_NAMES if images else PATH_COLUMN_NAMES + ID_COLUMN_NAMES  # a features table's keys: ids too
    pcol = _column(columns, source.path_col if by_name else None, keys, "path" if images else "key", csv)
    lcol = _column(columns, source.label_col if by_name else None, LABEL_COLUMN_NAMES, "label", csv)
    _refuse_empty(frame, pcol, lcol, lines, csv)
    paths = list(frame[pcol])
    if images:
        paths = [root_relative(source.root, p, given_root=images_dir, origin=str(csv), line=line)
                 for p, line in zip(paths, lines)]
        for p, line in zip(paths, lines):
            resolve_inside(source.root, p, origin=str(csv), line=line)
    keys = [_key(p, images) for p in paths]
    keep = unique_rows(keys, paths, list(frame[lcol].str.strip()), lines, csv)  # a path that contradicts itself
    labels = _normalise_labels(frame[lcol])
    known = {str(v): v for v in source.labels}
    index = {_key(p, images): i for i, p in enumerate(source.paths)}
    merged = list(source.labels)
    trusted_rows: list[int] = []
    new_paths: list[str] = []
    new_labels: list = []
    new_lines: list[int] = []
    for i in keep:
        label = known.get(str(labels[i]))
        if label is None:
            shown = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
            raise InputError(f"class {labels[i]!r} of {paths[i]!r} is not a class of {source.origin} ({shown})",
                             path=csv, line=lines[i])
        row = index.get(keys[i])
        if row is not None:
            merged[row] = label
            trusted_rows.append(row)
        elif not images:
            raise InputError(f"key {paths[i]!r} is not in {source.origin}; a trusted sample of a feature scan "
                             "must be one of its rows", path=csv, line=lines[i])
        else:
            new_paths.append(paths[i])
            new_labels.append(label)
            new_lines.append(lines[i])
    n = len(source)
    _tell(csv, source, trusted_rows, merged, len(new_paths))
    if len(set(trusted_rows)) == n:
        raise InputError(f"every sample of {source.origin} is in this file, so none is left to rank; pass the labels "
                         "someone has verified, not the labels to check", path=csv)
    extra = source.extra
    if new_paths:
        extra = pd.concat([source.extra, pd.DataFrame(index=range(len(new_paths)))], ignore_index=True)
    out = replace(source, paths=list(source.paths) + new_paths, labels=merged + new_labels,
                  lines=list(source.lines) + new_lines, extra=extra,
                  row_origins={**source.row_origins, **{n + k: str(csv) for k in range(len(new_paths))}})
    mask = np.zeros(len(out), dtype=bool)
    mask[trusted_rows] = True
    mask[n:] = True
    return out, mask


def _tell(csv: Path, source: LabeledSource, rows: list[int], merged: list, extra: int) -> None:
    """One hint saying how many trusted labels correct the labels CSV's and how many paths it lacks (those train
    as extra samples: an image dropped from the labels in a review comes back this way)."""
    corrected = sum(source.labels[r] != merged[r] for r in set(rows))
    parts = ([f"{corrected} {'corrects' if corrected == 1 else 'correct'} the label in {source.origin}"]
             if corrected else []) + ([f"{extra} {'is' if extra == 1 else 'are'} not in it and train"
                                       f"{'s as an extra sample' if extra == 1 else ' as extra samples'}"]
                                      if extra else [])
    if parts:
        warn(f"{csv}: of its {len(set(rows)) + extra} trusted samples, {' and '.join(parts)}", NoiseAuditHint)


def _key(path: str, images: bool) -> PurePosixPath | str:
    """How two spellings of one sample compare: image paths as POSIX paths ("./a.png" is "a.png"), keys as text."""
    return PurePosixPath(path.replace("\\", "/")) if images else path
