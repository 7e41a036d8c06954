"""``odcr train``: options -> :func:`odcr_cli.tasks.train.training.train`, with a progress bar."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from odcr_cli.cli.common import fail
from odcr_cli.cli.field_options import field_default, options, parameter_name, with_options
from odcr_cli.core.configs import GeneratorConfig, MethodConfig
from odcr_cli.errors import OdcrError
from odcr_cli.tasks.train import recipe as recipes
from odcr_cli.tasks.train.settings import TrainConfig


# --recipe: a recipe file's settings are the defaults of the options not typed (--init's fine-tune
# schedule, a --config file and typed flags override them); odcr_cli/tasks/train/recipes/.
_DEFAULT_RECIPE = recipes.RECIPES[0]
_FINE_TUNE_HELP = " ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in recipes.load(recipes.FINE_TUNE).items())


# The layers of defaults of the options not typed, lowest first: --recipe, then --init's fine-tune
# schedule, then a --config file; a typed flag overrides them all. Each eager option sets its layer
# (in whatever order they were typed) and the defaults are merged again in this order.
_LAYERS = ("recipe", "init", "config")


def _set_layer(ctx: typer.Context, name: str, values: dict[str, object]) -> None:
    layers = ctx.meta.setdefault("odcr_default_layers", {})
    layers[name] = values
    ctx.default_map = {k: v for layer in _LAYERS for k, v in layers.get(layer, {}).items()}


def _apply_recipe(ctx: typer.Context, param: object, value: str) -> str:
    """--recipe (eager): its settings become the defaults of the options that neither a --config
    file, --init nor the command line sets."""
    try:
        _set_layer(ctx, "recipe", recipes.load(value))
    except OdcrError as exc:
        fail(str(exc))
    return value


def _apply_init(ctx: typer.Context, param: object, value: Optional[str]) -> Optional[str]:
    """--init (eager): a fine-tune's schedule becomes the default (the model's shape comes from
    its weights, in the task)."""
    if value is not None:
        _set_layer(ctx, "init", recipes.load(recipes.FINE_TUNE))
    return value


def _load_config(ctx: typer.Context, param: object, value: Optional[Path]) -> Optional[Path]:
    """--config FILE (eager): its settings become the defaults of the options not typed."""
    if value is None:
        return value
    try:
        _set_layer(ctx, "config", recipes.read_settings(value, {p.name for p in ctx.command.params}))
    except ValueError as exc:
        fail(f"--config {value}: {exc}")
    return value


def train_command(
    ctx: typer.Context,
    run: Optional[Path] = typer.Argument(None, metavar="RUN", help="With --resume: the run folder to continue (its data and settings "
                                                    "come from it; the same as --out RUN)."),
    config: Optional[Path] = typer.Option(None, "--config", is_eager=True, callback=_load_config,
                                          help="Settings from a file: a run's config.json or a TOML of flag names "
                                               "(relative paths are read from the file's folder); flags typed here "
                                               "override it."),
    recipe: str = typer.Option(_DEFAULT_RECIPE, "--recipe", is_eager=True, callback=_apply_recipe,
                               help="The recipe (the model's shape, its losses, the schedule) that gives the options "
                                    "not typed their defaults: scattering (the bundled default's: the defaults shown "
                                    "here; ~100 min on 2 CPU cores), paper (the paper's generator: --output image "
                                    "--ngf 64 --n-blocks 9 --crop 256 --iters 1000; a GPU recipe; `odcr train --recipe "
                                    "paper --help` shows its values) or a recipe file of your own (a copy of "
                                    "odcr_cli/tasks/train/recipes/scattering.toml, edited)."),
    init: Optional[str] = typer.Option(None, "--init", is_eager=True, callback=_apply_init,
                                       help="Fine-tune: start from a model's weights and shape: a bundled model's name "
                                            "(odcr: the default; `odcr models` lists them), a .safetensors file or a run "
                                            "folder. Its schedule is the default: " + _FINE_TUNE_HELP + "."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in RUN (or --out) from its newest valid "
                                                        "checkpoint, on the data it was started with."),
    **settings: Any,
) -> None:
    """The flags of the settings (``settings``) are the fields of TrainConfig, GeneratorConfig and
    MethodConfig that carry a help text (:mod:`odcr_cli.cli.field_options` builds them)."""
    from odcr_cli.tasks.train.training import TrainCallbacks, train as run_training

    _where_and_what(run, resume, init, settings)
    try:
        cfg, mcfg, gcfg = recipes.assemble({**settings, "init": init})
    except (ValueError, OdcrError) as exc:
        fail(str(exc))
    reporter = TrainReporter(cfg.log_every)

    def on_start(start: int, total: int) -> None:
        # plain echo, not rich: a long path must stay on one line (the progress bar starts after it)
        typer.echo(f"report: {Path(cfg.out) / 'report.html'} (rewritten at every checkpoint)", err=True)
        reporter.start(start, total)

    explicit = given_on_the_command_line(ctx) - {"run"}
    stopping = StopOnSignal()
    try:
        with reporter, stopping:
            result = run_training(cfg, mcfg, gcfg, resume=resume, explicit=explicit,
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
        typer.echo(f"interrupted; checkpoint: {result.last_checkpoint}; continue with odcr train --resume "
                   f"{result.run_dir}", err=True)
        raise typer.Exit(130)


def _where_and_what(run: Optional[Path], resume: bool, init: Optional[str], settings: dict[str, Any]) -> None:
    """The run folder and the data, completed in ``settings``: ``--resume RUN`` (or ``--out RUN
    --resume``) alone takes the run's own data from its config.json; a new run needs --hazy,
    --clear and --out, and each missing one is a one-line error saying what to pass."""
    if run is not None:
        if not resume:
            fail(f"unexpected argument {run}: a run folder as an argument is for --resume (odcr train --resume {run})")
        if settings["out"] is not None and os.path.abspath(settings["out"]) != os.path.abspath(run):
            fail(f"--resume {run} and --out {settings['out']} name two run folders: give one")
        settings["out"] = run
    if resume:
        if settings["out"] is None:
            fail("--resume needs the run folder: odcr train --resume RUN (see odcr train --help)")
        saved = _saved_data(Path(settings["out"]))
        for name in ("hazy", "clear"):
            if not settings[name]:
                settings[name] = [Path(v) for v in saved.get(name, ())]
        return
    see = " (see odcr train --help)"
    if not settings["hazy"]:
        fail("Missing option '--hazy': a folder of hazy photos, repeatable; or continue a run: --resume RUN" + see)
    if not settings["clear"]:
        fail("Missing option '--clear': a folder of clear (haze-free) photos of similar scenes, unpaired with the "
             "hazy ones" + (" (a fine-tune needs them too: the bundled training photos are not redistributable)"
                            if init else "") + see)
    if settings["out"] is None:
        fail("Missing option '--out': the folder of the new run (checkpoints, generator, log)" + see)


def _saved_data(run: Path) -> dict[str, Any]:
    """The train section of a run's config.json (its data), or a one-line error."""
    import json

    path = run / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get("train", {})
    except FileNotFoundError:
        fail(f"--resume {run}: no run there (no {path.name}); start one with --hazy, --clear and --out")
    except (OSError, ValueError, AttributeError) as exc:
        fail(f"--resume {run}: cannot read {path.name} ({type(exc).__name__}); give --hazy and --clear")
    # an old run's relative paths are relative to where it was started (the folder it is resumed from)
    return {k: (v,) if isinstance(v, str) else tuple(v) for k, v in saved.items() if k in ("hazy", "clear") and v}


# The flags of the settings, grouped in --help by the dataclass that holds them. A flag that the
# recipes set shows the default recipe's value (--recipe paper --help: paper's); a method's other
# flags default to its --method preset's values (None: not given), not to MethodConfig's fields.
_RECIPE_DEFAULTS = recipes.load(_DEFAULT_RECIPE)


def _default_of(preset: bool) -> Callable[[dataclasses.Field], Any]:
    """A flag's shown default: the default recipe's value, else the field's (a method's: None, its
    preset's)."""

    def default(f: dataclasses.Field) -> Any:
        name = parameter_name(f)
        if name in _RECIPE_DEFAULTS:
            return _RECIPE_DEFAULTS[name]
        if f.default is dataclasses.MISSING:  # --hazy, --clear and --out: required of a new run only
            return None
        return None if preset else field_default(f)
    return default


with_options(train_command,
             options(TrainConfig, "Data, schedule and files", default_of=_default_of(False)),
             options(GeneratorConfig, "Generator", default_of=_default_of(False)),
             options(MethodConfig, "Method and losses", default_of=_default_of(True)))


def given_on_the_command_line(ctx: typer.Context) -> frozenset[str]:
    """The names of the options the user typed (not left at their defaults)."""
    return frozenset(name for name in ctx.params
                     if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE")


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class StopOnSignal:
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

    def __enter__(self) -> "StopOnSignal":
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
            print(f"iter {iteration}/{self._total}: {spi:.2f} s/it, ETA {_duration(eta)}; "
                  + "; ".join(part for part in (main, rest) if part),
                  file=sys.stderr, flush=True)

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)

