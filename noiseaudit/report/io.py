"""Parquet reports with run metadata, written atomically.

Reading needs no pandas when the caller takes a pyarrow Table (:func:`read_report_table`, which
``noiseaudit show`` uses to start quickly); :func:`read_report` gives a DataFrame.
"""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from noiseaudit.errors import InputError, UsageError, check_path, in_memory, input_file, option

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so temp files of killed runs are left where they are
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import pandas as pd

METADATA_KEY = b"noiseaudit"
TEMP_NAME_BYTES = 200  # of a name reused in another (a temp file, a checkpoint folder): room for what is added
SCAN_COLUMNS = ("path", "given_label", "rank", "is_suspect")  # what the commands that read a scan's report need


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two names reach one file (through a symlink, a hard link, ``..``), or would once created."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return a.resolve() == b.resolve()


def cut_name(name: str, limit: int = TEMP_NAME_BYTES) -> str:
    """``name`` cut to ``limit`` bytes of UTF-8 (not inside a character), so that a file named after it, with a
    prefix or suffix added, stays within the 255 bytes a file name may have."""
    return name.encode()[:limit].decode(errors="ignore")


def _temp_prefix(path: Path) -> str:
    """The start of a temp file's name beside ``path``: a dot and the name, cut short (a 255-byte output name was
    refused as 'not writable')."""
    return "." + cut_name(path.name) + "."


STDOUT = "-"  # the output name that means standard output, for the commands that write text (Unix convention)


def is_stdout(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``-``, standard output."""
    return os.fspath(path) == STDOUT


def names_stdout(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``-`` or names the file or stream standard output writes to (``/dev/stdout`` while
    stdout is redirected to a file, say), which is then written through stdout, not reopened or replaced."""
    if is_stdout(path):
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # no such file; a stdout that is no file
        return False


def _stream(path: Path) -> bool:
    """Whether ``path`` is ``-`` or (links followed) a character device or a named pipe (``/dev/null``,
    ``/dev/stdout``, a FIFO): what is written there is streamed into it, not renamed over it, which would put a
    plain file in its place. Block devices and sockets are refused (:func:`check_writable`)."""
    if names_stdout(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_writable(path: str | Path, overwrite: bool, inputs: Iterable[tuple[str | Path | None, str]] = (), *,
                   image_folder: str | Path | None = None, name: str = "output", text: bool = False) -> Path:
    """Refuse before any work is done if ``path`` exists (without ``overwrite``) or its folder is missing or
    not writable (a file is created there and removed, to be sure); and, ``overwrite`` or not, if it is one of
    the command's ``inputs``, (file, what it is) pairs ("labels CSV"; a None or a DataFrame's name is skipped),
    or an image under ``image_folder``. ``name`` is the option that gives ``path``. ``-`` is standard output
    for an output of ``text`` (a CSV, JSON, a page), and refused for a binary one."""
    check_path(path, option(name))
    if is_stdout(path):
        if not text:
            raise UsageError(f"{option(name)} -: a Parquet or model file is not written to stdout; name a file")
        return Path(path)
    path = Path(path)
    for given, what in inputs:
        if given is not None and not in_memory(str(given)) and same_file(path, given):
            raise UsageError(f"{path}: {option(name)} names the {what}, an input of this command")
    if image_folder is not None and path.is_file():
        from noiseaudit.data.source import IMAGE_EXTENSIONS

        if path.suffix.lower() in IMAGE_EXTENSIONS and path.resolve().is_relative_to(Path(image_folder).resolve()):
            raise UsageError(f"{path}: {option(name)} names an image under the image folder, an input of this "
                             "command")
    if path.is_dir():
        raise UsageError(f"{path}: output is a directory; name a file in it")
    if _stream(path):  # nothing is replaced; the writing is checked when it happens
        return path
    if path.exists() and not path.is_file():
        raise UsageError(f"{path}: output is not a regular file (a block device or a socket); name a file")
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: output exists; pass {option('overwrite', True)} to replace it")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: output folder does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"{path.parent}: output folder is not writable")
    try:  # access() says yes to root, and on a read-only mount or /proc, where creating a file then fails
        fd, probe = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".probe", dir=path.parent)
    except OSError as exc:
        raise UsageError(f"{path.parent}: output folder is not writable ({exc.strerror or type(exc).__name__})") \
            from None
    os.close(fd)
    os.unlink(probe)
    return path


def _default_mode(path: Path) -> int:
    """Keep an existing file's mode; otherwise what open() would give under the current umask."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class OutputAppeared(UsageError):
    """The output did not exist when the command started, and something else wrote it meanwhile."""


def _move_into_place(tmp: Path, path: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``replace``, only if ``path`` still does not exist, atomically (a hard
    link fails on an existing name), so that a file another run wrote meanwhile is not lost."""
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except OSError as exc:
        if not isinstance(exc, FileExistsError) and not path.exists():  # no hard links here: checked, not atomic
            os.replace(tmp, path)
            return
        raise OutputAppeared(f"{path}: this output was written by something else while this ran (another run "
                             f"into the same file?), so it is not replaced; pass {option('overwrite', True)} to "
                             "replace it") from None
    tmp.unlink()


def _lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False if another process holds one (or, without
    fcntl, always: nothing can tell a live writer's temp file from a dead one's there)."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def sweep_temp_files(path: Path) -> None:
    """Remove the temp files that runs killed while writing ``path`` left beside it (``kill -9`` leaves them: a
    cache entry's is as large as the entry). A live writer holds a lock on its temp file, so only the dead
    ones' can be locked here."""
    for tmp in path.parent.glob(glob.escape(_temp_prefix(path)) + "*.tmp"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _lock(fd):
                tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None], replace: bool = True) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it into place.

    A failure leaves no partial file behind and any existing ``path`` untouched. Without ``replace`` (the
    command was not given ``--overwrite``), a ``path`` that exists by then is kept and
    :class:`OutputAppeared` raised: the start-up check (:func:`check_writable`) cannot see a file that
    another run writes while this one works. The temp file is locked while it is written, and the temp
    files of killed writers of ``path`` are removed first (:func:`sweep_temp_files`).
    """
    path = Path(path)
    if _stream(path):
        return _write_into(path, write)
    if path.is_symlink():  # replace what the link names, and keep the link
        path = Path(os.path.realpath(path))
    sweep_temp_files(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:  # the folder turned read-only since the start-up check: name the output, not a temp name
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    held = fd if _lock(fd) else None  # held until the file is renamed: a sweep by another run leaves it alone
    if held is None:
        os.close(fd)  # without locks, as before: no handle kept open on the file (Windows cannot rename it then)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode(path))
        _move_into_place(tmp, path, replace)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:  # named by the file asked for, not the temp file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        if held is not None:
            os.close(held)
    return path


def _write_into(path: Path, write: Callable[[Path], None]) -> Path:
    """``write`` to a temp file in the system's temp folder, then stream it into ``path`` (a device or a pipe, or
    standard output for ``-``)."""
    with tempfile.TemporaryDirectory(prefix="noiseaudit-") as folder:
        tmp = Path(folder) / cut_name(path.name or "output")
        write(tmp)
        if names_stdout(path):  # what the command printed before stays before it; a gone reader: BrokenPipeError
            sys.stdout.flush()
            with open(tmp, "rb") as source:
                shutil.copyfileobj(source, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return path
        try:
            with open(tmp, "rb") as source, open(path, "wb") as target:
                shutil.copyfileobj(source, target)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
    return path


def write_report(report: pd.DataFrame, metadata: dict[str, Any], path: str | Path, overwrite: bool = True) -> Path:
    """Write ``report`` to Parquet with ``metadata`` as JSON under the key ``noiseaudit``.

    Parameters
    ----------
    report : pandas.DataFrame
        One row per sample (README, "Report schema").
    metadata : dict
        JSON-ready run metadata (a scan's ``report.attrs["noiseaudit"]``).
    path : path
        Where to write; the file is written to a temp file beside it and renamed.
    overwrite : bool
        Replace an existing ``path`` (as pandas' writers do). False keeps one, raising a
        :class:`~noiseaudit.errors.UsageError`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    check_writable(path, overwrite)  # a file there before the call "exists", not "was written meanwhile"
    return save_report(report, metadata, path, overwrite)


def save_report(report: pd.DataFrame, metadata: dict[str, Any], path: str | Path, overwrite: bool) -> Path:
    """:func:`write_report` for a command that checked ``path`` when it started (:func:`check_writable`): a file
    there now, without ``overwrite``, appeared while it ran (:class:`OutputAppeared`)."""
    bare = report.copy(deep=False)
    bare.attrs = {}  # pyarrow would store them again, in its pandas metadata: the run metadata once, under its key
    table = pa.Table.from_pandas(bare, preserve_index=False)
    merged = dict(table.schema.metadata or {})
    merged[METADATA_KEY] = json.dumps(metadata, default=str).encode()
    table = table.replace_schema_metadata(merged)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp), replace=overwrite)


def read_report_table(path: str | Path, columns: list[str] | None = None, *,
                      scan: bool = False) -> tuple[pa.Table, dict[str, Any]]:
    """A report as a pyarrow Table (only those of ``columns`` it has, if given) and its run metadata.
    With ``scan``, a file without a scan report's columns (predictions, say) is an InputError."""
    path = input_file(path, "report")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PAR1":
            raise InputError("not a Parquet report (give the .parquet file that noiseaudit scan wrote)", path=path)
    try:
        file = pq.ParquetFile(path)  # not pq.read_table: its dataset layer imports pandas
        names = set(file.schema_arrow.names)
        if scan:
            _check_scan_columns(path, file, names)
        if columns is not None:
            columns = [c for c in columns if c in names]
        table = file.read(columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a Parquet report ({str(exc).splitlines()[0]})", path=path) from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    return table, json.loads(raw) if raw else {}


def _check_scan_columns(path: Path, file: pq.ParquetFile, names: set[str]) -> None:
    missing = [c for c in SCAN_COLUMNS if c not in names]
    if not missing:
        return
    raw = (file.schema_arrow.metadata or {}).get(METADATA_KEY)
    if raw and "model_file" in json.loads(raw):
        raise InputError("predictions (noiseaudit predict), not a scan report: give the .parquet file that "
                         "noiseaudit scan wrote", path=path)
    raise InputError(f"not a noiseaudit scan report (it lacks {', '.join(missing)})", path=path)


def read_report(path: str | Path, *, scan: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A report and its run metadata.

    Parameters
    ----------
    path : path
        A Parquet report written by ``noiseaudit scan`` (or :func:`write_report`).
    scan : bool
        Refuse a file that lacks a scan report's columns (``path``, ``given_label``, ``rank``,
        ``is_suspect``), such as the predictions of ``noiseaudit predict``.

    Returns
    -------
    (pandas.DataFrame, dict)
        The report, one row per sample, and the run metadata stored with it (also in the frame's
        ``attrs["noiseaudit"]``, as on the frame :func:`noiseaudit.scan` returns).

    Raises
    ------
    InputError
        Naming the file when it is missing, a folder, or not a Parquet report (or, with ``scan``,
        not a scan's).
    """
    table, metadata = read_report_table(path, scan=scan)
    frame = table.to_pandas()
    frame.attrs["noiseaudit"] = metadata  # as scan's frame has it: render_html and export read it from there
    return frame, metadata
