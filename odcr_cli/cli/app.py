"""The ``odcr`` command line: argument parsing and reporting only.

Each command (one module each in this package) hands its arguments to a task function
(``odcr_cli.tasks.training.train``, ``odcr_cli.tasks.dehazing.run_dehaze``,
``odcr_cli.tasks.evaluation.evaluate``, ``odcr_cli.tasks.export.export_onnx``). Heavy modules
(torch above all, ~1.5 s to import) are imported inside the commands, so that ``odcr --help`` and
the ONNX path stay fast. Every :class:`~odcr_cli.errors.OdcrError` is reported as one line by
:class:`odcr_cli.cli.common.Command`.
"""

from __future__ import annotations

import typer

from odcr_cli import __version__
from odcr_cli.cli.common import Command, Group, one_line_warning
from odcr_cli.cli.dehaze import dehaze_command
from odcr_cli.cli.evaluate import evaluate_command
from odcr_cli.cli.export import export_command, models_command
from odcr_cli.cli.synth import synth_command
from odcr_cli.cli.train import train_command

app = typer.Typer(
    name="odcr",
    cls=Group,
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


app.command("train", cls=Command, help="Train a dehazing generator on unpaired folders of hazy and clear photos.")(train_command)
app.command("dehaze", cls=Command)(dehaze_command)
app.command("synth", cls=Command)(synth_command)
app.command("evaluate", cls=Command)(evaluate_command)
app.command("models", cls=Command)(models_command)
app.command("export", cls=Command)(export_command)


def main() -> None:
    import warnings

    warnings.showwarning = one_line_warning
    app()
