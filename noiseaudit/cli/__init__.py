"""The ``noiseaudit`` command line: a thin layer over the Python API."""

from __future__ import annotations

from typing import Annotated

import typer

from noiseaudit._version import __version__
from noiseaudit.cli import evaluate as _evaluate
from noiseaudit.cli import inject as _inject
from noiseaudit.cli import predict as _predict
from noiseaudit.cli import review as _review
from noiseaudit.cli import scan as _scan
from noiseaudit.cli import view as _view

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


def main() -> None:
    app()
