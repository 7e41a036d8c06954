"""The ``odcr`` command line: argument parsing and reporting only.

Each command (one module each in this package) hands its arguments to a task function
(``odcr_cli.tasks.train.training.train``, ``odcr_cli.tasks.dehaze.dehazing.run_dehaze``,
``odcr_cli.tasks.evaluate.evaluation.evaluate``, ``odcr_cli.tasks.export.export.export_onnx``). Heavy modules
(torch above all, ~1.5 s to import) are imported inside the commands, so that ``odcr --help`` and
the ONNX path stay fast. Every :class:`~odcr_cli.errors.OdcrError` is reported as one line by
:class:`odcr_cli.cli.common.Command`.
"""

from __future__ import annotations

import typer

from odcr_cli import __version__
from odcr_cli.cli.common import Command, Group, one_line_warning
from odcr_cli.cli.dehaze import dehaze_command
from odcr_cli.cli.distill import distill_command
from odcr_cli.cli.evaluate import evaluate_command
from odcr_cli.cli.export import export_command, models_command
from odcr_cli.cli.synth import synth_command
from odcr_cli.cli.train import train_command

app = typer.Typer(
    name="odcr",
    cls=Group,
    help="Dehaze photos and videos with ODCR/CUT generators; train, evaluate and export them.",
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


# A few examples per command, shown under its --help (one per line: Typer keeps the line breaks
# of an epilog written with blank lines between them).
EXAMPLES = {
    "dehaze": ["odcr dehaze photo.jpg -o clear.jpg", "odcr dehaze photos/ -o dehazed/ --recursive --skip-existing",
               "odcr dehaze 'shots/*.png' --strength 0.7", "odcr dehaze photo.jpg --method dcp -o dcp.jpg",
               "odcr dehaze --input-list files.txt -o out/ --shard 1/4 --json report.json",
               "odcr dehaze clip.mp4 -o clip_dehazed.mp4 --crf 20",
               "odcr dehaze photo.jpg -o clear.png --save-transmission"],
    "train": ["odcr train --hazy my_hazy/ --clear my_clear/ --out runs/mine",
              "odcr train --hazy my_hazy/ --clear my_clear/ --out runs/paper --recipe paper --device cuda",
              "odcr train --resume runs/mine --iters 3000",
              "odcr train --init odcr --hazy my_hazy/ --clear my_clear/ --out runs/tuned",
              "odcr dehaze photo.jpg -o clear.jpg --weights runs/mine"],
    "evaluate": ["odcr evaluate --pairs benchmark/ -m odcr -m dcp -m dcp@128",
                 "odcr evaluate --hazy my_hazy/ -m odcr -m mine=runs/mine/generator.safetensors",
                 "odcr evaluate --hazy hazy/ --gt clear/ --report report/"],
    "export": ["odcr export --onnx -o odcr.onnx", "odcr export --onnx --int8 --calibrate my_photos/ -o odcr_int8.onnx",
               "odcr export --onnx --weights runs/mine -o mine.onnx --static 512x512"],
    "distill": ["odcr distill --init odcr --truth --hazy my_hazy/ --clear my_clear/ --out runs/mine",
                "odcr distill --teacher runs/mine --hazy my_hazy/ --clear my_clear/ --out runs/student",
                "odcr distill --resume runs/student --iters 4500",
                "odcr export --onnx --int8 --weights runs/student -o student.onnx"],
    "synth": ["odcr synth my_clear/ -o synthetic/ --variants 2 --save-transmission"],
    "models": ["odcr models", "odcr models --json"],
}


def _epilog(name: str) -> str:
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in EXAMPLES[name])


app.command("train", cls=Command, epilog=_epilog("train"),
            help="Train a dehazing generator on unpaired folders of hazy and clear photos.")(train_command)
app.command("distill", cls=Command, epilog=_epilog("distill"),
            help="Distil a scattering model into a narrower, faster student (the bundled default's recipe), "
                 "or with --init MODEL --truth fine-tune it to your own haze.")(distill_command)
app.command("dehaze", cls=Command, epilog=_epilog("dehaze"))(dehaze_command)
app.command("synth", cls=Command, epilog=_epilog("synth"))(synth_command)
app.command("evaluate", cls=Command, epilog=_epilog("evaluate"))(evaluate_command)
app.command("models", cls=Command, epilog=_epilog("models"))(models_command)
app.command("export", cls=Command, epilog=_epilog("export"))(export_command)


def main() -> None:
    import warnings

    warnings.showwarning = one_line_warning
    app()
