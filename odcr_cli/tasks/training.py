"""``odcr train``: checks the options, loads the two pools, resumes, then runs the loop.

The pieces live next to this module: :mod:`odcr_cli.tasks.trainer` holds the models,
optimisers, schedule and weight average of a run (no files); :mod:`odcr_cli.tasks.run_folder`
holds the files of a run, and documents their layout. :class:`TrainingLoop` joins the two: it
draws the batches, steps the trainer and writes log records, checkpoints, samples, validation
scores and the report at the configured iterations.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from PIL import Image

from odcr_cli import __version__
from odcr_cli.core.methods import MethodConfig
from odcr_cli.core.network_input import MIN_SIDE, SIZE_MULTIPLE
from odcr_cli.core.networks import GeneratorConfig
from odcr_cli.errors import TrainingDiverged, TrainingError
from odcr_cli.tasks.run_folder import RunFolder, list_checkpoints, load_latest_checkpoint
from odcr_cli.tasks.trainer import (Distributed, TrainConfig, Trainer, WeightAverage, init_distributed, lr_factor,
                                    resolve_device)
from odcr_cli.tasks.training_data import PREPROCESS, CropSpec, ImageFolder, UnpairedSampler, gather_images, to_tensor

__all__ = ("TrainCallbacks", "TrainConfig", "TrainResult", "Trainer", "TrainingLoop", "WeightAverage",
           "list_checkpoints", "load_latest_checkpoint", "lr_factor", "resolve_device", "train")

Batches = Callable[[int], tuple[torch.Tensor, ...]]  # iteration -> (hazy, clear[, synthetic hazy, its t])


def _quiet(msg: str) -> None:
    """The ``say`` of ranks other than 0: one voice per run."""


@dataclass(frozen=True)
class TrainCallbacks:
    """How the loop reports; the CLI plugs a rich progress bar in here."""

    on_start: Callable[[int, int], None] = lambda start, total: None
    on_iteration: Callable[[int, dict[str, float]], None] = lambda it, terms: None
    on_message: Callable[[str], None] = lambda msg: None
    # polled before each iteration: True ends the run after it, with a checkpoint (Ctrl-C, SIGTERM)
    stop_requested: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    iteration: int
    seconds_per_iter: float
    last_checkpoint: Path | None
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    validation: dict[str, float] | None = None


@dataclass(frozen=True)
class _Due:
    """What an iteration writes besides its step."""

    log: bool
    checkpoint: bool
    sample: bool
    validate: bool

    @property
    def reads_back(self) -> bool:
        """Does the iteration read the device anyway? (there a deferred finite check is free)"""
        return self.log or self.checkpoint or self.sample or self.validate


class TrainingLoop:
    """The iterations of one invocation, from ``trainer.iteration`` to ``config.stop``.

    ``batches(iteration)`` gives this rank's (hazy, clear) batches, each (B, 3, crop, crop) in
    [-1, 1]; ``fixed`` holds the (N, 3, crop, crop) hazy crops of the sample grids (N may be 0);
    ``started`` is the ``time.perf_counter()`` that ``--max-minutes`` counts from (default: now).
    Rank 0 writes ``folder``; every rank takes part in the checks that ranks agree on."""

    def __init__(self, trainer: Trainer, folder: RunFolder, batches: Batches, fixed: torch.Tensor,
                 callbacks: TrainCallbacks | None = None, say: Callable[[str], None] = _quiet,
                 started: float | None = None) -> None:
        self.trainer, self.folder, self.batches, self.fixed = trainer, folder, batches, fixed
        self.cb = callbacks or TrainCallbacks()
        self.say = say
        self.started = time.perf_counter() if started is None else started
        self.config = trainer.config
        self.stop = self.config.stop  # lowered by --max-minutes
        self.last_checkpoint: Path | None = None
        self.validation: dict[str, float] | None = None
        self._t0, self._it0 = 0.0, trainer.iteration

    @property
    def _main(self) -> bool:
        return self.trainer.dist.is_main

    def run(self) -> TrainResult:
        """Train until the stop; the result's ``skipped_files`` is left empty (the caller's)."""
        t = self.trainer
        if self._main:
            self.cb.on_start(t.iteration, self.stop)
        self.last_checkpoint = self.folder.latest_checkpoint()
        self._t0, self._it0 = time.perf_counter(), t.iteration
        while t.iteration < self.stop:
            self._iteration()
        spi = (time.perf_counter() - self._t0) / max(1, t.iteration - self._it0)
        return TrainResult(self.folder.path, t.iteration, spi, self.last_checkpoint, [], self.validation)

    def _iteration(self) -> None:
        hazy, clear, *synthetic = self.batches(self.trainer.iteration)
        done = self.trainer.iteration + 1
        self._stop_early_when_out_of_time(done)
        due = self._due(done)
        terms = self._step(hazy, clear, tuple(synthetic) if synthetic else None, due)
        if self.cb.stop_requested() and done < self.stop:  # Ctrl-C or SIGTERM came during this step
            self.stop = done
            due = self._due(done)
            self.say(f"interrupted: stopping after iteration {done} of {self.config.iters}, with a checkpoint")
        self._report_iteration(done, terms, due)
        if due.checkpoint:
            self._checkpoint(done)
        if self._main and due.sample:
            self.folder.save_sample(done, self.trainer.sample_grid(self.fixed))
        if self._main and due.validate:
            self._validate(done)
        if self._main and due.checkpoint:  # after this iteration's samples and validation
            self.folder.update_report(self.say)

    def _stop_early_when_out_of_time(self, done: int) -> None:
        c, t = self.config, self.trainer
        if c.max_minutes is None:
            return
        out_of_time = time.perf_counter() - self.started > c.max_minutes * 60
        # every rank must take part in any_rank, even when this is already the last iteration
        if t.dist.any_rank(out_of_time, t.device) and done < self.stop:
            self.stop = done
            self.say(f"--max-minutes {c.max_minutes:g} reached: stopping after iteration {done} of "
                     f"{c.iters} (continue with --resume)")

    def _due(self, done: int) -> _Due:
        c, last = self.config, done == self.stop
        return _Due(log=done % c.log_every == 0 or last,
                    checkpoint=done % c.checkpoint_every == 0 or last,
                    sample=(done % c.sample_every == 0 or last) and len(self.fixed) > 0,
                    validate=bool(c.val_hazy and c.val_gt) and (done % c.val_every == 0 or last))

    def _step(self, hazy: torch.Tensor, clear: torch.Tensor, synthetic: tuple[torch.Tensor, torch.Tensor] | None,
              due: _Due) -> dict[str, torch.Tensor]:
        try:
            terms = self.trainer.step(hazy, clear, synthetic)
            if due.reads_back:
                self.trainer.check_finite()
        except TrainingDiverged as exc:
            ckpt = self.last_checkpoint
            where = f"last good checkpoint: {ckpt}" if ckpt else "no checkpoint was written yet"
            raise TrainingDiverged(f"{exc}; {where}") from None
        return terms

    def _report_iteration(self, done: int, terms: dict[str, torch.Tensor], due: _Due) -> None:
        if not self._main:
            return
        if not due.log:
            self.cb.on_iteration(done, {})
            return
        values = {k: float(v) for k, v in terms.items()}  # the read-back from the device
        elapsed = time.perf_counter() - self._t0
        self.folder.append({"iter": done, "lr": self.trainer.last_lr,
                            "sec_per_iter": elapsed / max(1, done - self._it0), **values})
        self.cb.on_iteration(done, values)

    def _checkpoint(self, done: int) -> None:
        t = self.trainer
        synced = t.dist.in_sync(t.model)
        if self._main:
            self.last_checkpoint = self.folder.save_checkpoint(
                t.iteration, t.state_dict(), t.output_generator, t.generator_metadata(), self.config.keep_checkpoints)
            self.folder.append({"iter": done, "checkpoint": self.last_checkpoint.name,
                                "world_size": t.dist.world, "ranks_in_sync": synced})
        if not synced:
            raise TrainingError(f"ranks disagree on the weights at iteration {done}")

    def _validate(self, done: int) -> None:
        self.validation = _validation_scores(self.trainer)
        self.folder.append({"iter": done, "val": self.validation})
        self.say(f"validation at {done}: PSNR {self.validation['psnr']:.2f} dB, SSIM {self.validation['ssim']:.4f}")


def train(config: TrainConfig, method: MethodConfig, generator: GeneratorConfig,
          resume: bool = False, callbacks: TrainCallbacks | None = None,
          explicit: frozenset[str] | None = None) -> TrainResult:
    """Run (or resume) a training run in ``config.out``.

    ``explicit``: the names of the settings the user gave (the CLI's flags). On ``resume`` the run
    keeps its own settings: an explicit one that differs is an error naming it, except those that
    may change between invocations (:data:`MAY_CHANGE_ON_RESUME`), which are applied and reported.
    None: ``config`` is used as given (the Python API's old behaviour)."""
    cb = callbacks or TrainCallbacks()
    dctx = init_distributed()
    try:
        result = _train(config, method, generator, resume, cb, dctx, explicit)
        if dctx.world > 1:
            dist.barrier()  # leave together: a rank tearing down early can abort its peer
        return result
    finally:
        if dctx.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, method: MethodConfig, generator: GeneratorConfig, resume: bool,
           cb: TrainCallbacks, dctx: Distributed, explicit: frozenset[str] | None = None) -> TrainResult:
    started = time.perf_counter()  # --max-minutes counts the set-up too
    folder = RunFolder(Path(config.out))
    say = cb.on_message if dctx.is_main else _quiet
    _check_options(config)
    state = _checkpoint_to_resume(folder, resume, say)
    if state is not None:  # a resumed run keeps the method and network it was started with
        if explicit is not None:
            config = _resumed_config(config, method, generator, state, explicit, say)
        method = MethodConfig.from_dict(state["method"])
        generator = GeneratorConfig.from_dict(state["generator_config"])
    if generator.output != "scattering" and (method.lambda_dcp or method.lambda_tv or method.lambda_synth):
        raise TrainingError("the transmission priors (--lambda-dcp, --lambda-tv, --lambda-synth) need --output scattering")
    device = _training_device(config.device)
    hazy, clear, sampler = _load_pools(config, say, synthetic=method.lambda_synth > 0)

    trainer = Trainer(config, method, generator, device, dctx)
    if state is not None:
        trainer.load_state_dict(state)
        say(f"resumed from iteration {trainer.iteration}")
        del state  # the checkpoint's tensors are in the models now: free the copy
    if dctx.is_main:
        folder.write_config({"train": config.to_dict(), "method": method.to_dict(), "generator": generator.to_dict(),
                             "odcr_version": __version__, "device": str(device), "world_size": dctx.world,
                             "torch": torch.__version__})
        folder.update_report(say)
    fixed = torch.stack([_center_crop(im, config.crop) for im in hazy.images[: config.num_samples]])

    loop = TrainingLoop(trainer, folder, _rank_batches(sampler, config.batch, dctx), fixed, cb, say, started)
    result = loop.run()
    return replace(result, skipped_files=[(str(p), w) for p, w in hazy.skipped + clear.skipped])


def _check_options(config: TrainConfig) -> None:
    if config.preprocess not in PREPROCESS:
        raise TrainingError(f"unknown --preprocess {config.preprocess!r}")
    if config.iters < 1 or config.batch < 1 or config.crop < MIN_SIDE or config.crop % SIZE_MULTIPLE:
        raise TrainingError(f"--iters and --batch must be >= 1 and --crop a multiple of {SIZE_MULTIPLE}, "
                            f"at least {MIN_SIDE}")


# Settings of one invocation, never carried over by a resume (where to stop this time, on what).
PER_INVOCATION = ("until", "max_minutes", "device", "out")
# Settings a resumed run may change when given (its budget, files and reporting); every other one
# is the run's own.
MAY_CHANGE_ON_RESUME = frozenset({"iters", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every",
                                  "num_samples", "val_hazy", "val_gt", "val_every", "training_data", *PER_INVOCATION})


def _resumed_config(config: TrainConfig, method: MethodConfig, generator: GeneratorConfig, state: dict,
                    explicit: frozenset[str], say: Callable[[str], None]) -> TrainConfig:
    """The run's own TrainConfig (from its checkpoint) with the explicit changes that are allowed;
    an explicit setting that contradicts the run is a TrainingError naming its flag."""
    saved = TrainConfig.from_dict(state.get("train_config") or config.to_dict())
    runs_own = ((config, saved), (method, MethodConfig.from_dict(state["method"])),
                (generator, GeneratorConfig.from_dict(state["generator_config"])))
    changes: dict[str, object] = {}
    for name in sorted(explicit):
        field_name = "name" if name == "method" else name  # --method is MethodConfig.name
        for mine, theirs in runs_own:
            if not hasattr(theirs, field_name):
                continue
            new, old = getattr(mine, field_name), getattr(theirs, field_name)
            if name in ("hazy", "clear", "exclude_clear"):  # the same folders, however they are written
                new, old = tuple(map(os.path.abspath, new)), tuple(map(os.path.abspath, old))
            if new == old:
                continue
            if name not in MAY_CHANGE_ON_RESUME:
                flag = "--" + name.replace("_", "-")
                raise TrainingError(f"--resume: {flag} {new} contradicts the run ({old}); a run keeps its settings: "
                                    f"drop {flag} or start a new run with another --out")
            changes[name] = new
    changes.update({name: getattr(config, name) for name in PER_INVOCATION})
    for name, value in changes.items():
        if name not in PER_INVOCATION:
            say(f"resumed with {name.replace('_', '-')} = {value} (was {getattr(saved, name)})")
    return replace(saved, **changes)


def _checkpoint_to_resume(folder: RunFolder, resume: bool, say: Callable[[str], None]) -> dict | None:
    """The state to resume from (None: a new run); a new run never overwrites an old one."""
    if not resume:
        if folder.checkpoints():
            raise TrainingError(f"{folder.path} already holds a run; "
                                "use --resume to continue it or choose another --out")
        return None
    state = folder.load_latest_checkpoint(say)
    if state is None:
        raise TrainingError(f"--resume: no readable checkpoint in {folder.checkpoint_dir}")
    return state


def _training_device(spec: str) -> torch.device:
    device = resolve_device(spec)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # training crops have one fixed size
    return device


def _load_pools(config: TrainConfig, say: Callable[[str], None],
                synthetic: bool = False) -> tuple[ImageFolder, ImageFolder, UnpairedSampler]:
    """The decoded hazy and clear pools and their sampler; unreadable images are reported and skipped."""
    try:
        hazy_files, _ = gather_images(config.hazy)
        clear_files, n_excluded = gather_images(config.clear, config.exclude_clear)
    except FileNotFoundError as exc:
        raise TrainingError(str(exc)) from None
    except (OSError, ValueError) as exc:  # an unreadable or binary --exclude-clear list
        raise TrainingError(f"cannot read the image lists: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if config.exclude_clear:
        say(f"left {n_excluded} clear image(s) out of the clear pool (--exclude-clear)")
    spec = CropSpec(crop=config.crop, load_size=max(config.effective_load_size, config.crop),
                    preprocess=config.preprocess)

    def skip(path: Path, why: str) -> None:
        say(f"skipped unreadable image {path}: {why}")

    hazy, clear = ImageFolder(hazy_files, spec, skip), ImageFolder(clear_files, spec, skip)
    try:
        sampler = UnpairedSampler(hazy, clear, config.seed, synthetic)
    except ValueError as exc:
        raise TrainingError(f"{exc} (hazy: {', '.join(config.hazy)}; clear: {', '.join(config.clear)})") from None
    if len(hazy) == 1:
        say("one hazy image: single-image translation, negatives drawn from that image")
    return hazy, clear, sampler


def _rank_batches(sampler: UnpairedSampler, batch: int, dctx: Distributed) -> Batches:
    """Iteration -> this rank's (hazy, clear) batches, (batch, 3, crop, crop) each: the ranks
    take consecutive slices of one sample sequence, so a run's data do not depend on the timing."""
    def batches(iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        return sampler.batch((iteration * dctx.world + dctx.rank) * batch, batch)

    return batches


def _center_crop(im: Image.Image, size: int) -> torch.Tensor:
    """The middle ``size`` x ``size`` of an image -> (3, size, size) in [-1, 1]."""
    w, h = im.size
    x, y = (w - size) // 2, (h - size) // 2
    return to_tensor(im.crop((x, y, x + size, y + size)))


def _validation_scores(trainer: Trainer) -> dict[str, float]:
    """Mean PSNR/SSIM of the output generator on the paired folders (evaluate's conventions)."""
    from odcr_cli.tasks.evaluation import evaluate_generator_on_pairs

    c, g = trainer.config, trainer.output_generator
    was_training = g.training
    try:
        return evaluate_generator_on_pairs(g.eval(), Path(c.val_hazy), Path(c.val_gt))
    finally:
        g.train(was_training)
