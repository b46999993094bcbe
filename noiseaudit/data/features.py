"""Feature vectors as input: a ``.npy`` or Parquet file, or an array from Python.

A features file is row-aligned with the labels table (:func:`read_label_table`),
or, for a Parquet file that carries the table's key column, joined to it by key.
Parquet holds either one list/array column of vectors or plain numeric columns.
Every value is checked (2-D, numeric, finite) and every column standardised to
mean 0 and standard deviation 1, in two streaming passes of ``CHUNK_ROWS`` rows:
a file is never loaded whole, so memory stays near the result's size. The
result is held as float16, half of float32 (a million 256-d vectors take 512 MB);
standardised values lie within +-sqrt(N), well inside float16's range, and its
three significant digits are far below what a classifier's ranking resolves
(measured in ``bench/scale.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from noiseaudit import formats
from noiseaudit.data.source import LabeledSource
from noiseaudit.errors import InputError, NoiseAuditWarning, UsageError, input_file, option, warn

FEATURE_SUFFIXES = (".npy", ".parquet", ".pq")
CHUNK_ROWS = 16384
STORAGE_DTYPE = np.float16


@dataclass
class Features:
    """Standardised (N, d) float16 vectors in the labels table's row order, and the standardisation used."""

    values: np.ndarray
    mean: np.ndarray  # (d,) float64, per column
    scale: np.ndarray  # (d,) float64; 1 for a constant column
    origin: str  # the file, or "<array>"

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])


Chunks = Callable[[], Iterator[tuple[int, np.ndarray]]]  # each call: (first input row, rows) per chunk


@dataclass
class _Reader:
    """How to stream a features input: its shape, its chunks, and where each input row goes."""

    rows: int
    dim: int
    chunks: Chunks
    origin: str
    position: np.ndarray | None = None  # input row -> labels-table row (a key join); None: the same row


def load_features(features: str | Path | np.ndarray | pd.DataFrame, source: LabeledSource | None,
                  standardisation: tuple[np.ndarray, np.ndarray] | None = None) -> Features:
    """Read, check, align and standardise ``features`` for the samples of ``source``.

    ``source`` None (prediction without a labels table): the rows as they come. ``standardisation``
    (per-column mean and scale, as a saved model keeps them): standardise with these instead of the
    data's own statistics, so that new vectors are scaled as the training ones were.

    Raises :class:`InputError` (one line, naming the file) for a file that is
    missing or of an unknown kind, a 1-D or 3-D array, a non-numeric column or
    dtype, a row count that differs from the labels table, a NaN or inf (naming
    the first bad row), or a Parquet key absent from the table (or a table key
    absent from the Parquet file).
    """
    reader = _open(features, source)
    if standardisation is not None and len(standardisation[0]) != reader.dim:
        raise InputError(f"features have {reader.dim} columns; the model was trained on {len(standardisation[0])}",
                         path=reader.origin)
    n = reader.rows if source is None else len(source)
    return _standardise(reader, n) if standardisation is None else _standardise(reader, n, standardisation)


def _open(features: str | Path | np.ndarray | pd.DataFrame, source: LabeledSource | None) -> _Reader:
    if isinstance(features, pd.DataFrame):
        return _frame(features, source)
    if not isinstance(features, (str, Path)):
        return _aligned(_check_array(in_memory_matrix(features), "<array>"), "<array>", source)
    path = input_file(features, "features file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _npy(path, source)
    if suffix in (".parquet", ".pq"):
        return _parquet(path, source)
    how = CONVERT.get(suffix, "")
    raise InputError(f"unknown features format {suffix or '(no suffix)'!r}; use .npy or .parquet{how}", path=path)


# how to turn common other formats into one that is read in streaming passes
CONVERT = {
    ".npz": " (np.save('features.npy', np.load(path)[name]) writes the array you want as .npy)",
    ".pt": " (np.save('features.npy', torch.load(path).numpy()) writes a tensor as .npy)",
    ".pth": " (np.save('features.npy', torch.load(path).numpy()) writes a tensor as .npy)",
    ".csv": " (pandas.read_csv(path).to_parquet('features.parquet') keeps the numeric columns)",
}


def in_memory_matrix(features: object) -> np.ndarray:
    """Vectors passed from Python as a NumPy array: an array as it is, a torch tensor (on any device, of any
    float type: a model's embeddings as they come) or a list of rows; anything else is a UsageError."""
    if isinstance(features, np.ndarray):
        return features
    if type(features).__module__.split(".")[0] == "torch" and hasattr(features, "detach"):
        tensor = features.detach().cpu()  # type: ignore[attr-defined]
        return (tensor.float() if tensor.is_floating_point() else tensor).numpy()  # NumPy has no bfloat16
    if isinstance(features, (list, tuple)):
        try:
            return np.asarray(features)
        except ValueError:  # rows of different lengths
            raise InputError("features are a list of rows of different lengths", path="<array>") from None
    raise UsageError(f"features must be a path (.npy or .parquet), an array, a tensor or a DataFrame, "
                     f"not {type(features).__name__}")


def _check_array(x: np.ndarray, origin: str) -> np.ndarray:
    if x.ndim != 2:
        raise InputError(f"features must be a 2-D array (samples x dimensions), got {x.ndim}-D shape "
                         f"{tuple(x.shape)}", path=origin)
    if x.dtype.kind not in "biuf":
        raise InputError(f"features must be numbers, got dtype {x.dtype}", path=origin)
    if x.shape[1] == 0:
        raise InputError(f"no feature columns (shape {tuple(x.shape)})", path=origin)
    return x


def _not_aligned(rows: int, source: LabeledSource, origin: str) -> InputError:
    """Row-aligned vectors and labels of different lengths: how to pair them by key instead (the labels after
    ``apply`` dropped some rows, against the vectors of them all)."""
    key = f"{source.path_col!r}" if source.path_col else "key (an id or path column the labels CSV gains)"
    return InputError(f"features have {rows} rows but {source.origin} has {len(source)} samples; row-aligned "
                      f"vectors must match row for row. To scan some of them, store the vectors in Parquet beside the "
                      f"labels' {key} column: rows then join by key, and the vectors no row names are left out",
                      path=origin)


def _aligned(x: np.ndarray, origin: str, source: LabeledSource | None) -> _Reader:
    """A row-aligned in-memory or memory-mapped matrix."""
    if source is not None and x.shape[0] != len(source):
        raise _not_aligned(x.shape[0], source, origin)

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, x.shape[0], CHUNK_ROWS):
            yield start, np.asarray(x[start:start + CHUNK_ROWS])

    return _Reader(x.shape[0], x.shape[1], chunks, origin)


def _npy(path: Path, source: LabeledSource | None) -> _Reader:
    """A .npy file, read a chunk at a time with plain reads (a memory map would count every page touched)."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
        except ValueError as exc:
            raise InputError(f"not a .npy array ({exc})", path=path) from None
        offset = fh.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise InputError(f"features must be numbers, got dtype {dtype}", path=path)
    if len(shape) != 2:
        raise InputError(f"features must be a 2-D array (samples x dimensions), got {len(shape)}-D shape "
                         f"{tuple(shape)}", path=path)
    if shape[1] == 0:
        raise InputError(f"no feature columns (shape {tuple(shape)})", path=path)
    if fortran:
        return _aligned(np.load(path, mmap_mode="r"), str(path), source)
    rows, dim = shape
    if source is not None and rows != len(source):
        raise _not_aligned(rows, source, str(path))

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        with open(path, "rb") as fh:
            fh.seek(offset)
            for start in range(0, rows, CHUNK_ROWS):
                count = min(CHUNK_ROWS, rows - start)
                buf = np.empty((count, dim), dtype=dtype)
                got = fh.readinto(memoryview(buf).cast("B"))
                if got != buf.nbytes:
                    raise InputError(f"file ends inside row {start + got // buf[0].nbytes}; it holds fewer rows "
                                     "than its header says", path=path)
                yield start, buf

    return _Reader(rows, dim, chunks, str(path))


def _frame(frame: pd.DataFrame, source: LabeledSource | None) -> _Reader:
    """A DataFrame's numeric columns; joined by the labels table's key column when it has it, as a Parquet file
    is. Its label column, if it carries one (the labels table itself), is not a feature."""
    origin = "<DataFrame>"
    key = source.path_col if source is not None and source.path_col in frame.columns else None
    x = _frame_matrix(frame, origin, (key, None if source is None else source.label_col))
    if key is None:
        return _aligned(x, origin, source)
    reader = _aligned(x, origin, None)
    reader.position = _join(frame[key].tolist(), key, origin, source)
    return reader


def _frame_matrix(frame: pd.DataFrame, origin: str, skip: tuple[str | None, ...]) -> np.ndarray:
    """The numeric columns of ``frame`` (all but ``skip``) as one matrix; a non-numeric one is an error."""
    cols = [c for c in frame.columns if c not in skip]
    for c in cols:
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])):
            raise InputError(f"column {c!r} is not numeric ({frame[c].dtype}); features must be numbers",
                             path=origin)
    if not cols:
        raise InputError("no feature columns", path=origin)
    x = frame[cols].to_numpy()
    if x.dtype == object:  # mixed or nullable (pd.NA) columns: numbers, a missing value NaN (refused by row)
        x = frame[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    return x


def _parquet(path: Path, source: LabeledSource | None) -> _Reader:
    """One list column of vectors, or numeric columns; joined by the table's key column when it has it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a Parquet file ({str(exc).splitlines()[0]})", path=path) from None
    schema = file.schema_arrow
    key = source.path_col if source is not None and source.path_col in schema.names else None
    index = pandas_index_columns(schema)  # a DataFrame's index, stored by to_parquet: not a feature
    lists = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)
             or pa.types.is_fixed_size_list(f.type)]
    if len(lists) > 1:
        raise InputError(f"several list columns ({', '.join(lists)}); keep one column of vectors", path=path)
    if lists:
        value_type = schema.field(lists[0]).type.value_type
        if not (pa.types.is_integer(value_type) or pa.types.is_floating(value_type)):
            raise InputError(f"column {lists[0]!r} holds {value_type}, not numbers", path=path)
        beside = [n for n in schema.names if n not in (lists[0], key, None if source is None else source.label_col)
                  and n not in index]
        if beside and source is not None:  # an id column the labels name otherwise: row order would pair them wrongly
            fix = (f"is not the labels' key column {source.path_col!r}: rename it so to join on it"
                   if source.path_col else
                   f"the labels have no key column to join it to: name one with {option('key_col', flag='--key-col')}")
            raise InputError(f"column {beside[0]!r} sits beside the vectors in {lists[0]!r} but {fix}, or drop it to "
                             "pair rows by position", path=path)
        columns = [lists[0]]
    else:
        columns = [n for n in schema.names if n not in (key, None if source is None else source.label_col)
                   and n not in index]
        for name in columns:
            t = schema.field(name).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                raise InputError(f"column {name!r} is not numeric ({t}); features must be numbers", path=path)
        if not columns:
            raise InputError("no feature columns", path=path)
    rows = file.metadata.num_rows
    position = None if key is None else _join(file.read(columns=[key]).column(0).to_pylist(), key, str(path), source)
    if position is None and source is not None and rows != len(source):
        raise _not_aligned(rows, source, str(path))

    dim = _first_dim(file, lists[0], path) if lists else len(columns)

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        start = 0
        for batch in file.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
            if lists:
                col = batch.column(0)
                if col.null_count:
                    bad = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                    raise InputError(f"features row {start + bad} (0-based) has no vector (null) in column "
                                     f"{lists[0]!r}", path=path)
                lengths = np.diff(col.offsets.to_numpy()) if hasattr(col, "offsets") else None
                flat = col.flatten().to_numpy(zero_copy_only=False)
                if lengths is not None and (lengths != dim).any():  # dim: row 0's, also in later chunks
                    bad = int(np.flatnonzero(lengths != dim)[0])
                    raise InputError(f"features row {start + bad} (0-based): vector of length {lengths[bad]}, "
                                     f"others have {dim}", path=path)
                values = flat.reshape(len(col), dim)
            else:
                values = np.column_stack([batch.column(i).to_numpy(zero_copy_only=False).astype(np.float64)
                                          for i in range(batch.num_columns)])
            yield start, values
            start += len(values)

    return _Reader(rows, dim, chunks, str(path), position)


def pandas_index_columns(schema) -> set[str]:
    """The columns of a Parquet schema that hold a pandas DataFrame's index (``__index_level_0__`` after a
    filter or a sort, or a named index): ``DataFrame.to_parquet`` stores them unless ``index=False``."""
    try:
        stored = (schema.pandas_metadata or {}).get("index_columns", [])
    except (ValueError, TypeError):  # metadata that is not pandas' JSON
        return set()
    return {c for c in stored if isinstance(c, str)}


def _first_dim(file, column: str, path: Path) -> int:
    """The length of the first vector, which every other must have."""
    first = next(file.iter_batches(batch_size=1, columns=[column])).column(0)[0]
    if not first.is_valid:
        raise InputError(f"features row 0 (0-based) has no vector (null) in column {column!r}", path=path)
    if len(first) == 0:
        raise InputError(f"features row 0 (0-based): vector of length 0 in column {column!r}", path=path)
    return len(first)


def _join(keys: list, key: str, path: str, source: LabeledSource) -> np.ndarray:
    """For every features row (its key in ``keys``), the labels-table row with the same key, or -1 where no row
    has it: a store of vectors for more items than these labels (the rows an ``apply`` dropped), left out with
    a warning, once every sample has its vector."""
    row_of = {k: i for i, k in enumerate(source.paths)}
    position = np.full(len(keys), -1, dtype=np.int64)
    seen = np.zeros(len(source), dtype=bool)
    for r, k in enumerate(keys):
        i = row_of.get(str(k) if k is not None else None)
        if i is None:
            continue
        if seen[i]:
            raise InputError(f"features row {r} (0-based): key {k!r} appears twice", path=path)
        seen[i], position[r] = True, i
    if not seen.all():
        first = int(np.flatnonzero(~seen)[0])
        raise InputError(f"{int((~seen).sum())} sample(s) have no features, the first {source.paths[first]!r} "
                         f"(no row with that {key!r} in {path})", path=source.origin, line=source.lines[first])
    unused = np.flatnonzero(position < 0)
    if len(unused):
        warn(f"{path}: {formats.plural(len(unused), 'row')} of vectors whose {key!r} {source.origin} does not list, "
             f"left out (the first: row {int(unused[0])}, {keys[int(unused[0])]!r})", NoiseAuditWarning)
    return position


def _standardise(reader: _Reader, n: int, given: tuple[np.ndarray, np.ndarray] | None = None) -> Features:
    """Pass 1: finiteness, and per-column mean and variance (float64, chunks merged as in Chan et al.);
    pass 2: the standardised rows, as float16, in the labels table's order. ``given`` (mean, scale)
    replaces the statistics of pass 1."""
    count, mean, m2 = 0, np.zeros(reader.dim), np.zeros(reader.dim)
    for start, chunk in reader.chunks():
        used = np.ones(len(chunk), dtype=bool) if reader.position is None else \
            reader.position[start:start + len(chunk)] >= 0
        x = chunk.astype(np.float64)
        finite = np.isfinite(x).all(axis=1) | ~used
        if not finite.all():
            raise InputError(f"features row {start + int(np.flatnonzero(~finite)[0])} (0-based) holds NaN or inf",
                             path=reader.origin)
        x = x[used] if not used.all() else x
        if not len(x):
            continue
        k, chunk_mean = len(x), x.mean(axis=0)
        delta = chunk_mean - mean
        mean = mean + delta * (k / (count + k))
        with np.errstate(over="ignore", invalid="ignore"):
            m2 += np.square(x - chunk_mean).sum(axis=0) + np.square(delta) * (count * k / (count + k))
        count += k
    if not (np.isfinite(mean).all() and np.isfinite(m2).all()):
        column = int(np.flatnonzero(~(np.isfinite(mean) & np.isfinite(m2)))[0])
        raise InputError(f"features column {column} (0-based) holds values too large to standardise (their squares "
                         "overflow float64); rescale them", path=reader.origin)
    scale = np.sqrt(m2 / max(count, 1))
    scale[scale <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0  # a constant column becomes all zeros
    if given is not None:
        mean, scale = (np.asarray(v, dtype=np.float64) for v in given)
    values = np.empty((n, reader.dim), dtype=STORAGE_DTYPE)
    for start, chunk in reader.chunks():
        end = start + len(chunk)
        if reader.position is None:
            values[start:end] = ((chunk.astype(np.float64) - mean) / scale).astype(STORAGE_DTYPE)
            continue
        rows = reader.position[start:end]
        values[rows[rows >= 0]] = ((chunk[rows >= 0].astype(np.float64) - mean) / scale).astype(STORAGE_DTYPE)
    return Features(values=values, mean=mean, scale=scale, origin=reader.origin)
