"""The ``noiseaudit`` command line: a thin layer over the Python API."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from noiseaudit._version import __version__
from noiseaudit.cli import evaluate as _evaluate
from noiseaudit.cli import inject as _inject
from noiseaudit.cli import predict as _predict
from noiseaudit.cli import review as _review
from noiseaudit.cli import scan as _scan
from noiseaudit.cli import view as _view
from noiseaudit.cli.console import say

app = typer.Typer(
    name="noiseaudit",
    help="Find wrong labels in image datasets with per-sample learnable learning rates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("scan")(_scan.scan_command)
app.command("inject")(_inject.inject_command)
app.command("evaluate")(_evaluate.evaluate_command)
app.command("export")(_review.export_command)
app.command("apply")(_review.apply_command)
app.command("show")(_view.show_command)
app.command("html")(_view.html_command)
app.command("predict")(_predict.predict_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"noiseaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Find wrong labels in image datasets with per-sample learnable learning rates."""


# click's UsageError (typer vendors click from 0.2x on, so it is reached through typer's own BadParameter)
_UsageError = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "UsageError")


def _missing_input(exc: Exception, args: list[str]) -> str | None:
    """What a scan without its first argument needs, in the order it needs it: click's "Missing argument
    'images_dir'" misled a scan of feature vectors, whose first argument is the labels CSV."""
    param, ctx = getattr(exc, "param", None), getattr(exc, "ctx", None)
    if type(exc).__name__ != "MissingParameter" or ctx is None or ctx.info_name != "scan":
        return None
    if getattr(param, "name", None) != "images_dir":
        return None
    if any(arg == "--features" or arg.startswith("--features=") for arg in args):
        return "a scan of feature vectors takes the labels CSV first: noiseaudit scan LABELS_CSV --features FILE."
    return "missing the image folder: noiseaudit scan IMAGES_DIR [LABELS_CSV] (or LABELS_CSV --features FILE)."


def main(argv: list[str] | None = None) -> None:
    """Run the command line and exit with its code.

    A usage error (a missing argument, an unknown option, a value of the wrong type) is one ``error:`` line on
    stderr naming the command's help, and exit 2, as every input error is: typer would draw it as a boxed panel
    under the usage line. With no arguments at all, the help is printed (exit 2). A stream the shell closed
    (``2>&-``, ``>&-``) is the null device here: its output is lost, and the run goes on as it would.
    """
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
        elif hasattr(getattr(sys, name), "reconfigure"):  # an ASCII stream (PYTHONIOENCODING, a C locale) escapes
            getattr(sys, name).reconfigure(errors="backslashreplace")  # 'é' as \xe9 rather than a traceback
    try:
        code = app(args=argv, prog_name="noiseaudit", standalone_mode=False)
    except _UsageError as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            ctx = getattr(exc, "ctx", None)
            message = _missing_input(exc, sys.argv[1:] if argv is None else argv) or exc.format_message()
            message += "" if message.endswith((".", "?", "!")) else "."
            see = f" See '{ctx.command_path} --help'." if ctx is not None else ""
            say(f"error: {message}{see}")
        code = exc.exit_code
    except typer.Abort:  # Ctrl-C before a command started: not exit 1, which a --fail-above gate means
        say("interrupted")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
