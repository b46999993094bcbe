"""Read a small-to-medium CSV into text cells, keeping each record's first line number.

pandas drops blank lines and folds multi-line quoted fields, which makes its
row numbers useless in error messages; the standard library's reader tells
us exactly where every record starts. A UTF-8 BOM is accepted and the
delimiter is sniffed among ``, ; TAB |``.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from noiseaudit import formats
from noiseaudit.errors import InputError, check_path, input_file

DELIMITERS = ",;\t|"
EXCEL_SEP = re.compile(r"^sep=([,;\t|])\r?\n?$")  # the line Excel writes (and reads) to name the delimiter
BINARY_KINDS = {  # a file's first bytes, and what to call a file that is not text at all
    b"\x1f\x8b": "a gzip-compressed file; decompress it first (gunzip)",
    b"PK\x03\x04": "a zip archive (an Excel .xlsx workbook is one); save the sheet as \"CSV UTF-8\"",
}


def _sniff_delimiter(sample: str) -> str:
    """The header line's delimiter; only the delimiter is sniffed, quoting stays standard (RFC 4180)."""
    try:
        return csv.Sniffer().sniff(sample.split("\n", 1)[0] + "\n", delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


@dataclass(frozen=True)
class CsvStyle:
    """How a CSV file is written: its delimiter, a UTF-8 BOM (Excel's "CSV UTF-8") and its line ending."""

    delimiter: str = ","
    bom: bool = False
    newline: str = "\n"


def csv_style(source: str | Path | pd.DataFrame) -> CsvStyle:
    """The style of the CSV file ``source``, so that a file made from it (``apply``'s corrected labels,
    ``inject``'s noisy copy) can replace it as it is read; the default for anything else (a folder, a DataFrame)."""
    if not isinstance(source, (str, Path)) or not Path(source).is_file():
        return CsvStyle()
    with open(source, "rb") as fh:
        raw = fh.read(65536)
    first = raw.split(b"\n", 1)[0]
    text = raw.decode("utf-8-sig", errors="replace")
    return CsvStyle(_sniff_delimiter(text), raw.startswith(codecs.BOM_UTF8),
                    "\r\n" if first.endswith(b"\r") else "\n")


def edited_csv(path: str | Path, label_col: str, edits: dict[int, str | None], style: CsvStyle) -> str:
    """The text of the CSV file ``path`` with the records that start on the lines in ``edits`` changed: a new
    ``label_col`` value, or None to leave the record out. Every other line is kept byte for byte (its quoting,
    spacing, blank lines and comments), so that the corrected file differs from the input only where a review
    changed it; only the edited records are written anew (in ``style``)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        lines = fh.read().splitlines(keepends=True)
    out: list[str] = []
    column: int | None = None
    i = 0
    while i < len(lines):
        if column is None and lines[i].strip() and not EXCEL_SEP.match(lines[i]):  # the header
            header = [c.strip() for c in next(csv.reader([lines[i]], delimiter=style.delimiter))]
            column = header.index(label_col)
        if i + 1 not in edits:
            out.append(lines[i])
            i += 1
            continue
        reader = csv.reader(iter(lines[i:]), delimiter=style.delimiter, skipinitialspace=True)
        record = next(reader)
        if edits[i + 1] is not None:
            raw = "".join(lines[i:i + reader.line_num])
            # a record with every field quoted (as some tools write them all) is written so again
            quoting = csv.QUOTE_ALL if raw.lstrip().startswith('"') and raw.count('"') >= 2 * len(record) \
                else csv.QUOTE_MINIMAL
            record[column] = edits[i + 1]  # type: ignore[index]
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=style.delimiter, lineterminator=style.newline,
                       quoting=quoting).writerow(record)
            out.append(buffer.getvalue())
        i += reader.line_num
    return ("\ufeff" if style.bom else "") + "".join(out)


def write_csv(frame: pd.DataFrame, path: str | Path, style: CsvStyle = CsvStyle()) -> None:
    """``frame`` as a CSV in ``style`` (no index)."""
    frame.to_csv(path, index=False, sep=style.delimiter, lineterminator=style.newline,
                 encoding="utf-8-sig" if style.bom else "utf-8")


def _not_utf8(exc: UnicodeDecodeError, path: str | Path) -> InputError:
    """Where a CSV stops being UTF-8 (its line), and how to save it as UTF-8: UTF-16 is what Excel's "Unicode
    Text" writes; other bytes are most often a legacy code page (Latin-1, Windows-1252)."""
    raw = exc.object
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return InputError("UTF-16 text (Excel's \"Unicode Text\"), not UTF-8; save it as \"CSV UTF-8\"", path=path)
    line = raw.count(b"\n", 0, exc.start) + 1
    return InputError(f"not UTF-8 text (byte {raw[exc.start]:#04x}, probably Latin-1 or Windows-1252); save it "
                      "as UTF-8 (\"CSV UTF-8\" in Excel)", path=path, line=line)


def read_text_table(path: str | Path, what: str = "labels CSV", parquet_hint: str = "",
                    rows_needed: bool = True) -> tuple[pd.DataFrame, list[int]]:
    """All cells as stripped strings, and the file line on which each data record starts; errors name the
    file as ``what``, and a Parquet file given instead adds ``parquet_hint``. A header without rows is an
    error unless not ``rows_needed`` (a review sheet of nothing: export found nothing to review)."""
    path = input_file(path, what)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        if exc.object[:4] == b"PAR1":
            raise InputError(f"a Parquet file, not a {what}{parquet_hint}", path=path) from None
        for magic, kind in BINARY_KINDS.items():
            if exc.object.startswith(magic):
                raise InputError(f"not a {what} but {kind}", path=path) from None
        raise _not_utf8(exc, path) from None
    if not text.strip():
        raise InputError(f"{what} is empty", path=path)
    nul = text.find("\x00")
    if nul >= 0:  # before parsing: Python 3.10's csv reader stops at one with an error of its own
        raise InputError("contains a NUL character", path=path, line=text.count("\n", 0, nul) + 1)
    lines_in = text.splitlines(keepends=True)
    declared = EXCEL_SEP.match(lines_in[0])
    if declared:  # Excel's "sep=;" line names the delimiter; blank it, so that the lines keep their numbers
        lines_in[0] = "\n"
    exhausted = False

    def feed():
        # Non-strict csv returns a quoted field still open at the end of the file as if it were closed,
        # swallowing every later row into one cell; a record that only ends once the input ran out is that.
        nonlocal exhausted
        yield from lines_in
        exhausted = True

    delimiter = declared.group(1) if declared else _sniff_delimiter(text[:65536])
    reader = csv.reader(feed(), delimiter=delimiter, skipinitialspace=True)
    header: list[str] | None = None
    header_at = 1
    rows: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        for record in reader:
            if exhausted:
                raise InputError('unterminated quoted field: a \'"\' opened on this line is never closed',
                                 path=path, line=start)
            if record and any(cell.strip() for cell in record):
                if header is None:
                    header, header_at = [c.strip() for c in record], start
                    _check_header(header, path, start, unnamed=True)
                elif len(record) != len(header):
                    comment = (f"; line {header_at} starts with '#', a comment? CSV has none: delete it"
                               if header[0].startswith("#") else "")
                    raise InputError(f"{formats.plural(len(record), 'field')} where the header has "
                                     f"{len(header)}{comment}", path=path,
                                     line=start)
                elif [c.strip() for c in record] == header:  # `cat a.csv b.csv > labels.csv`
                    raise InputError(f"this row repeats the header (line {header_at}): two CSV files joined "
                                     "together? Delete the line", path=path, line=start)
                else:
                    rows.append([c.strip() for c in record])
                    lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"cannot parse CSV ({exc})", path=path, line=reader.line_num) from None
    if header is None:
        raise InputError(f"{what} is empty", path=path)
    if not rows and rows_needed:
        raise InputError(f"{what} has a header but no rows", path=path, line=1)
    frame = pd.DataFrame(rows, columns=range(len(header)), dtype=object)
    keep = [j for j, name in enumerate(header) if name or not _artefact(frame[j], j, path, header_at)]
    frame = frame[keep].set_axis([header[j] for j in keep], axis=1)
    return frame, lines


def _artefact(cells: pd.Series, j: int, path: str | Path, line: int) -> bool:
    """Whether a column without a name is one a spreadsheet or pandas adds, left out quietly: empty (Excel's
    stray trailing commas) or, first, the 0, 1, 2, ... of a pandas index (``to_csv`` without ``index=False``).
    Any other is an InputError."""
    if (cells == "").all() or (j == 0 and cells.tolist() == [str(i) for i in range(len(cells))]):
        return True
    raise InputError(f"column {j + 1} has no name in the header but holds values ({cells.iloc[0]!r}, …); name it",
                     path=path, line=line)


def _check_header(header: list[str], path: str | Path, line: int | None, unnamed: bool = False) -> None:
    """Column names: none empty (``unnamed``: some may be, for :func:`_artefact` to judge) and none twice."""
    seen: set[str] = set()
    for name in header:
        if not name:
            if unnamed:
                continue
            raise InputError("empty column name in the header", path=path, line=line)
        if name in seen:
            raise InputError(f"column {name!r} appears twice in the header", path=path, line=line)
        seen.add(name)


KIND_ATTR = "noiseaudit.kind"  # DataFrame.attrs: what the caller passed, when a table was made of it ("ndarray")


def read_table(table: str | Path | pd.DataFrame, what: str = "labels CSV",
               parquet_hint: str = "") -> tuple[pd.DataFrame, list[int], str]:
    """:func:`read_text_table` of a CSV file, or the same of a DataFrame passed from Python, and the name
    errors give it. A DataFrame's "lines" are its 0-based row positions and its name is "<labels
    DataFrame>" (``what``'s first word), so errors read "<labels DataFrame> row 5: ..." (``df.iloc[5]``)."""
    if isinstance(table, (str, os.PathLike)):
        frame, lines = read_text_table(table, what, parquet_hint)
        return frame, lines, str(table)
    if not isinstance(table, pd.DataFrame):
        check_path(table, what, or_table=True)
    origin = table_name(table, what)
    if table.empty:
        kind = table.attrs.get(KIND_ATTR, "DataFrame")
        raise InputError(f"the {what.split()[0]} {kind} has no rows" if kind == "DataFrame" else
                         f"the {what.split()[0]} are an empty {kind}", path=origin)
    _check_header([str(c).strip() for c in table.columns], origin, None)
    return text_cells(table), list(range(len(table))), origin


def table_name(table: str | Path | pd.DataFrame, what: str = "labels CSV") -> str:
    """How errors and the run's config name an input table: its path, or "<labels DataFrame>" (``what``'s
    first word) for a DataFrame passed from Python."""
    if not isinstance(table, pd.DataFrame):
        return str(table)
    return f"<{what.split()[0]} {table.attrs.get(KIND_ATTR, 'DataFrame')}>"


def text_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A DataFrame as a CSV reader would give it: every cell stripped text, a missing one empty, a float
    column of whole numbers written as ints (pandas makes an int column with a gap float)."""
    out = {}
    for name, col in frame.items():
        values = col
        if pd.api.types.is_float_dtype(col) and np.isfinite(col.dropna()).all() and (col.dropna() % 1 == 0).all():
            values = col.astype("Int64")
        text = values.astype(str).str.strip().mask(col.isna(), "")  # pandas 2 writes None as "None": cleared here
        out[str(name).strip()] = text.astype(object).reset_index(drop=True)
    return pd.DataFrame(out, dtype=object)


def frame_column(frame: pd.DataFrame, name: str) -> object:
    """The column of ``frame`` that the text table calls ``name`` (whose names are stripped text)."""
    return next(c for c in frame.columns if str(c).strip() == name)


def with_labels(frame: pd.DataFrame, column: object, labels: list, as_given: dict[object, object],
                drop: Sequence[int] = ()) -> pd.DataFrame:
    """A DataFrame from Python handed back changed (``apply_review``, ``inject_file``): its columns, dtypes and
    index as they came, ``column`` set from ``labels`` (each in the caller's value by ``as_given``, else as it is)
    in the column's own type (an int column stays int; a new class that the type cannot hold makes it object),
    the rows at positions ``drop`` left out."""
    out = frame.copy()
    values = pd.Series([as_given.get(v, v) for v in labels], index=frame.index, dtype=object)
    dtype = frame[column].dtype
    if isinstance(dtype, pd.CategoricalDtype):  # a new class joins the categories
        added = [v for v in dict.fromkeys(values) if v not in dtype.categories and not pd.isna(v)]
        dtype = pd.CategoricalDtype([*dtype.categories, *added], ordered=dtype.ordered)
    try:
        typed = values.astype(dtype)
    except (TypeError, ValueError):  # a new class the type cannot hold: "cat" in an int column
        typed = values
    out[column] = typed if typed.isna().sum() == values.isna().sum() else values
    return out.drop(index=frame.index[list(drop)])
