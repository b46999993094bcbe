"""Errors that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations

from pathlib import Path


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
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


def input_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path when it is a file; else an InputError naming it as ``what`` ("labels CSV",
    "report", ...): "a folder, not a {what}" or "{what} not found"."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"a folder, not a {what}", path=path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    return path


class UsageError(NoiseAuditError):
    """Options that cannot work together or are out of range."""


class NoiseAuditWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints it on stderr)."""
