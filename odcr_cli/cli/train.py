"""``odcr train``: options -> :func:`odcr_cli.tasks.training.train`, with a progress bar."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from odcr_cli.cli.common import fail
from odcr_cli.errors import OdcrError


# --recipe: the defaults of the options not typed (a --config file and typed flags override them).
# scattering: the bundled default's recipe (weights/MODEL_CARD.md), 2,400 iterations of a narrow
# generator that refines the dark channel prior's t, about 80 minutes on a 2-core CPU; paper: the
# ODCR paper's full-size generator writing the image directly (hours on a CPU; a GPU recipe).
RECIPES: dict[str, dict[str, object]] = {
    "scattering": {"output": "scattering", "t_prior": "dcp", "lambda_dcp": 10.0, "dcp_warm_iters": 300,
                   "lambda_tv": 5.0, "ngf": 32, "n_blocks": 6, "crop": 128, "load_size": 256, "iters": 2400},
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
        if name == "nce_layers" and isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
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
                                    "--lambda-dcp 10 --dcp-warm-iters 300 --lambda-tv 5; ~80 min on 2 CPU cores) or "
                                    "paper (the paper's generator: --output image --ngf 64 --n-blocks 9 --crop 256 "
                                    "--iters 1000; a GPU recipe)."),
    hazy: list[Path] = typer.Option(..., "--hazy", help="Folder (or one file) of hazy photos; repeatable."),
    clear: list[Path] = typer.Option(..., "--clear", help="Folder of clear (haze-free) photos, unpaired; repeatable."),
    exclude_clear: Optional[list[Path]] = typer.Option(None, "--exclude-clear",
                                                       help="Text file of clear photos to leave out (e.g. odcr synth's sources.txt); repeatable."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, generator, log, samples."),
    method: str = typer.Option("odcr", "--method", help="odcr | cut | fastcut."),
    iters: int = typer.Option(1000, "--iters", show_default=False,
                              help="Total iteration budget (the LR schedule spans it) [default: from --recipe]."),
    crop: int = typer.Option(256, "--crop", show_default=False, help="Training crop size (multiple of 4) [default: from --recipe]."),
    batch: int = typer.Option(1, "--batch", help="Images per iteration and per GPU (CUT: 1 works best)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:i] | mps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights, the data order, the crops and the patches (same seed, same run)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest valid checkpoint in --out."),
    until: Optional[int] = typer.Option(None, "--until", help="Stop after this iteration (schedule still spans --iters)."),
    load_size: Optional[int] = typer.Option(None, "--load-size", help="Scale before cropping (default crop*286/256)."),
    preprocess: str = typer.Option("scale_shortside_crop", "--preprocess",
                                   help="scale_shortside_crop | resize_crop (CUT, square) | crop (native)."),
    lr: float = typer.Option(2e-4, "--lr", help="Adam learning rate of the generator, discriminator and head."),
    beta1: float = typer.Option(0.5, "--beta1", help="Adam beta1 (CUT: 0.5)."),
    beta2: float = typer.Option(0.999, "--beta2", help="Adam beta2."),
    decay_fraction: float = typer.Option(0.5, "--decay-fraction", help="Final fraction of iterations with linear LR decay."),
    stiefel_lr: Optional[float] = typer.Option(None, "--stiefel-lr", help="Stiefel step size gamma (default: --lr)."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on CUDA) | bf16 | off."),
    ngf: int = typer.Option(64, "--ngf", show_default=False, help="Generator width [default: from --recipe]."),
    n_blocks: int = typer.Option(9, "--n-blocks", show_default=False, help="Generator residual blocks [default: from --recipe]."),
    antialias: bool = typer.Option(True, "--antialias/--no-antialias", help="Blur down/upsampling (CUT default)."),
    output: str = typer.Option("image", "--output", show_default=False,
                               help="image (the paper's generator writes J) | scattering (it predicts t; J = (I - A)/t + A) "
                                    "[default: from --recipe]."),
    t_min: float = typer.Option(0.1, "--t-min", help="Scattering output: floor of the transmission (bounds 1/t noise gain)."),
    t_prior: str = typer.Option("dcp", "--t-prior",
                                help="Scattering output: dcp (the network refines the dark-channel-prior t, default) | none (it predicts t alone)."),
    learned_airlight: bool = typer.Option(False, "--learned-airlight/--rule-airlight",
                                          help="Scattering output: learn a small correction of the dark-channel airlight."),
    lambda_dcp: Optional[float] = typer.Option(None, "--lambda-dcp", help="Warm start: weight of |t - t_dcp| (scattering)."),
    dcp_warm_iters: Optional[int] = typer.Option(None, "--dcp-warm-iters",
                                                 help="--lambda-dcp decays linearly to 0 over this many iterations (0: constant)."),
    lambda_dark: Optional[float] = typer.Option(None, "--lambda-dark", help="Weight of the dark channel energy of J."),
    lambda_tv: Optional[float] = typer.Option(None, "--lambda-tv", help="Weight of the edge-aware smoothness of t (scattering)."),
    lambda_synth: Optional[float] = typer.Option(None, "--lambda-synth",
                                                 help="Semi-supervised: weight of |t - t_true| on synthetic haze of the clear crops (scattering)."),
    weight_scale: Optional[str] = typer.Option(None, "--weight-scale",
                                               help="WPNCE channel weights: std (default) | max | printed (the paper's, flat)."),
    weight_temperature: Optional[float] = typer.Option(None, "--weight-temperature", help="Softmax temperature of the channel weights."),
    lambda_gan: Optional[float] = typer.Option(None, "--lambda-gan", help="Weight of the adversarial (LSGAN) term."),
    lambda_nce: Optional[float] = typer.Option(None, "--lambda-nce", help="Weight of the PatchNCE / weighted PatchNCE term."),
    lambda_ce: Optional[float] = typer.Option(None, "--lambda-ce", help="Weight of the hazy/clear channel classifiers' loss (ODCR)."),
    lambda_idt: Optional[float] = typer.Option(None, "--lambda-idt", help="Weight of the identity term on clear images."),
    nce_idt: Optional[bool] = typer.Option(None, "--nce-idt/--no-nce-idt", help="Identity term on the clear image."),
    nce_layers: Optional[str] = typer.Option(None, "--nce-layers", help="Generator layer indices, e.g. 0,4,8,12,16."),
    num_patches: Optional[int] = typer.Option(None, "--num-patches", help="Sampled locations per layer (S)."),
    num_clear_patches: Optional[int] = typer.Option(None, "--num-clear-patches", help="Clear negatives per query (ODCR)."),
    nce_t: Optional[float] = typer.Option(None, "--nce-t", help="Temperature tau."),
    head: Optional[str] = typer.Option(None, "--head", help="mlp | linear (orthogonal head shape)."),
    orthogonal_head: Optional[bool] = typer.Option(None, "--orthogonal-head/--no-orthogonal-head", help="Projection head on the Stiefel manifold (ODCR) or CUT's free MLP."),
    wpnce_hazy_pair: Optional[str] = typer.Option(None, "--wpnce-hazy-pair", help="swapped (default) | literal."),
    idt: Optional[str] = typer.Option(None, "--idt", help="nce (default) | l1."),
    ce_trains_head: Optional[bool] = typer.Option(None, "--ce-trains-head/--no-ce-trains-head", help="Let the classifiers' loss also move the orthogonal head."),
    flip_equivariance: Optional[bool] = typer.Option(None, "--flip-equivariance/--no-flip-equivariance", help="FastCUT's flip equivariance."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Iterations between checkpoints (also written at the last iteration)."),
    keep_checkpoints: int = typer.Option(3, "--keep-checkpoints", help="How many of the newest checkpoints to keep."),
    log_every: int = typer.Option(10, "--log-every", help="Iterations between log lines (log.jsonl and the terminal)."),
    sample_every: int = typer.Option(500, "--sample-every", help="Iterations between sample grids in the run folder."),
    val_hazy: Optional[Path] = typer.Option(None, "--val-hazy", help="Paired validation: hazy folder."),
    val_gt: Optional[Path] = typer.Option(None, "--val-gt", help="Paired validation: ground-truth folder."),
    val_every: int = typer.Option(1000, "--val-every", help="Iterations between paired validations (with --val-hazy/--val-gt)."),
    training_data: str = typer.Option("", "--training-data", help="Description stored in the weights' metadata."),
    ema_decay: float = typer.Option(0.999, "--ema-decay", min=0.0, max=0.99999,
                                    help="Save an EMA of the generator's weights (0 = the raw weights)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0,
                                                help="Stop, with a checkpoint, after this much wall-clock time (resumable)."),
) -> None:
    from odcr_cli.core.methods import method_config
    from odcr_cli.core.networks import GeneratorConfig
    from odcr_cli.engine.options import Device
    from odcr_cli.tasks.training import TrainCallbacks, TrainConfig, train as run_training

    try:
        layers = tuple(int(v) for v in nce_layers.split(",")) if nce_layers else None
        mcfg = method_config(method, lambda_gan=lambda_gan, lambda_nce=lambda_nce, lambda_ce=lambda_ce,
                             lambda_idt=lambda_idt, nce_idt=nce_idt, nce_layers=layers, num_patches=num_patches,
                             num_clear_patches=num_clear_patches, nce_t=nce_t, head=head,
                             orthogonal_head=orthogonal_head, wpnce_hazy_pair=wpnce_hazy_pair, idt=idt,
                             ce_trains_head=ce_trains_head, flip_equivariance=flip_equivariance,
                             lambda_dcp=lambda_dcp, dcp_warm_iters=dcp_warm_iters, lambda_dark=lambda_dark,
                             lambda_tv=lambda_tv, lambda_synth=lambda_synth, weight_scale=weight_scale, weight_temperature=weight_temperature)
        gcfg = GeneratorConfig(ngf=ngf, n_blocks=n_blocks, antialias=antialias, output=output, t_min=t_min,
                               learned_airlight=learned_airlight, t_prior=t_prior if output == "scattering" else "none")
    except ValueError as exc:
        fail(str(exc))
    if (val_hazy is None) != (val_gt is None):
        fail("--val-hazy and --val-gt go together")
    cfg = TrainConfig(hazy=tuple(map(str, hazy)), clear=tuple(map(str, clear)),
                      exclude_clear=tuple(map(str, exclude_clear or ())), out=str(out), iters=iters, crop=crop, batch=batch,
                      device=str(Device.parse(device)), seed=seed, until=until, load_size=load_size, preprocess=preprocess, lr=lr,
                      beta1=beta1, beta2=beta2, decay_fraction=decay_fraction, stiefel_lr=stiefel_lr, amp=amp,
                      checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, log_every=log_every,
                      sample_every=sample_every, val_hazy=str(val_hazy) if val_hazy else None,
                      val_gt=str(val_gt) if val_gt else None, val_every=val_every, training_data=training_data,
                      ema_decay=ema_decay, max_minutes=max_minutes)
    reporter = TrainReporter(log_every)

    def on_start(start: int, total: int) -> None:
        # plain echo, not rich: a long path must stay on one line (the progress bar starts after it)
        typer.echo(f"report: {out / 'report.html'} (rewritten at every checkpoint)", err=True)
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

