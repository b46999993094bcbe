"""Errors that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

# whether the caller is the command line (its messages name --options) or Python (they name keyword arguments)
_COMMAND_LINE: ContextVar[bool] = ContextVar("noiseaudit_command_line", default=False)
_UNSET: Any = object()
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Within this block, :func:`option` names options as the command line spells them."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def option(name: str, value: Any = _UNSET, *, flag: str | None = None) -> str:
    """An option as the caller spells it, for a message: ``--hyper-lr`` or ``--model resnet`` on the command line,
    ``hyper_lr`` or ``model='resnet'`` from Python. A switch's value is its state: ``option("force", True)`` is
    ``--force`` or ``force=True``, ``option("cache", False)`` ``--no-cache`` or ``cache=False``. ``flag`` is the
    command line's name where it is not the keyword's (``--truth`` for ``truth_csv``)."""
    if not _COMMAND_LINE.get():
        return name if value is _UNSET else f"{name}={value!r}"
    spelled = flag or "--" + name.replace("_", "-")
    if value is _UNSET or value is True:
        return spelled
    if value is False:
        return "--no-" + spelled.removeprefix("--")
    return f"{spelled} {value}"


class NoiseAuditError(Exception):
    """Base class for problems the user can fix (bad input, bad options)."""

    exit_code = 2


class InputError(NoiseAuditError):
    """A problem with an input file, optionally pinned to a line of it.

    ``line`` is the line number in the file as an editor shows it
    (the CSV header is line 1).
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(("" if self.path is None else place(self.path, line) + ": ") + message)


def in_memory(path: str | Path) -> bool:
    """Whether ``path`` names a table passed from Python ("<labels DataFrame>"), not a file."""
    name = str(path)
    return name.startswith("<") and name.endswith(">")


def place(path: str | Path, line: int | None) -> str:
    """Where an input error is: "file.csv:7" (the line as an editor shows it), "<labels DataFrame> row 5"
    (a table from Python: its 0-based row), or the bare name when no line applies."""
    if line is None:
        return str(path)
    if _records(path):
        return f"{path} record {line}"
    return f"{path} row {line}" if in_memory(path) else f"{path}:{line}"


def _records(path: str | Path) -> bool:
    """A JSON file: its rows are records, numbered from 1 in messages, not lines."""
    return str(path).lower().endswith(".json")


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` located at the first line outside noiseaudit that led here (a notebook cell, a script),
    however deep in the package it is raised: a fixed ``stacklevel`` pointed at noiseaudit's own lines (the
    input checks' warnings at scan.py)."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: the caller of this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def line_word(path: str | Path, line: int | None) -> str:
    """The place within ``path`` in words: "line 7" of a file, "row 5" of a table from Python."""
    return f"row {line}" if in_memory(path) else f"record {line}" if _records(path) else f"line {line}"


def header_line(path: str | Path) -> int | None:
    """The line to name for a problem with the column names: 1 in a file, none in a table from Python."""
    return None if in_memory(path) else 1


def check_path(value: object, what: str, *, or_table: bool = False) -> None:
    """Refuse anything but a path as ``what`` in one line (``or_table``: the caller takes a pandas DataFrame too,
    and says so): ``Path([1])`` was a bare TypeError."""
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"the {what} must be a path{' or a pandas DataFrame' if or_table else ''}, not "
                         f"{type(value).__name__}")


def input_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path when it is a file; else an InputError naming it as ``what`` ("labels CSV",
    "report", ...): "a folder, not a {what}" or "{what} not found"; not a path at all, a UsageError."""
    check_path(path, what)
    path = Path(path)
    if path.is_dir():
        raise InputError(f"a folder, not a {what}", path=path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    return path


def check_image_dir(images_dir: str | Path, hint: str = " (the folder comes first, then the labels CSV)") -> Path:
    """``images_dir`` as its real path, when it is a folder; else an InputError naming it (a file: with ``hint``)."""
    root = Path(images_dir)
    if root.is_file():
        raise InputError(f"a file, not an image folder{hint}", path=root)
    if not root.is_dir():
        raise InputError("image folder not found", path=root)
    return Path(os.path.realpath(root))


class UsageError(NoiseAuditError):
    """Options that cannot work together or are out of range."""


def check_whole_number(name: str, value: object) -> None:
    """Refuse a count that is not a whole number (1.5, "1", True) passed from Python; None passes. ``name`` is the
    keyword (``batch_size``), spelt as the caller does in the message (:func:`option`)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise UsageError(f"{option(name)} must be a whole number, got {value!r}")


def check_number(name: str, value: object) -> None:
    """Refuse a number option that is not one ("0.1", True) passed from Python; None passes."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise UsageError(f"{option(name)} must be a number, got {value!r}")


def check_switch(name: str, value: object, optional: bool = False) -> None:
    """Refuse an on/off option that is not True or False ("off", "no", 1) passed from Python (None with
    ``optional``): a non-empty string is true, so resume="no" resumed."""
    if not isinstance(value, bool) and not (optional and value is None):
        raise UsageError(f"{option(name)} must be True or False{' (or None)' if optional else ''}, got {value!r}")


class TrainingFailed(NoiseAuditError):
    """Training diverged or collapsed at these settings; its checkpoint is of no use to ``--resume``."""


class NoiseAuditWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints it on stderr)."""


class SummaryNote(NoiseAuditWarning):
    """Said to a notebook as a warning; the command line's summary says it in its own words instead."""


class HeavyFlagging(SummaryNote):
    """A scan flagged a large share of its samples (:func:`noiseaudit.report.summary.heavy_flagging`)."""


class ModelAtChance(SummaryNote):
    """The trained model agrees with the given labels no more than always predicting the most common one would:
    it learned nothing, so its ranking and count mean nothing (:func:`noiseaudit.report.summary.at_chance`)."""


class UnlearnedClasses(SummaryNote):
    """The trained model barely predicts some classes at all, so nearly all of their samples are flagged
    whatever their labels (:func:`noiseaudit.report.groups.unlearned`)."""


class SkippedImages(SummaryNote):
    """``on_bad_image="skip"`` left images out: how many, why, and the first few (they are in the result, with
    their ``status``)."""


class NoiseAuditHint(NoiseAuditWarning):
    """A suggestion (an extra to install, another option) rather than a problem; ``--quiet`` hides it."""
