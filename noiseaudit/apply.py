"""Apply reviewers' verdicts to a labels CSV: relabel, drop or keep, never in place."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from noiseaudit.data.checks import twin_key
from noiseaudit.data.csvfile import (DELIMITERS, frame_column, read_table, read_text_table, table_name,
                                     with_labels)
from noiseaudit.data.pathmatch import PathIndex
from noiseaudit.data.source import LABEL_COLUMN_NAMES, clutter, find_key_column, pick_column, read_image_folder
from noiseaudit.errors import (InputError, NoiseAuditWarning, UsageError, check_path, header_line, in_memory,
                               input_file, line_word, option, place, warn)
from noiseaudit.formats import quoted
from noiseaudit.report.export import as_reviewed, label_studio_answers, last_answers, read_verdict, relabel_target


@dataclass
class ApplyResult:
    """The corrected labels ``table``, the counts, ``changes`` as (path, old, new) and, for a labels CSV file,
    ``edits``: each changed record's first line and its new label, None where dropped (what ``noiseaudit apply``
    writes, leaving every other line as it was)."""

    table: pd.DataFrame
    relabeled: int = 0
    dropped: int = 0
    kept: int = 0
    unreviewed: int = 0
    already: int = 0  # relabel verdicts whose row has the new label already (a sheet applied before)
    already_dropped: int = 0  # drop verdicts whose path is gone from the labels (a sheet applied before)
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (path, old, new)
    # of a labels CSV file: each changed record's first line, and its new label (None: dropped); else None
    edits: dict[int, str | None] | None = None
    label_col: str = "label"


def read_reviewed(reviewed: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, list[int | None], str]:
    """A reviewed export, cells as text: the CSV or JSON records of ``export``, or Label Studio's export
    of the ``--format labelstudio`` tasks (JSON, JSON-MIN or CSV), whose chosen classes become verdicts;
    or a sheet from :func:`~noiseaudit.report.export.review_table` filled in in Python. Also the line (or
    0-based row) of each row, and the name errors give the sheet."""
    if isinstance(reviewed, pd.DataFrame):
        sheet, lines, origin = read_table(reviewed, "reviewed file")
    else:
        check_path(reviewed, "reviewed file", or_table=True)
        origin = str(reviewed)
        sheet, lines = _read_sheet(input_file(reviewed, "reviewed file"))
    sheet, lines = last_answers(sheet, lines)
    return as_reviewed(sheet), lines, origin


def _read_sheet(path: Path) -> tuple[pd.DataFrame, list[int | None]]:
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"not valid JSON ({exc})", path=path) from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InputError("expected a JSON list of records as written by `noiseaudit export --format json`, "
                             "or Label Studio's export of `--format labelstudio` tasks", path=path)
        if records and all("annotations" in r and "data" in r for r in records):  # Label Studio's JSON export
            records = label_studio_answers(records)
        frame = pd.DataFrame(records).fillna("").astype(str)
        return frame.apply(lambda c: c.str.strip()), list(range(1, len(frame) + 1))  # record numbers
    report_hint = (f": export the suspects first (noiseaudit export {path} -o review.csv), fill in verdict and "
                   "new_label, then apply that")  # the report itself, most likely
    return read_text_table(path, "reviewed file", report_hint, rows_needed=False)


def _misread(path: str, index: PathIndex) -> str:
    """Why ``path`` is not found, where it is a known path whose UTF-8 bytes a spreadsheet read as Windows-1252
    (or Latin-1) and saved back: 'Ã©' for 'é'. Else nothing."""
    for legacy in ("cp1252", "latin-1"):
        try:
            meant = path.encode(legacy).decode("utf-8")
        except UnicodeError:
            continue
        if meant != path and index.row(meant) is not None:
            return (f", but {quoted(meant)} is: a spreadsheet read the sheet's UTF-8 as {legacy} and saved it so; open "
                    "the exported sheet as UTF-8 (Excel: Data > From Text/CSV, File origin UTF-8) and review it again")
    return ""


def _already_dropped(gone: list[tuple[str, int | None]], others_matched: bool, labels_name: str,
                     origin: str) -> None:
    """Drop verdicts whose paths are not in the labels: taken as dropped by an earlier apply of the sheet, with a
    warning, when other rows of the sheet are there (an applied sheet applies again, as its relabels do); when
    none is, the sheet is of other labels, and the first is refused."""
    if not gone:
        return
    first, line = gone[0]
    if not others_matched:
        raise InputError(f"path {quoted(first)} is not in {labels_name} (nor is any other path of the sheet)",
                         path=origin, line=line)
    where = place(origin, line)
    which = f"a drop verdict names {quoted(first)}, which is" if len(gone) == 1 else \
        f"{len(gone)} drop verdicts name paths ({quoted(first)} first)"
    warn(f"{where}: {which} not in {labels_name}: taken as dropped by an earlier apply of this sheet",
         NoiseAuditWarning)


def _refuse_mixed_delimiters(reviewed: pd.DataFrame, origin: str) -> None:
    """Refuse a header cell that holds a review column's name beside another delimiter ("new_label;Verdict"): a
    comma sheet that a spreadsheet opened as one column and saved with semicolons, whose verdicts were then
    read as no verdicts at all."""
    for column in map(str, reviewed.columns):
        for mark in DELIMITERS:
            parts = [part.strip().lower() for part in column.split(mark)]
            if len(parts) > 1 and set(parts) & {"path", "verdict", "new_label"}:
                raise InputError(f"header cell {column!r} holds a {mark!r}: the sheet mixes two delimiters (a "
                                 "spreadsheet that opened it as one column and saved it with another?); save it "
                                 "with one", path=origin, line=header_line(origin))


def read_labels(labels: Path | pd.DataFrame, path_col: str | None = None,
                label_col: str | None = None) -> tuple[pd.DataFrame, str | None, str, list[int] | None]:
    """The labels to apply a review to, cells as text, with their key and label columns.

    Parameters
    ----------
    labels : Path or DataFrame
        A labels CSV (or a DataFrame of one), or an ImageFolder directory (one subfolder per class),
        which gives a ``path,label`` table of its images.
    path_col, label_col : str, optional
        The CSV's key (path or id) and label columns; by default detected.

    Returns
    -------
    tuple
        The table, its key column (None: rows are keyed by their 0-based number), its label column, and the
        line each row starts on in a CSV file (None for a folder or a DataFrame).
    """
    folder = isinstance(labels, Path) and labels.is_dir()
    if folder and any(d.is_dir() and not clutter(d.name) for d in labels.iterdir()):
        if path_col is not None or label_col is not None:
            raise UsageError(f"{option('path_col')} and {option('label_col')} name columns of a labels CSV, not of an "
                             "image folder")
        source = read_image_folder(labels)
        table = pd.DataFrame({"path": source.paths, "label": [str(c) for c in source.labels]}, dtype=object)
        return table, "path", "label", None
    table, lines, origin = read_table(labels)  # a folder without class folders: "a folder, not a labels CSV"
    columns = list(table.columns)
    if {"verdict", "new_label"} <= set(columns):
        raise UsageError(f"{origin}: this is a review sheet (it has verdict and new_label columns); the labels CSV "
                         "comes first, then the reviewed sheet")
    lcol = pick_column(columns, label_col, LABEL_COLUMN_NAMES, "label", origin)
    return table, find_key_column(columns, path_col, lcol, origin), lcol, None if in_memory(origin) else lines


def _check_stale(reviewed: pd.DataFrame, lines: list[int | None], current: list[str], changes: list[bool],
                 made: list[bool], reviewed_path: str, labels_name: str, force: bool) -> None:
    """Refuse reviewed rows whose given_label is not the label the table has now where their verdict would change
    it (``changes``): an older sheet would undo a newer correction. With ``force``, or where no such row would
    change anything, one warning counts them; a relabel the table has ``made`` already (the sheet applied
    before) is no such row."""
    if "given_label" not in reviewed.columns:
        return
    given = reviewed["given_label"].tolist()
    stale = [k for k, (g, c) in enumerate(zip(given, current)) if g != "" and g != c and not made[k]]
    harmful = [k for k in stale if changes[k]]
    if harmful and not force:
        k = harmful[0]
        more = f" ({len(harmful) - 1} more rows like it)" if len(harmful) > 1 else ""
        raise InputError(f"{reviewed['path'].iloc[k]!r} was reviewed as {given[k]!r}, but {labels_name} labels it "
                         f"{current[k]!r} now{more}: the sheet reviewed other labels (an older scan's?), and "
                         f"applying it would undo that change; export a new sheet, or pass {option('force', True)} "
                         "to apply it all the same", path=reviewed_path, line=lines[k])
    if stale:
        k = stale[0]
        warn(f"{place(reviewed_path, lines[k])}: {_rows(len(stale))} a given_label other than the label in "
             f"{labels_name} (the first: {reviewed['path'].iloc[k]!r}, {given[k]!r} here, {current[k]!r} "
             "there); a review of other labels? Applied all the same", NoiseAuditWarning)


def close_class(label: str, known: set[str]) -> str | None:
    """The known class ``label`` most likely meant: one that a scan would call its twin (:func:`twin_key`: the
    same but for letter case, spaces, ``-`` or ``_``), else a near spelling (``Trousers`` for ``Trouser``); None
    where none is close."""
    same = [k for k in known if twin_key(k) == twin_key(label)]
    if len(same) == 1:
        return same[0]
    near = difflib.get_close_matches(label, sorted(known), n=2, cutoff=0.8)
    return near[0] if len(near) == 1 else None


def _warn_unused_new_labels(reviewed: pd.DataFrame, lines: list[int | None], reviewed_path: str) -> None:
    """One warning counting the keep and drop verdicts that have a new_label (only relabel uses one)."""
    if "new_label" not in reviewed.columns:
        return
    unused = [k for k, (v, n) in enumerate(zip(reviewed["verdict"].str.lower(), reviewed["new_label"]))
              if v in ("keep", "drop") and n != ""]
    if unused:
        k = unused[0]
        warn(f"{place(reviewed_path, lines[k])}: {_rows(len(unused))} a keep or drop verdict with a "
             f"new_label (the first: {reviewed['path'].iloc[k]!r}, new_label {reviewed['new_label'].iloc[k]!r}"
             "); only relabel uses new_label, so it is ignored", NoiseAuditWarning)


def _whole_number(text: str) -> str | None:
    """'0' for '0.0' or '1e1' → '10': a whole number as an int's text (None for anything else)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() and str(int(value)) != text else None


def _rows(n: int) -> str:
    """The count as a subject: "1 reviewed row has", "3 reviewed rows have"."""
    return f"{n} reviewed row has" if n == 1 else f"{n} reviewed rows have"


def apply_review(labels_csv: str | Path | pd.DataFrame, reviewed_path: str | Path | pd.DataFrame, *,
                 path_col: str | None = None,
                 label_col: str | None = None, allow_new_labels: bool = False, force: bool = False) -> ApplyResult:
    """The labels table with a reviewed sheet's verdicts applied (``noiseaudit apply``).

    Parameters
    ----------
    labels_csv : str, Path or DataFrame
        The labels CSV that was scanned (or the DataFrame), or its ImageFolder directory.
    reviewed_path : str, Path or DataFrame
        The reviewed sheet (``noiseaudit export``'s CSV or JSON with ``verdict`` and ``new_label``
        filled in), Label Studio's export (JSON, JSON-MIN or CSV) of its tasks, or the DataFrame of
        :func:`~noiseaudit.report.export.review_table` with ``verdict`` and ``new_label`` filled in.
    path_col, label_col : str, optional
        The labels CSV's path and label columns (default: auto-detect).
    allow_new_labels : bool
        Accept relabels to classes the labels CSV does not have yet.
    force : bool
        Apply a sheet that reviewed other labels (see Notes).

    Returns
    -------
    ApplyResult
        The new ``table`` (write it with ``to_csv``), the counts ``relabeled``, ``dropped``, ``kept``,
        ``unreviewed`` and ``already``, and ``changes`` as (path, old, new). Given a DataFrame, ``table`` is that
        DataFrame with the review applied: its columns, dtypes and index as they came, less the dropped rows (a
        new class that the label column's type cannot hold makes it ``object``); given a file, its cells as text.

    Raises
    ------
    InputError
        A reviewed row that the rules below refuse, naming the reviewed file and line.

    Notes
    -----
    ``relabel`` sets the label to ``new_label``, or to ``suggested_label`` when ``new_label`` is empty; ``drop``
    removes the row; ``keep``, an empty verdict or ``unsure`` leaves it (a ``new_label`` without a verdict is
    refused: write relabel). A relabel to a label the row has already is counted in ``already`` (the sheet was
    applied before). Column names are read whatever their letter case. Unknown paths, unknown verdicts,
    conflicting rows for one path and (unless ``allow_new_labels``) labels outside the known classes are
    refused, naming the reviewed file and line. Rows are matched on the table's path column (an absolute
    path there matches the report's path relative to the image folder, :class:`PathIndex`); for the
    labels of feature vectors, on its key (id) column, or on the 0-based row number when it has neither.
    ``labels_csv`` may also be an ImageFolder directory (one subfolder per class): the table is then its
    images' ``path,label``. A reviewed row whose ``given_label`` is not the table's label (a review of other
    labels, an older sheet) is refused where its verdict would change the label, unless ``force``; otherwise a
    warning counts such rows. Another counts the ``keep`` or ``drop`` verdicts with a ``new_label`` (which
    only ``relabel`` uses). ``drop`` is refused for a table without a path or id column: its rows are keyed by
    number, and dropping one would renumber the rest (unpairing them from their feature rows). A new label
    spelt like a known class but for case or a letter or two names the class meant.
    """
    if not isinstance(labels_csv, pd.DataFrame):
        check_path(labels_csv, "labels CSV", or_table=True)
        labels_csv = Path(labels_csv)
    table, pcol, lcol, table_lines = read_labels(labels_csv, path_col, label_col)
    labels_name = labels_csv.name if isinstance(labels_csv, Path) else table_name(labels_csv)
    reviewed, lines, reviewed_path = read_reviewed(reviewed_path)
    if reviewed.empty:  # export found nothing to review ([] in JSON, a header alone): nothing changes
        reviewed = pd.DataFrame({"path": [], "verdict": []}, dtype=object)
    _refuse_mixed_delimiters(reviewed, reviewed_path)
    for needed in ("path", "verdict"):
        if needed not in reviewed.columns:
            raise InputError(f"reviewed file has no {needed!r} column", path=reviewed_path,
                             line=header_line(reviewed_path))
    known = set(table[lcol])
    given_column = frame_column(labels_csv, lcol) if isinstance(labels_csv, pd.DataFrame) else None
    # a DataFrame's label values by their text, to hand its table back in its own types
    as_given = None if given_column is None else dict(zip(table[lcol], labels_csv[given_column]))
    index = PathIndex(table[pcol] if pcol is not None else map(str, range(len(table))))
    index.learn_root(reviewed["path"])
    decisions: dict[int, tuple[str, str, int | None]] = {}
    matched: list[int] = []  # the table row of each reviewed row
    gone: list[tuple[str, int | None]] = []  # drop verdicts whose path is not in the labels: dropped before?
    rows: list[int] = []  # the sheet's rows that are in the labels
    for k, (rec, line) in enumerate(zip(reviewed.to_dict("records"), lines)):
        p = rec["path"]
        i = index.row(p)
        if i is None and rec["verdict"].strip().lower() == "drop":
            gone.append((p, line))
            continue
        rows.append(k)
        if i is None:
            raise InputError(f"path {quoted(p)} is not in {labels_name}{_misread(p, index)}", path=reviewed_path,
                             line=line)
        matched.append(i)
        verdict = read_verdict(rec, reviewed_path, line)
        unsure = verdict == "unsure"  # a second look later: left as it is, a new_label in it too
        verdict = "" if unsure else verdict
        if verdict == "" and not unsure and rec.get("new_label", ""):
            raise InputError(f"{quoted(p)} has new_label {rec['new_label']!r} but no verdict: write relabel to apply "
                             "it (or clear new_label)", path=reviewed_path, line=line)
        if verdict == "drop" and pcol is None:
            raise InputError(f"cannot drop row {p}: {labels_name} has no path or id column, so its rows are keyed "
                             "by number and dropping one renumbers every later one (they would no longer pair with "
                             "their feature rows); relabel or keep it, or give the labels an id column",
                             path=reviewed_path, line=line)
        target = ""
        if verdict == "relabel":
            target = relabel_target(rec)
            if not target:
                raise InputError(f"relabel of {quoted(p)} has neither new_label nor suggested_label",
                                 path=reviewed_path, line=line)
            if target not in known and _whole_number(target) in known:
                raise InputError(f"new label {target!r} for {quoted(p)} is not a known class, but "
                                 f"{_whole_number(target)!r} is: a spreadsheet or pandas wrote the whole number with "
                                 "a decimal point; write the class as the labels have it", path=reviewed_path,
                                 line=line)
            close = None if target in known or allow_new_labels else close_class(target, known)
            if close is not None:
                raise InputError(f"new label {target!r} for {quoted(p)} is not a known class; did you mean {close!r}?",
                                 path=reviewed_path, line=line)
            if target not in known and not allow_new_labels:
                raise InputError(f"new label {target!r} for {quoted(p)} is not a known class "
                                 f"(pass {option('allow_new_labels', True)} to add one)", path=reviewed_path, line=line)
        if i in decisions and decisions[i][:2] != (verdict, target):
            other = decisions[i][2]
            also = "listed twice" if other is None else f"also on {line_word(reviewed_path, other)}"
            raise InputError(f"conflicting verdicts for {quoted(p)} ({also})",
                             path=reviewed_path, line=line)
        decisions[i] = (verdict, target, line)
    _already_dropped(gone, bool(matched), labels_name, reviewed_path)
    current = table[lcol].iloc[matched].tolist()
    changes = [decisions[i][0] == "drop" or (decisions[i][0] == "relabel" and decisions[i][1] != c)
               for i, c in zip(matched, current)]
    made = [decisions[i][0] == "relabel" and decisions[i][1] == c for i, c in zip(matched, current)]
    _check_stale(reviewed.iloc[rows], [lines[k] for k in rows], current, changes, made, reviewed_path, labels_name,
                 force)
    _warn_unused_new_labels(reviewed, lines, reviewed_path)

    result = ApplyResult(table=table, label_col=lcol, already_dropped=len(gone))
    drop = []
    for i, (verdict, target, _) in decisions.items():
        p = index.paths[i]
        if verdict == "drop":
            drop.append(i)
            result.dropped += 1
        elif verdict == "relabel" and target != table.at[i, lcol]:
            result.changes.append((p, table.at[i, lcol], target))
            table.at[i, lcol] = target
            result.relabeled += 1
        elif verdict == "relabel":
            result.already += 1
        elif verdict == "":
            result.unreviewed += 1
        else:
            result.kept += 1
    if as_given is None:
        result.table = table.drop(index=drop).reset_index(drop=True)
    else:
        result.table = with_labels(labels_csv, given_column, table[lcol].tolist(), as_given, drop)
    if table_lines is not None:
        result.edits = {table_lines[i]: None for i in drop}
        result.edits.update({table_lines[i]: new for i, (verdict, new, _) in decisions.items()
                             if verdict == "relabel" and i not in drop})
    return result
