"""The ``odcr`` command line: argument parsing and reporting only.

Each command hands its arguments to a task function (``odcr_cli.training.train``,
``odcr_cli.dehazing.run_dehaze``, ``odcr_cli.evaluation.evaluate``, ``odcr_cli.export.export_onnx``).
Heavy modules (torch above all, ~1.5 s to import) are imported inside the commands, so that
``odcr --help`` and the ONNX path stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from odcr_cli import __version__

app = typer.Typer(
    name="odcr",
    help="Dehaze photos with ODCR/CUT generators; train, evaluate and export them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"odcr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """odcr: image dehazing (ODCR, CVPR 2024; CUT, ECCV 2020) from the command line."""


def _fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


# --- train -------------------------------------------------------------------------------------
# (train command: owned by training)

# --- dehaze ------------------------------------------------------------------------------------
# (dehaze command: owned by dehazing)

# --- evaluate ----------------------------------------------------------------------------------
# (evaluate command: owned by evaluation)

# --- export ------------------------------------------------------------------------------------
# (export command: owned by export)


def main() -> None:
    app()
