"""``odcr distill``: options -> :func:`odcr_cli.tasks.train.distill.distill`, reported as ``odcr train``
reports (its progress bar, Ctrl-C and error handling)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

import typer

from odcr_cli.cli.common import fail
from odcr_cli.cli.field_options import field_default, options, with_options
from odcr_cli.cli.train import TrainReporter, given_on_the_command_line, StopOnSignal
from odcr_cli.core.configs import field_values, flag_fields, parameter_name
from odcr_cli.errors import OdcrError
from odcr_cli.tasks.train import recipe as recipes
from odcr_cli.tasks.train.settings import DistillConfig, TrainConfig

# The settings of a run that a distillation uses (its data, schedule and files); the rest of
# odcr train's (crops, batches, the GAN's) have no meaning here.
DISTILL_RUN_FLAGS = ("hazy", "clear", "out", "iters", "decay_fraction", "lr", "seed", "device", "checkpoint_every",
                     "keep_checkpoints", "log_every", "val_hazy", "val_gt", "val_every", "until", "training_data",
                     "ema_decay", "max_minutes")
# The bundled default's schedule (odcr_cli/tasks/train/recipes/distill.toml; docs/scattering.md,
# "A student for speed"), and what --init lays over it where not typed (recipes/adapt.toml).
DISTILL_DEFAULTS: dict[str, object] = recipes.load(recipes.DISTILL)
ADAPT_DEFAULTS: dict[str, object] = recipes.load(
    recipes.ADAPT, names={parameter_name(f) for cls in (TrainConfig, DistillConfig) for f in flag_fields(cls)})


def distill_command(
    ctx: typer.Context,
    run: Optional[Path] = typer.Argument(None, metavar="RUN", help="With --resume: the run folder to continue."),
    resume: bool = typer.Option(False, "--resume", help="Continue the distillation in RUN (or --out) from its "
                                                        "newest valid checkpoint (the teacher's t is kept there)."),
    **settings: Any,
) -> None:
    """Distil a scattering model into a narrower, faster student (the bundled default's recipe), or
    with --init MODEL --truth fine-tune it to your own haze."""
    from odcr_cli.engine.options import Device
    from odcr_cli.tasks.train.distill import distill
    from odcr_cli.tasks.train.training import TrainCallbacks

    if run is not None:
        if not resume:
            fail(f"unexpected argument {run}: a run folder as an argument is for --resume")
        settings["out"] = run
    if settings["out"] is None:
        fail("--out RUN is required: the folder of the student's run")
    if not resume and not settings["hazy"]:
        fail("--hazy is required: a folder of photos to distil on (hazy ones; add clear ones with --clear)")
    given = given_on_the_command_line(ctx)
    if settings.get("init") and not resume:  # a fine-tune: its schedule, and the model is its own teacher
        settings.update({k: v for k, v in ADAPT_DEFAULTS.items() if k not in given})
        if "teacher" not in given:
            settings["teacher"] = settings["init"]
    values = field_values(TrainConfig, {**{parameter_name(f): None for f in flag_fields(TrainConfig)}, **settings})
    for name in ("hazy", "clear", "out", "val_hazy", "val_gt"):  # stored absolute, as odcr train stores them
        value = values.get(name)
        if value:
            values[name] = tuple(map(os.path.abspath, value)) if isinstance(value, tuple) else os.path.abspath(value)
    values.setdefault("hazy", ())
    values.setdefault("clear", ())
    values["beta1"] = DISTILL_DEFAULTS["beta1"]
    try:
        student = DistillConfig(**field_values(DistillConfig, settings))
        cfg = TrainConfig(**{**values, "device": str(Device.parse(values.get("device", "auto")))})
    except (ValueError, OdcrError) as exc:
        fail(str(exc))
    if (cfg.val_hazy is None) != (cfg.val_gt is None):
        fail("--val-hazy and --val-gt go together")
    reporter, stopping = TrainReporter(cfg.log_every), StopOnSignal()

    def on_start(start: int, total: int) -> None:
        typer.echo(f"report: {Path(cfg.out) / 'report.html'} (rewritten at every checkpoint)", err=True)
        reporter.start(start, total)

    try:
        with reporter, stopping:
            result = distill(cfg, student, resume=resume, explicit=given,
                             callbacks=TrainCallbacks(on_start, reporter.update, reporter.say, stopping.requested))
    except OdcrError as exc:
        if reporter.started:
            exc.exit_code = 1
        raise
    typer.echo(f"done: iteration {result.iteration} of {cfg.iters}, {result.seconds_per_iter:.3f} s/iter; "
               f"student: {result.run_dir / 'generator.safetensors'}", err=True)
    if stopping.signalled:
        typer.echo(f"interrupted; continue with odcr distill --resume {result.run_dir}", err=True)
        raise typer.Exit(130)


def _register() -> None:
    run_options = [p for p in options(TrainConfig, "Data, schedule and files",
                                      default_of=lambda f: None if f.default is dataclasses.MISSING
                                      else DISTILL_DEFAULTS.get(f.name, field_default(f)))
                   if p.name in DISTILL_RUN_FLAGS]
    with_options(distill_command, options(DistillConfig, "Student"), run_options)


_register()
