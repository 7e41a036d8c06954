"""``odcr train``: options -> :func:`odcr_cli.tasks.train.training.train`, with a progress bar."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from odcr_cli.cli.common import fail
from odcr_cli.cli.field_options import field_values, options, with_options
from odcr_cli.core.configs import GeneratorConfig, MethodConfig
from odcr_cli.errors import OdcrError
from odcr_cli.tasks.train.settings import TrainConfig


# --recipe: the defaults of the options not typed (a --config file and typed flags override them).
# scattering: the bundled default's recipe (weights/MODEL_CARD.md), 2,400 iterations of a narrow
# generator that refines the dark channel prior's t, about 100 minutes on a 2-core CPU; paper: the
# ODCR paper's full-size generator writing the image directly (hours on a CPU; a GPU recipe).
RECIPES: dict[str, dict[str, object]] = {
    "scattering": {"output": "scattering", "t_prior": "dcp", "lambda_dcp": 10.0, "dcp_warm_iters": 300,
                   "lambda_tv": 5.0, "lambda_synth": 3.0, "synth_beta": "0,2", "ngf": 32, "n_blocks": 6, "crop": 128,
                   "load_size": 256, "iters": 2400},
    "paper": {"output": "image", "ngf": 64, "n_blocks": 9, "crop": 256, "iters": 1000},
}


def _apply_recipe(ctx: typer.Context, param: object, value: str) -> str:
    """--recipe (eager): its settings become the defaults of the options that neither a --config
    file nor the command line sets."""
    if value not in RECIPES:
        fail(f"--recipe {value}: use {' or '.join(RECIPES)}")
    ctx.default_map = {**RECIPES[value], **(ctx.default_map or {})}
    return value


def _load_config(ctx: typer.Context, param: object, value: Optional[Path]) -> Optional[Path]:
    """--config FILE (eager): its settings become the defaults of the options not typed."""
    if value is None:
        return value
    try:
        ctx.default_map = {**(ctx.default_map or {}), **config_defaults(value, {p.name for p in ctx.command.params})}
    except ValueError as exc:
        fail(f"--config {value}: {exc}")
    return value


def config_defaults(path: Path, names: set[str]) -> dict[str, object]:
    """A run's ``config.json`` (sections train / method / generator) or a TOML file (flag names,
    with - or _, at the top or in any table) -> {option name: value} for the options in ``names``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it ({type(exc).__name__})") from None
    try:
        if path.suffix.lower() == ".json":
            import json

            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ImportError:
        raise ValueError("TOML needs Python 3.11 or newer; give a .json file") from None
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ValueError(f"not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # config.json's train/method/generator, or TOML tables
            flat.update(value)
        else:
            flat[key] = value
    out: dict[str, object] = {}
    for key, value in flat.items():
        name = {"name": "method"}.get(key, key).replace("-", "_")
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            value = ",".join(str(v) for v in value)  # a list of numbers (--nce-layers, --synth-beta) as typed
        if name in names and name not in ("config", "resume") and value is not None:
            out[name] = value
    return out


def train_command(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", is_eager=True, callback=_load_config,
                                          help="Settings from a file: a run's config.json or a TOML of flag names; flags typed here override it."),
    recipe: str = typer.Option("scattering", "--recipe", is_eager=True, callback=_apply_recipe,
                               help="Defaults of the options not given: scattering (the bundled default's recipe: "
                                    "--output scattering --ngf 32 --n-blocks 6 --crop 128 --load-size 256 --iters 2400 "
                                    "--lambda-dcp 10 --dcp-warm-iters 300 --lambda-tv 5 --lambda-synth 3 --synth-beta 0,2; "
                                    "~100 min on 2 CPU cores) or "
                                    "paper (the paper's generator: --output image --ngf 64 --n-blocks 9 --crop 256 "
                                    "--iters 1000; a GPU recipe)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest valid checkpoint in --out."),
    **settings: Any,
) -> None:
    """The flags of the settings (``settings``) are the fields of TrainConfig, GeneratorConfig and
    MethodConfig that carry a help text (:mod:`odcr_cli.cli.field_options` builds them)."""
    from odcr_cli.core.configs import method_config
    from odcr_cli.engine.options import Device
    from odcr_cli.tasks.train.training import TrainCallbacks, train as run_training

    try:
        mcfg = method_config(**field_values(MethodConfig, settings))
        shape = field_values(GeneratorConfig, settings)
        if shape["output"] != "scattering":
            shape["t_prior"] = "none"
        gcfg = GeneratorConfig(**shape)
    except ValueError as exc:
        fail(str(exc))
    if (settings["val_hazy"] is None) != (settings["val_gt"] is None):
        fail("--val-hazy and --val-gt go together")
    run = field_values(TrainConfig, settings)
    cfg = TrainConfig(**{**run, "device": str(Device.parse(run["device"]))})
    reporter = TrainReporter(cfg.log_every)

    def on_start(start: int, total: int) -> None:
        # plain echo, not rich: a long path must stay on one line (the progress bar starts after it)
        typer.echo(f"report: {settings['out'] / 'report.html'} (rewritten at every checkpoint)", err=True)
        reporter.start(start, total)

    stopping = _StopOnSignal()
    try:
        with reporter, stopping:
            result = run_training(cfg, mcfg, gcfg, resume=resume, explicit=_given_on_the_command_line(ctx),
                                  callbacks=TrainCallbacks(on_start, reporter.update, reporter.say, stopping.requested))
    except OdcrError as exc:
        # refused before the first iteration (bad option, no data, a run already there): a usage
        # error, 2, as in every command; a run that started and then failed: 1
        if reporter.started:
            exc.exit_code = 1
        raise
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"done: iteration {result.iteration} of {cfg.iters}, {result.seconds_per_iter:.3f} s/iter; "
                   f"generator: {result.run_dir / 'generator.safetensors'}", err=True)
    if stopping.signalled:
        typer.echo(f"interrupted; checkpoint: {result.last_checkpoint}; continue with the same command and --resume",
                   err=True)
        raise typer.Exit(130)


# The flags of the settings, grouped in --help by the dataclass that holds them. A method's flags
# default to its --method preset's values (None: not given), not to MethodConfig's fields. A flag
# that every recipe sets has no default of its own to show: its help says it comes from --recipe.
_SET_BY_EVERY_RECIPE = frozenset.intersection(*(frozenset(r) for r in RECIPES.values()))
with_options(train_command,
             options(TrainConfig, "Data, schedule and files", without_default=_SET_BY_EVERY_RECIPE),
             options(GeneratorConfig, "Generator", without_default=_SET_BY_EVERY_RECIPE),
             options(MethodConfig, "Method and losses", without_default=_SET_BY_EVERY_RECIPE,
                     default_of=lambda f: f.default if f.name == "name" else None))


def _given_on_the_command_line(ctx: typer.Context) -> frozenset[str]:
    """The names of the options the user typed (not left at their defaults)."""
    return frozenset(name for name in ctx.params
                     if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE")


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class _StopOnSignal:
    """Ctrl-C or SIGTERM during training: finish the iteration, write a checkpoint, stop (the loop
    polls :meth:`requested`). A second Ctrl-C stops at once, without a checkpoint."""

    def __init__(self) -> None:
        self.signalled = False
        self._previous: dict = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signalled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signalled = True

    def requested(self) -> bool:
        return self.signalled

    def __enter__(self) -> "_StopOnSignal":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class TrainReporter:
    """A rich progress bar (it/s, ETA) on a terminal; plain log lines otherwise."""

    def __init__(self, every: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.every = every
        self.progress = None
        self.task = None
        self.started = False  # the loop has begun (errors after this are not usage errors)

    def __enter__(self) -> "TrainReporter":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start(self, start: int, total: int) -> None:
        self.started = True
        self._first, self._total, self._t0 = start, total, time.perf_counter()
        if not self.console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"),
                                 TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), console=self.console)
        self.task = self.progress.add_task("train", total=total, completed=start, rate="", losses="")
        self.progress.start()

    def update(self, iteration: int, terms: dict[str, float]) -> None:
        if self.progress is not None:
            speed = self.progress.tasks[0].speed
            fields = {"rate": f"{speed:.2f} it/s" if speed else ""}
            if terms:
                fields["losses"] = " ".join(f"{k}={v:.3f}" for k, v in terms.items() if k in ("G_total", "D", "G_nce"))
            self.progress.update(self.task, completed=iteration, **fields)
        elif terms:  # a pipe or a file: one plain line per log interval, with speed and ETA
            done = iteration - self._first
            spi = (time.perf_counter() - self._t0) / max(1, done)
            eta = spi * max(0, self._total - iteration)
            main = " ".join(f"{k}={terms[k]:.4f}" for k in ("G_total", "D", "G_nce") if k in terms)
            rest = " ".join(f"{k}={v:.4f}" for k, v in terms.items() if k not in ("G_total", "D", "G_nce"))
            print(f"iter {iteration}/{self._total}: {spi:.2f} s/it, ETA {_duration(eta)}; {main}; {rest}",
                  file=sys.stderr, flush=True)

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)

