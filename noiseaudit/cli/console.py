"""Shared terminal plumbing: stdout/stderr consoles, JSON output and error exits (progress: progress.py)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from noiseaudit._version import __version__
from noiseaudit.errors import NoiseAuditError, NoiseAuditWarning, SummaryNote, UsageError, command_line

F = TypeVar("F", bound=Callable[..., Any])

# A flag with no --no- twin: replacing an existing output is opted into, never out of.
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
JsonSummary = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
# every command takes -q, so that a CI script can pass it to each; those without progress or hints have none to hush
Quiet = Annotated[bool, typer.Option("--quiet", "-q",
                                     help="No progress or hints on stderr (errors and warnings still print).")]


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away. Of stdout (``| head``): raise, for :func:`exits_on_errors` to end the run with
        ``BROKEN_PIPE``, instead of Rich's own exit 1 (which means findings here). Of stderr: fall silent, as a
        closed stderr does; the results on stdout and the exit code stay what they are."""
        self.quiet = True
        if not self.stderr:
            raise BrokenPipeError


class _Pieces:
    """A text stream written a piece at a time. CPython's buffered writer loses the rest of one large write that
    a pipe cuts short (its reader quit: ``| head``) without raising, and the run then ended 0 as if every row had
    been read; piece by piece, the first piece refused raises BrokenPipeError (exit ``BROKEN_PIPE``)."""

    PIECE = 16384  # characters

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            for start in range(0, len(text), self.PIECE):
                self._stream.write(text[start:start + self.PIECE])
                self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:  # stdout on a full disk (> /dev/full): the error names stdout, as a file's names it
            raise OSError(exc.errno, exc.strerror, "stdout") from None
        return len(text)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, flush: the stream's own
        return getattr(self._stream, name)


# piped results: wide enough that a table row is one line whatever its paths (grep finds the whole row); a
# table is as wide as its cells, not the console
PIPED_WIDTH = 1000


def stdout() -> Console:
    """Results. Piped output gets a wide console so that tables neither cut nor wrap paths."""
    return _Console(file=_Pieces(sys.stdout), soft_wrap=True, width=None if sys.stdout.isatty() else PIPED_WIDTH)


def stderr() -> Console:
    return _Console(stderr=True, soft_wrap=True)


def _finite(value: Any) -> Any:
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar (a report cell): its Python value, not default=str's text
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def echo_json(value: Any) -> None:
    """Strict JSON on stdout: numpy scalars as Python numbers, NaN and infinities as null."""
    _Pieces(sys.stdout).write(json.dumps(_finite(value), default=str, allow_nan=False) + "\n")


def text_output(output: Path, json_out: bool) -> Path:
    """Refuse ``-o -`` beside ``--json``, which both write to stdout; return ``output``."""
    from noiseaudit.report.io import is_stdout  # the command imports it anyway, to write its output

    if json_out and is_stdout(output):
        raise UsageError("--json and -o - both write to stdout: choose one (or name a file)")
    return output


def results_console(output: Path, quiet: bool) -> Console | None:
    """Where a command that wrote ``output`` prints its results (a table, "wrote ..."): stdout; stderr when the
    output itself went to stdout (``-o -``), where they would end up inside it, and then nowhere with ``quiet``."""
    from noiseaudit.report.io import names_stdout

    if not names_stdout(output):
        return stdout()
    return None if quiet else stderr()


def output_name(output: Path) -> str:
    """An output's name in a message: ``stdout`` for ``-``."""
    from noiseaudit.report.io import is_stdout

    return "stdout" if is_stdout(output) else str(output)


def say(line: str) -> None:
    """One line on stderr (an error, a warning, a note). A stderr whose reader has gone (``2>&1 | head``) or that
    is closed loses the line; the run, its results and its exit code go on as they would."""
    try:
        typer.echo(line, err=True)
    except BrokenPipeError:
        pass


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """NoiseAuditWarnings as one ``warning:`` line on stderr (:func:`say`); other warnings as Python prints them."""
    if issubclass(category, SummaryNote):  # the summary says it (a JSON summary holds the numbers)
        return
    if issubclass(category, NoiseAuditWarning):
        say(f"warning: {message}")
        return
    if category.__name__ == "DecompressionBombWarning":  # Pillow's, at open; the image's own error line follows
        return
    try:
        sys.stderr.write(warnings.formatwarning(message, category, "", 0))  # type: ignore[arg-type]
    except BrokenPipeError:
        pass


def discard_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, for a command that goes on to say on stderr what its
    exit code means (scan's --fail-above)."""
    _discard_output(("stdout",))


BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE: the reader of our output went away


def _discard_output(streams: tuple[str, ...] = ("stdout", "stderr")) -> None:
    """Point stdout and stderr (or those ``streams``) at /dev/null, so that nothing more (not even the flush at
    exit) meets the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (getattr(sys, name) for name in streams):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass  # not a real file (a test runner's buffer)
    os.close(devnull)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C is: the command stops the same way (its temp files and folders tidied)."""

    signum = signal.SIGTERM  # which signal it was, for an exit code of 128 + signum


@contextlib.contextmanager
def _terminate_as_ctrl_c() -> Iterator[None]:
    """SIGTERM ends a command as Ctrl-C does, saying so (exit 143), where by default the process died silently
    (a scan still decoding its images, say); the training loop catches both to checkpoint first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exits_on_errors(fn: F) -> F:
    """Turn a :class:`NoiseAuditError` into one line on stderr and its exit code; an OSError (disk full,
    permissions) into one line and exit 2. Messages name options as the command line spells them
    (:func:`~noiseaudit.errors.option`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings(), command_line(), _terminate_as_ctrl_c():  # messages name --options
                warnings.simplefilter("always", NoiseAuditWarning)
                warnings.showwarning = _warning_line
                return fn(*args, **kwargs)
        except NoiseAuditError as exc:
            if not _torchrun_follower():  # the same inputs and settings give every rank the same error: say it once
                say(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            # a single process has said where its checkpoint is (Interrupted); a torchrun scan keeps none, and
            # says so once, from rank 0: the others are stopped by torchrun when any rank fails, and their
            # 'interrupted' beside rank 0's error misled
            world, rank = _torchrun_job()
            if rank == 0:
                say("interrupted" + ("; a torchrun scan keeps no checkpoint: run it again from the start"
                                     if world > 1 else ""))
            raise typer.Exit(143 if isinstance(exc, _Terminated) else 130) from None
        except UnicodeEncodeError as exc:  # a file name the locale's encoding cannot write (LC_ALL=C, no UTF-8 mode)
            say(f"error: {exc.object!r} cannot be encoded as {exc.encoding}: run under a UTF-8 locale "
                "(LC_ALL=C.UTF-8) or with PYTHONUTF8=1")
            raise typer.Exit(2) from None
        except BrokenPipeError:  # `noiseaudit scan ... | head`: the report is written, the reader is gone
            _discard_output()
            raise typer.Exit(BROKEN_PIPE) from None
        except OSError as exc:  # the system refused (disk full, permissions): one line, and not exit 1 (findings)
            where = f"{exc.filename}: " if exc.filename else ""
            say(f"error: {where}{exc.strerror or exc}")
            raise typer.Exit(2) from None
        except _CLICK_EXITS:  # a command's own exit code (the --fail-above gate's 1), or click's usage errors
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or the memory running out, told apart from exit 1 (findings)
            if _out_of_memory(exc):
                say(f"error: out of memory ({_first_line(exc)}){_LESS_MEMORY.get(fn.__name__, '')}")
                raise typer.Exit(2) from None
            traceback.print_exc(file=sys.stderr)
            say(f"error: internal error ({type(exc).__name__}: {_first_line(exc)}): a bug in noiseaudit "
                f"{__version__}; please report it with the traceback above")
            raise typer.Exit(INTERNAL_ERROR) from None

    return wrapper  # type: ignore[return-value]


# typer.Exit, typer.Abort and click's ClickException (reached through typer, which vendors click from 0.2x on)
_CLICK_EXITS = (typer.Exit, typer.Abort, next(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException"))
INTERNAL_ERROR = 3  # an exception no check foresaw: not 1 (a --fail-above gate) nor 2 (bad input)
_LESS_MEMORY = {"scan_command": ": try a smaller --batch-size or --image-size, or --device cpu"}


def _out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, torch's OutOfMemoryError (CUDA, MPS), or its CPU allocator refusing."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(exc) or "MPS backend out of memory" in str(exc))


def _torchrun_job() -> tuple[int, int]:
    """(WORLD_SIZE, RANK) of the torchrun job, (1, 0) alone or where they are no numbers (said elsewhere)."""
    from noiseaudit.distributed import job

    try:
        return job()
    except NoiseAuditError:
        return 1, 0


def _torchrun_follower() -> bool:
    """A rank other than 0 of a real torchrun job (torchrun sets MASTER_ADDR and MASTER_PORT beside WORLD_SIZE and
    RANK; without them the job is refused, and that error must be said whatever RANK the shell left)."""
    # the environment first: an input error said before torch is imported (a wrong option) must not import it
    return all(os.environ.get(name) for name in ("MASTER_ADDR", "MASTER_PORT")) and _torchrun_job()[1] > 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
