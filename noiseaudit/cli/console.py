"""Shared terminal plumbing: stdout/stderr consoles, progress, and error exits."""

from __future__ import annotations

import functools
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from noiseaudit.errors import NoiseAuditError, NoiseAuditWarning

F = TypeVar("F", bound=Callable[..., Any])


def stdout() -> Console:
    """Results. Piped output gets a wide console so that tables don't truncate paths."""
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def echo_json(value: Any) -> None:
    """Strict JSON on stdout: NaN and infinities become null."""
    typer.echo(json.dumps(_finite(value), default=str, allow_nan=False))


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """NoiseAuditWarnings as one ``warning:`` line on stderr; other warnings as Python prints them."""
    if issubclass(category, NoiseAuditWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, "", 0))  # type: ignore[arg-type]


def exits_on_errors(fn: F) -> F:
    """Turn a :class:`NoiseAuditError` into one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", NoiseAuditWarning)
                warnings.showwarning = _warning_line
                return fn(*args, **kwargs)
        except NoiseAuditError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_reporter(quiet: bool) -> Iterator[Callable[[str, int, int, dict[str, Any]], None] | None]:
    """A scan progress callback: a Rich bar on a TTY, an epoch log line otherwise, nothing if quiet."""
    if quiet:
        yield None
        return
    err = stderr()
    if not sys.stderr.isatty():
        def log(stage: str, done: int, total: int, info: dict[str, Any]) -> None:
            if stage == "train" and info.get("loss") is not None:
                err.print(f"epoch {info['epoch']}: mean loss {info['loss']:.4f}", highlight=False)
        yield log
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int, info: dict[str, Any]) -> None:
            if stage not in tasks:
                label = {"decode": "decoding images", "embed": "embedding images"}.get(stage, "training")
                tasks[stage] = bar.add_task(label, total=total, note="")
            note = f"epoch {info['epoch']}" if "epoch" in info else ""
            if info.get("loss") is not None:
                note += f" loss {info['loss']:.3f}"
            bar.update(tasks[stage], completed=done, total=total, **({"note": note} if note else {}))

        yield update
