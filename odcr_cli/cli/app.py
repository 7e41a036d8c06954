"""The ``odcr`` command line: argument parsing and reporting only.

Each command hands its arguments to a task function (``odcr_cli.tasks.training.train``,
``odcr_cli.tasks.dehazing.run_dehaze``, ``odcr_cli.tasks.evaluation.evaluate``, ``odcr_cli.tasks.export.export_onnx``).
Heavy modules (torch above all, ~1.5 s to import) are imported inside the commands, so that
``odcr --help`` and the ONNX path stay fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from odcr_cli import __version__

if TYPE_CHECKING:  # annotations only: dehazing is imported inside the command
    from odcr_cli.tasks.dehazing import BatchReport, FileResult


def _no_type_label(ctx: object = None) -> None:
    return None


class _NoTypeLabels:
    """Help without Typer's ``<bool>``/``<str>``/``<int>`` type labels: every option's help text
    says what it takes, and the labels only crowd the table. Used by every command."""

    def format_help(self, ctx, formatter) -> None:  # noqa: ANN001 - Typer's signature
        for param in self.get_params(ctx):
            param.display_type_rich = _no_type_label  # what the rich help table asks for
        super().format_help(ctx, formatter)


class _Command(_NoTypeLabels, TyperCommand):
    pass


class _Group(_NoTypeLabels, TyperGroup):
    pass


app = typer.Typer(
    name="odcr",
    cls=_Group,
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
@app.command(cls=_Command, help="Train a dehazing generator on unpaired folders of hazy and clear photos.")
def train(
    hazy: list[Path] = typer.Option(..., "--hazy", help="Folder (or one file) of hazy photos; repeatable."),
    clear: list[Path] = typer.Option(..., "--clear", help="Folder of clear (haze-free) photos, unpaired; repeatable."),
    exclude_clear: Optional[list[Path]] = typer.Option(None, "--exclude-clear",
                                                       help="Text file of clear photos to leave out (e.g. odcr synth's sources.txt); repeatable."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, generator, log, samples."),
    method: str = typer.Option("odcr", "--method", help="odcr | cut | fastcut."),
    iters: int = typer.Option(1000, "--iters", help="Total iteration budget (the LR schedule spans it)."),
    crop: int = typer.Option(256, "--crop", help="Training crop size (multiple of 4)."),
    batch: int = typer.Option(1, "--batch", help="Images per iteration and per GPU (CUT: 1 works best)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:i] | mps."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest valid checkpoint in --out."),
    until: Optional[int] = typer.Option(None, "--until", help="Stop after this iteration (schedule still spans --iters)."),
    load_size: Optional[int] = typer.Option(None, "--load-size", help="Scale before cropping (default crop*286/256)."),
    preprocess: str = typer.Option("scale_shortside_crop", "--preprocess",
                                   help="scale_shortside_crop | resize_crop (CUT, square) | crop (native)."),
    lr: float = typer.Option(2e-4, "--lr"),
    beta1: float = typer.Option(0.5, "--beta1"),
    beta2: float = typer.Option(0.999, "--beta2"),
    decay_fraction: float = typer.Option(0.5, "--decay-fraction", help="Final fraction of iterations with linear LR decay."),
    stiefel_lr: Optional[float] = typer.Option(None, "--stiefel-lr", help="Stiefel step size gamma (default: --lr)."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on CUDA) | bf16 | off."),
    ngf: int = typer.Option(64, "--ngf", help="Generator width."),
    n_blocks: int = typer.Option(9, "--n-blocks", help="Generator residual blocks."),
    antialias: bool = typer.Option(True, "--antialias/--no-antialias", help="Blur down/upsampling (CUT default)."),
    output: str = typer.Option("image", "--output",
                               help="image (the paper's generator writes J) | scattering (it predicts t; J = (I - A)/t + A)."),
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
    weight_scale: Optional[str] = typer.Option(None, "--weight-scale",
                                               help="WPNCE channel weights: std (default) | max | printed (the paper's, flat)."),
    weight_temperature: Optional[float] = typer.Option(None, "--weight-temperature", help="Softmax temperature of the channel weights."),
    lambda_gan: Optional[float] = typer.Option(None, "--lambda-gan"),
    lambda_nce: Optional[float] = typer.Option(None, "--lambda-nce"),
    lambda_ce: Optional[float] = typer.Option(None, "--lambda-ce"),
    lambda_idt: Optional[float] = typer.Option(None, "--lambda-idt"),
    nce_idt: Optional[bool] = typer.Option(None, "--nce-idt/--no-nce-idt", help="Identity term on the clear image."),
    nce_layers: Optional[str] = typer.Option(None, "--nce-layers", help="Generator layer indices, e.g. 0,4,8,12,16."),
    num_patches: Optional[int] = typer.Option(None, "--num-patches", help="Sampled locations per layer (S)."),
    num_clear_patches: Optional[int] = typer.Option(None, "--num-clear-patches", help="Clear negatives per query (ODCR)."),
    nce_t: Optional[float] = typer.Option(None, "--nce-t", help="Temperature tau."),
    head: Optional[str] = typer.Option(None, "--head", help="mlp | linear (orthogonal head shape)."),
    orthogonal_head: Optional[bool] = typer.Option(None, "--orthogonal-head/--no-orthogonal-head"),
    wpnce_hazy_pair: Optional[str] = typer.Option(None, "--wpnce-hazy-pair", help="swapped (default) | literal."),
    idt: Optional[str] = typer.Option(None, "--idt", help="nce (default) | l1."),
    ce_trains_head: Optional[bool] = typer.Option(None, "--ce-trains-head/--no-ce-trains-head"),
    flip_equivariance: Optional[bool] = typer.Option(None, "--flip-equivariance/--no-flip-equivariance"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every"),
    keep_checkpoints: int = typer.Option(3, "--keep-checkpoints"),
    log_every: int = typer.Option(10, "--log-every"),
    sample_every: int = typer.Option(500, "--sample-every"),
    val_hazy: Optional[Path] = typer.Option(None, "--val-hazy", help="Paired validation: hazy folder."),
    val_gt: Optional[Path] = typer.Option(None, "--val-gt", help="Paired validation: ground-truth folder."),
    val_every: int = typer.Option(1000, "--val-every"),
    training_data: str = typer.Option("", "--training-data", help="Description stored in the weights' metadata."),
    ema_decay: float = typer.Option(0.999, "--ema-decay", min=0.0, max=0.99999,
                                    help="Save an EMA of the generator's weights (0 = the raw weights)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0.0,
                                                help="Stop, with a checkpoint, after this much wall-clock time (resumable)."),
) -> None:
    from odcr_cli.core.methods import method_config
    from odcr_cli.core.networks import GeneratorConfig
    from odcr_cli.errors import TrainingError
    from odcr_cli.tasks.training import TrainCallbacks, TrainConfig, train as run_training

    try:
        layers = tuple(int(v) for v in nce_layers.split(",")) if nce_layers else None
        mcfg = method_config(method, lambda_gan=lambda_gan, lambda_nce=lambda_nce, lambda_ce=lambda_ce,
                             lambda_idt=lambda_idt, nce_idt=nce_idt, nce_layers=layers, num_patches=num_patches,
                             num_clear_patches=num_clear_patches, nce_t=nce_t, head=head,
                             orthogonal_head=orthogonal_head, wpnce_hazy_pair=wpnce_hazy_pair, idt=idt,
                             ce_trains_head=ce_trains_head, flip_equivariance=flip_equivariance,
                             lambda_dcp=lambda_dcp, dcp_warm_iters=dcp_warm_iters, lambda_dark=lambda_dark,
                             lambda_tv=lambda_tv, weight_scale=weight_scale, weight_temperature=weight_temperature)
        gcfg = GeneratorConfig(ngf=ngf, n_blocks=n_blocks, antialias=antialias, output=output, t_min=t_min,
                               learned_airlight=learned_airlight, t_prior=t_prior if output == "scattering" else "none")
    except ValueError as exc:
        _fail(str(exc))
    if (val_hazy is None) != (val_gt is None):
        _fail("--val-hazy and --val-gt go together")
    cfg = TrainConfig(hazy=tuple(map(str, hazy)), clear=tuple(map(str, clear)),
                      exclude_clear=tuple(map(str, exclude_clear or ())), out=str(out), iters=iters, crop=crop, batch=batch,
                      device=device, seed=seed, until=until, load_size=load_size, preprocess=preprocess, lr=lr,
                      beta1=beta1, beta2=beta2, decay_fraction=decay_fraction, stiefel_lr=stiefel_lr, amp=amp,
                      checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, log_every=log_every,
                      sample_every=sample_every, val_hazy=str(val_hazy) if val_hazy else None,
                      val_gt=str(val_gt) if val_gt else None, val_every=val_every, training_data=training_data,
                      ema_decay=ema_decay, max_minutes=max_minutes)
    reporter = _TrainReporter(log_every)

    def on_start(start: int, total: int) -> None:
        # plain echo, not rich: a long path must stay on one line (the progress bar starts after it)
        typer.echo(f"report: {out / 'report.html'} (rewritten at every checkpoint)", err=True)
        reporter.start(start, total)

    try:
        with reporter:
            result = run_training(cfg, mcfg, gcfg,
                                  resume=resume, callbacks=TrainCallbacks(on_start, reporter.update, reporter.say))
    except TrainingError as exc:
        # refused before the first iteration (bad option, no data, a run already there): a usage
        # error, 2, as in every command; a run that started and then failed: 1
        from odcr_cli.errors import TrainingDiverged
        _fail(str(exc), code=1 if reporter.started or isinstance(exc, TrainingDiverged) else 2)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"done: iteration {result.iteration} of {cfg.iters}, {result.seconds_per_iter:.3f} s/iter; "
                   f"generator: {result.run_dir / 'generator.safetensors'}", err=True)


class _TrainReporter:
    """A rich progress bar (it/s, ETA) on a terminal; plain log lines otherwise."""

    def __init__(self, every: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.every = every
        self.progress = None
        self.task = None
        self.started = False  # the loop has begun (errors after this are not usage errors)

    def __enter__(self) -> "_TrainReporter":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start(self, start: int, total: int) -> None:
        self.started = True
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
        elif terms:
            text = " ".join(f"{k}={v:.4f}" for k, v in terms.items())
            print(f"iter {iteration}: {text}", file=sys.stderr, flush=True)

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)

class _DehazeReporter:
    """How ``dehaze`` reports, each file exactly once. On a terminal: a rich progress bar on stderr
    for a batch (files done, ETA) and a status line for a single photo, failures printed above
    them; otherwise one plain line per file, counted in order. ``-q``: only failures, one line
    each. ``--dry-run``: the plan on stdout instead."""

    def __init__(self, quiet: bool, plan_to_stdout: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.plan_to_stdout = plan_to_stdout
        self.live = not quiet and self.console.is_terminal
        self.bar = self.task = self.status = None
        self.first_processed = 1   # results before this one needed no model (missing, skipped)
        self.todo = self.total = 0

    def say(self, text: str, style: str | None = None) -> None:
        # markup off: paths may hold [brackets]
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def start(self, engine: dict, total: int, todo: int) -> None:
        self.first_processed, self.todo, self.total = total - todo + 1, todo, total
        if self.quiet:
            return
        sha = (engine.get("weights_sha256") or "")[:12]
        params = engine.get("parameters")
        desc = f"odcr dehaze: {total} image(s), method {engine['method']}, backend {engine['backend']} on {engine['device']}"
        if engine.get("model"):
            desc += f", model {engine['model']} ({engine.get('output')} output)"
        if sha:
            desc += f", weights {engine.get('weights')} (sha256 {sha}…" + (f", {params:,} parameters)" if params else ")")
        if engine.get("strength", 1.0) != 1.0:
            desc += f", strength {engine['strength']:g}"
        self.say(desc)
        if engine["method"] == "odcr" and engine["device"] == "cpu":
            self.say(f"note: running on the CPU (slow); fast mode max-side={engine.get('max_side') or 'off'}")
        if self.live and todo > 1:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("dehazing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[name]}"),
                                console=self.console)
            self.task = self.bar.add_task("dehazing", total=todo, name="")
            self.bar.start()

    def begin(self, res: FileResult) -> None:
        """A file's network pass starts."""
        if self.bar is not None:
            self.bar.update(self.task, name=Path(res.input).name)
        elif self.live and self.todo == 1:
            # the name only: a long path would wrap the one-line status
            self.status = self.console.status(f"dehazing {Path(res.input).name} ({res.width}x{res.height})…")
            self.status.start()

    def file(self, res: FileResult, done: int, total: int) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.bar is not None and done >= self.first_processed:
            self.bar.advance(self.task)
        if self.plan_to_stdout:
            typer.echo(_plan_line(res))
            return
        failed = res.status == "failed"
        if self.quiet or (self.live and not failed):
            if failed:
                self.say(f"failed: {res.input}: {res.error}", "red")
            return
        line = f"[{done}/{total}] {res.status}: {res.input}"
        if failed:
            line += f": {res.error}"
        else:
            line += f" -> {res.output}" + (f" ({res.error})" if res.error else "")
        self.say(line, "red" if failed else None)

    def close(self) -> None:
        for live in (self.status, self.bar):
            if live is not None:
                live.stop()
        self.status = self.bar = None

    def summary(self, report: BatchReport) -> None:
        if self.quiet:
            return
        if report.dry_run:
            self.say(f"dry run: {report.planned} to dehaze, {report.skipped} skipped, {report.failed} failed; "
                     "no model loaded, nothing written")
        else:
            self.say(f"done: {report.ok} ok, {report.failed} failed, {report.skipped} skipped "
                     f"in {report.seconds:.1f} s (network {report.net_seconds:.1f} s)")
        found = report.inputs
        if found.own_outputs:
            self.say(f"note: left out {len(found.own_outputs)} file(s) that carry the output suffix "
                     "(outputs of an earlier run, not inputs)")
        if found.subfolders:
            self.say(f"note: {len(found.subfolders)} subfolder(s) not read (add --recursive): {_some(found.subfolders)}")
        if found.not_images:
            self.say(f"note: {len(found.not_images)} file(s) are not images and were not read: {_some(found.not_images)}")

    def interrupted(self, report: BatchReport) -> None:
        of = f" of {self.total}" if self.total else ""
        self.say(f"interrupted: {len(report.files)}{of} file(s) finished ({report.ok} written, {report.skipped} "
                 f"skipped, {report.failed} failed); every output written is complete. Resume with the same "
                 "command and --skip-existing", "red")


def _some(paths: list[str], n: int = 5) -> str:
    """The first few names, and how many more."""
    shown = ", ".join(Path(p).name for p in paths[:n])
    return shown + (f" and {len(paths) - n} more" if len(paths) > n else "")


def _plan_line(res: FileResult) -> str:
    if res.status == "planned":
        return f"{res.input} -> {res.output}"
    if res.status == "skipped":
        return f"{res.input} -> {res.output} (skipped: {res.error})"
    return f"{res.input}: failed: {res.error}"


# --- dehaze ------------------------------------------------------------------------------------
@app.command("dehaze", cls=_Command)
def dehaze_command(
    inputs: list[str] = typer.Argument(None, metavar="INPUT...",
                                       help="Image files, folders, globs, or '-' for stdin."),
    output: Optional[str] = typer.Option(None, "-o", "--output",
                                         help="Output file (one input), folder (mirrors the input tree), or '-' for stdout. "
                                              "Default: <stem>_dehazed.<ext> beside each input."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    input_list: Optional[str] = typer.Option(None, "--input-list", help="File with one input path per line ('-' = stdin)."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Added to output names (default: '_dehazed' beside the input, '' in an -o folder)."),
    ext: str = typer.Option("auto", "--ext", help="Output format: auto (as the input), png, jpg, webp or tif."),
    quality: Optional[int] = typer.Option(None, "--quality", min=1, max=100, help="JPEG/WebP quality (default 95)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (never the inputs)."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Keep existing outputs and process the rest (resume)."),
    json_report: Optional[str] = typer.Option(None, "--json", help="Write a JSON report to FILE ('-' = stdout)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Process slice i of N (i/N, i from 0), e.g. one per machine."),
    model: Optional[str] = typer.Option(None, "--model", help="A bundled model by name (`odcr models` lists them; default: the default model)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Generator .safetensors, odcr checkpoint .pt or CUT net_G.pth (default: the bundled model)."),
    method: str = typer.Option("odcr", "--method", help="odcr (the network) or dcp (dark channel prior, no weights)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps; a requested GPU that is unusable is an error."),
    half: bool = typer.Option(False, "--half", help="fp16 on CUDA (non-finite outputs are redone in fp32)."),
    backend: str = typer.Option("auto", "--backend", help="auto (ONNX Runtime for the bundled model on CPU, else torch), torch or onnx."),
    onnx: Optional[str] = typer.Option(None, "--onnx", help="Exported ONNX model for --backend onnx."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Force tiling with N-px tiles (default: automatic above a 4 GB memory estimate); InstanceNorm statistics stay whole-image."),
    max_side: Optional[str] = typer.Option("auto", "--max-side",
                                           help="Run the network on a copy whose longer side is at most N px and carry the result to full "
                                                "resolution. auto: scattering models (the default) at 512 px; direct models at full resolution "
                                                "on GPU, 1600 px on CPU. 0 = the network at full resolution."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Decompression-bomb limit in pixels (default: Pillow's, ~179 MP); 0 = no limit."),
    strip_metadata: bool = typer.Option(False, "--strip-metadata", help="Do not copy ICC profile and EXIF to the outputs."),
    strength: float = typer.Option(1.0, "--strength", min=0.0, max=1.0,
                                   help="How much haze to remove: 0 = the input, 1 = full dehazing. Scattering models and dcp "
                                        "remove that fraction of the haze; direct models blend with the input."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (input -> output, what would be skipped) on stdout; "
                                                          "load no model and write no image."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress and no summary (errors still go to stderr)."),
) -> None:
    """Dehaze images: files, folders, globs or stdin.

    Exit code 0 all done, 1 some failed, 2 usage error or no input, 130 interrupted (rerun with --skip-existing to resume)."""
    from odcr_cli.errors import InferenceError, UsageError
    from odcr_cli.tasks.dehazing import DehazeOptions, Interrupted, run_dehaze, write_report

    if not inputs and not input_list:
        _fail("no input given: pass files, folders, globs, '-' or --input-list FILE")
    if method not in ("odcr", "dcp"):
        _fail(f"--method {method}: use odcr or dcp")
    if backend not in ("auto", "torch", "onnx"):
        _fail(f"--backend {backend}: use auto, torch or onnx")
    if output == "-" and json_report == "-":
        _fail("-o - and --json - both want stdout; write the report to a file")
    if (output == "-" or (output is None and inputs == ["-"])) and sys.stdout.isatty() and not dry_run:
        _fail("refusing to write image bytes to a terminal; redirect stdout or pass -o FILE")
    ms: int | str | None
    if max_side is None or max_side == "auto":
        ms = "auto"
    else:
        try:
            ms = int(max_side)
        except ValueError:
            _fail(f"--max-side {max_side}: expected a number of pixels, 0 or auto")
    opts = DehazeOptions(inputs=list(inputs or []), output=output, recursive=recursive, input_list=input_list,
                         suffix=suffix, ext=ext, quality=quality, overwrite=overwrite, skip_existing=skip_existing,
                         shard=shard, weights=weights, model=model, method=method, device=device, half=half, backend=backend,
                         onnx=onnx, tile=tile, max_side=ms, max_pixels=max_pixels, strip_metadata=strip_metadata,
                         strength=strength, dry_run=dry_run, json_report=json_report)
    rep = _DehazeReporter(quiet, plan_to_stdout=dry_run and json_report != "-")
    try:
        report = run_dehaze(opts, progress=rep.file, on_start=rep.start, on_begin=rep.begin)
    except (UsageError, InferenceError) as exc:
        rep.close()
        _fail(str(exc))
    except Interrupted as exc:
        rep.close()
        if json_report:
            write_report(exc.report, json_report)
        rep.interrupted(exc.report)
        raise typer.Exit(130)
    except KeyboardInterrupt:
        rep.close()
        rep.say("interrupted before any file was processed", "red")
        raise typer.Exit(130)
    except Exception as exc:
        rep.close()
        from odcr_cli.errors import WeightsError
        if isinstance(exc, WeightsError):
            _fail(str(exc))
        raise
    rep.close()
    if json_report:
        write_report(report, json_report)
    rep.summary(report)
    raise typer.Exit(report.exit_code)

# --- synth -------------------------------------------------------------------------------------
@app.command("synth", cls=_Command)
def synth_command(
    clear: list[Path] = typer.Argument(..., help="Folders (or files) of clear photos."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder: hazy/, manifest.json, sources.txt."),
    fraction: float = typer.Option(1.0, "--fraction", help="Share of the clear photos to use (a seeded random subset)."),
    variants: int = typer.Option(1, "--variants", min=1, help="Hazy versions per clear photo."),
    seed: int = typer.Option(0, "--seed"),
    beta: str = typer.Option("0.5:3.0", "--beta", help="Range of the scattering coefficient (depth is relative, 0..1)."),
    airlight: str = typer.Option("0.7:1.0", "--airlight", help="Range of the airlight's grey level."),
    max_side: int = typer.Option(0, "--max-side", min=0, help="Downscale longer photos to this side first (0 = keep)."),
    ext: str = typer.Option("jpg", "--ext", help="jpg | png."),
    save_transmission: bool = typer.Option(False, "--save-transmission", help="Also write the transmission maps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs of an earlier run."),
) -> None:
    """Make hazy training images from clear photos (atmospheric scattering, plausible depth).

    Train with them as extra hazy data and keep their sources out of the clear pool:
    odcr train --hazy REAL --hazy OUT/hazy --clear CLEAR --exclude-clear OUT/sources.txt
    """
    from odcr_cli.tasks.synthesis import SynthConfig, make_synthetic_set

    def span(text: str, name: str) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in text.split(":"))
        except ValueError:
            _fail(f"--{name} {text}: expected LOW:HIGH, e.g. 0.5:3.0")
        return lo, hi

    try:
        cfg = SynthConfig(beta=span(beta, "beta"), airlight=span(airlight, "airlight"))
    except ValueError as exc:
        _fail(str(exc))

    def report(path: Path, error: str | None) -> None:
        if error:
            typer.echo(f"skipped {path}: {error}", err=True)

    try:
        result = make_synthetic_set(clear, out, fraction=fraction, variants=variants, seed=seed, cfg=cfg, ext=ext,
                                    max_side=max_side, save_transmission=save_transmission, overwrite=overwrite,
                                    on_file=report)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"wrote {len(result.written)} hazy image(s) from {len(result.sources)} clear photo(s) to "
               f"{out / 'hazy'}; {len(result.failed)} failed; manifest {result.manifest}", err=True)
    raise typer.Exit(1 if result.failed else 0)


# --- evaluate ----------------------------------------------------------------------------------
@app.command("evaluate", cls=_Command)
def evaluate_command(
    hazy: Optional[Path] = typer.Option(None, "--hazy", help="Folder of hazy images; alone (no --gt): real photos without ground truth, scored by FADE."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Folder of ground-truth images (with --hazy)."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Folder holding hazy/ and gt/."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m",
                                               help="Repeatable: odcr (the default model or --weights), a bundled model's name (odcr models), dcp, dcp@N (t estimated at N px), input, onnx:FILE, or a weights/checkpoint path, optionally as LABEL=METHOD (default: odcr)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights for --method odcr (default: the bundled model)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps; a requested GPU that is unusable is an error."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write all scores as JSON to FILE."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write per-image scores and means as CSV to FILE."),
    save_outputs: Optional[Path] = typer.Option(None, "--save-outputs", help="Save each method's outputs as PNG under DIR/METHOD/."),
    latency_size: str = typer.Option("256x256", "--latency-size", help="HxW of the latency measurement of learned methods."),
    latency_repeats: int = typer.Option(5, "--latency-repeats", min=0, help="Timed runs after one warm-up (0 = skip)."),
    max_side: Optional[int] = typer.Option(None, "--max-side", min=0,
                                 help="Network side of learned methods (0 = full resolution; default: as odcr dehaze runs each model)."),
    fade: bool = typer.Option(True, "--fade/--no-fade", help="Score FADE, the referenceless fog density (lower = less fog)."),
    report_dir: Optional[Path] = typer.Option(None, "--report", help="Write an HTML page (DIR/index.html) with every output and its scores."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only the table."),
) -> None:
    """Score methods side by side: PSNR, SSIM and FADE against ground truth, or FADE alone on real photos
    without it (full resolution, RGB uint8)."""
    from rich.console import Console
    from rich.table import Table

    from odcr_cli.errors import EvaluationError, ExportError, InferenceError, WeightsError
    from odcr_cli.tasks.evaluation import evaluate
    from odcr_cli.tasks.export import parse_hw

    if pairs is None and hazy is None:
        _fail("give --pairs DIR, --hazy DIR --gt DIR, or --hazy DIR alone (real photos, FADE)")
    if pairs is not None and (hazy is not None or gt is not None):
        _fail("--pairs and --hazy/--gt are alternatives; give one")
    try:
        lat_hw = parse_hw(latency_size)
    except ExportError as exc:
        _fail(str(exc))
    out = Console()
    err = Console(stderr=True)

    def progress(done: int, total: int, stem: str) -> None:
        if not quiet and err.is_terminal and stem:
            err.print(f"[{done + 1}/{total}] {stem}", end="\r", highlight=False)

    try:
        report = evaluate(hazy_dir=hazy, gt_dir=gt, pairs_dir=pairs, methods=method or ["odcr"], weights=weights,
                          device=device, save_outputs=save_outputs, latency_size=lat_hw,
                          latency_repeats=latency_repeats, max_side=max_side, fade=fade, report_dir=report_dir,
                          progress=progress)
    except (EvaluationError, InferenceError, WeightsError) as exc:
        _fail(str(exc))
    p = report.pairing
    if not quiet:
        err.print(f"{len(p.pairs)} {'pairs' if report.paired else 'photos'} evaluated in {report.seconds:.1f} s")
        if report.report_path is not None:
            err.print(f"report: {report.report_path}", highlight=False)
    for label, items in (("hazy images without GT", p.unmatched_hazy), ("GT images without a hazy image", p.unmatched_gt)):
        if items:
            err.print(f"[yellow]warning:[/] {len(items)} {label} (not scored): " + ", ".join(items[:10])
                      + (" …" if len(items) > 10 else ""), highlight=False)
    if report.gt_cropped:
        borders = sorted(set(report.gt_cropped.values()))
        err.print(f"note: {len(report.gt_cropped)} GT image(s) centre-cropped to the hazy size "
                  f"(border {', '.join(map(str, borders))} px)")
    for f in report.failures:
        err.print(f"[red]failed:[/] {f['stem']} ({f['method'] or 'reading'}): {f['error']}", highlight=False)

    subsets = sorted({s for m in report.methods.values() for s in m.subsets})
    if report.paired:
        title = "PSNR (dB) / SSIM" + (" / FADE (lower = less fog)" if report.fade else "") + ", means"
    else:
        title = "FADE (lower = less fog): mean / median, no ground truth"
    table = Table(title=title + ", full resolution, RGB uint8")
    table.add_column("method")
    table.add_column("all", justify="right")
    for s in subsets:
        table.add_column(s, justify="right")
    table.add_column("params", justify="right")
    table.add_column(f"latency {lat_hw[0]}x{lat_hw[1]}", justify="right")

    def num(v: float | None, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    def cell(agg: dict) -> str:
        if not agg or not agg.get("n"):
            return "–"
        if not report.paired:
            return f"{num(agg.get('fade'), '.3f')} / {num((agg.get('median') or {}).get('fade'), '.3f')} (n={agg['n']})"
        text = f"{num(agg['psnr'], '.2f')} / {num(agg['ssim'], '.3f')}"
        return text + (f" / {num(agg.get('fade'), '.3f')}" if report.fade else "") + f" (n={agg['n']})"

    for name, m in report.methods.items():
        lat = m.latency
        table.add_row(name, cell({**m.mean, "median": m.median}), *[cell(m.subsets.get(s, {})) for s in subsets],
                      f"{m.parameters:,}" if m.parameters else "–",
                      f"{lat['median_ms']:.0f} ms ({lat['backend']}, {lat['device']})" if lat else "–")
    gt_fade = report.gt_fade_summary()
    if gt_fade:
        stems = {q.stem: q.subset for q in p.pairs}

        def gt_cell(sub: str | None) -> str:
            vals = [v for s, v in gt_fade["images"].items() if v is not None and (sub is None or stems.get(s) == sub)]
            return f"– / – / {sum(vals) / len(vals):.3f} (n={len(vals)})" if vals else "–"

        table.add_row("ground truth (FADE)", gt_cell(None), *[gt_cell(s) for s in subsets], "", "")
    out.print(table)
    if json_out:
        report.write_json(json_out)
    if csv_out:
        report.write_csv(csv_out)
    raise typer.Exit(1 if report.failures else 0)

# --- models ------------------------------------------------------------------------------------
@app.command("models", cls=_Command)
def models_command(
    json_out: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the bundled models (the default first): name, kind, size, dev-pair score."""
    import json as _json

    from odcr_cli.errors import BundledModelError
    from odcr_cli.files.bundled import bundled_models

    try:
        models = bundled_models()
    except BundledModelError as exc:
        _fail(str(exc), code=1)
    if json_out:
        typer.echo(_json.dumps([{"name": m.name, "default": m.default, "kind": m.kind, "parameters": m.parameters,
                                 "bytes": m.size_bytes(), "onnx": m.onnx is not None, "summary": m.summary}
                                for m in models], indent=2))
        return
    if not models:
        _fail("no bundled model is installed", code=1)
    for m in models:  # one block per model: readable in any terminal width and in a pipe
        typer.echo(f"{m.name}{'  (default)' if m.default else ''}\n    {m.kind}, {m.parameters / 1e6:.2f} M parameters, "
                   f"{m.size_bytes() / 2**20:.1f} MiB{', ONNX export' if m.onnx else ''}\n    {m.summary}")


# --- export ------------------------------------------------------------------------------------
@app.command("export", cls=_Command)
def export_command(
    onnx_flag: bool = typer.Option(False, "--onnx", help="Export to ONNX (the only format so far)."),
    model: Optional[str] = typer.Option(None, "--model", help="A bundled model by name (default: the default model)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Generator .safetensors, odcr checkpoint .pt or CUT net_G.pth (default: the bundled model)."),
    output: Path = typer.Option(Path("model.onnx"), "-o", "--output", help="Output .onnx file (written only if the parity check passes)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    fp16: bool = typer.Option(False, "--fp16", help="fp16 weights/activations; InstanceNorm and reductions stay fp32; I/O stays float32."),
    static: Optional[str] = typer.Option(None, "--static", help="Fix height and width, e.g. 512x512 (multiples of 4) (default: dynamic)."),
    check_image: Optional[list[Path]] = typer.Option(None, "--check-image", help="Repeatable: real photos added to the parity check."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the PyTorch-vs-ONNX parity check (not recommended)."),
    training_data: Optional[str] = typer.Option(None, "--training-data", help="Training data recorded in the metadata (default: from the weights)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Export the generator to ONNX (dynamic batch/height/width) and check it against PyTorch."""
    from rich.console import Console
    from rich.table import Table

    from odcr_cli.errors import ExportCheckError, ExportError, InferenceError
    from odcr_cli.tasks.export import export_onnx, parse_hw
    from odcr_cli.files.bundled import bundled_model
    from odcr_cli.errors import WeightsError

    if not onnx_flag:
        _fail("choose a format: --onnx")
    if output.is_dir():
        _fail(f"-o {output} is a folder; name the .onnx file to write")
    if output.exists() and not overwrite:
        _fail(f"{output} already exists; pass --overwrite to replace it")
    try:
        static_hw = parse_hw(static) if static else None
    except ExportError as exc:
        _fail(str(exc))
    con = Console(stderr=True)
    if model is not None and weights is not None:
        _fail("--model picks a bundled model; --weights picks a file: give one of them")
    try:
        if model is not None:
            weights = str(bundled_model(model).weights_path())
        with con.status("exporting and checking…"):
            report = export_onnx(weights, output, opset=opset, fp16=fp16, static_hw=static_hw,
                                 check=not no_check, check_images=check_image or (), training_data=training_data)
    except ExportCheckError as exc:
        for c in exc.report.checks:
            con.print(f"  {'ok ' if c.passed else '[red]BAD[/]'} {c.name}: max diff {c.max_abs_diff}, PSNR {c.psnr:.1f} dB",
                      highlight=False)
        _fail(str(exc), code=1)
    except (ExportError, WeightsError, InferenceError) as exc:
        _fail(str(exc))
    table = Table(title=f"parity vs PyTorch fp32 ({'fp16: PSNR >= 40 dB' if fp16 else 'fp32: diff <= 1 level, PSNR >= 50 dB'})")
    for col in ("image", "HxW", "max diff (levels)", "PSNR (dB)", "ok"):
        table.add_column(col)
    for c in report.checks:
        table.add_row(c.name, f"{c.height}x{c.width}", str(c.max_abs_diff),
                      "inf" if c.psnr == float("inf") else f"{c.psnr:.1f}", "yes" if c.passed else "NO")
    if report.checks:
        con.print(table)
    shape = f"{static_hw[0]}x{static_hw[1]}" if static_hw else "dynamic HxW"
    con.print(f"wrote {report.output} ({report.bytes / 1e6:.1f} MB, opset {report.opset}, "
              f"{'fp16' if fp16 else 'fp32'}, {shape}, {report.parameters:,} parameters, "
              f"weights sha256 {report.weights_sha256[:12]}…) in {report.seconds:.1f} s", highlight=False)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    # A library's Python warning reaches the user as one line from the tool, without source lines.
    print(f"odcr: warning: {str(message).splitlines()[0] if str(message) else category.__name__}", file=sys.stderr)


def main() -> None:
    import warnings

    warnings.showwarning = _one_line_warning
    app()
