"""``odcr train``: a run is set up, then iterated; this module reads top to bottom as that.

:func:`train` sets a run up: its settings (a new run's, or a resumed run's own), the two pools of
photos, the models. :func:`run_iterations` is the loop: every iteration loads a batch, takes
:func:`train_step` (the discriminator step, then the generator step with its losses, the
projection head's and the channel classifiers' step, the weight average and the Stiefel step of
the orthogonal head; docs/method.md), and logs, checkpoints, samples and validates when due.

What the loop uses are separate concerns, each in its own module: :mod:`~odcr_cli.tasks.train.state`
builds the models, optimisers and weight average and checkpoints them (and holds the ranks of a
multi-GPU run), :mod:`~odcr_cli.tasks.train.settings` the settings and what a resume may change,
:mod:`~odcr_cli.tasks.train.run_folder` the files, :mod:`~odcr_cli.tasks.train.data` the pools and
their batches, :mod:`odcr_cli.core.methods` the losses.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from odcr_cli import __version__
from odcr_cli.core.configs import TRANSMISSION_TERMS_NEED_SCATTERING, GeneratorConfig, MethodConfig
from odcr_cli.errors import TrainingDiverged, TrainingError
from odcr_cli.imaging.haze_synthesis import SynthConfig
from odcr_cli.tasks.train.data import CropSpec, center_crop, load_pools
from odcr_cli.tasks.train.fine_tune import fine_tune_settings, load_initial_weights
from odcr_cli.tasks.train.run_folder import RunFolder
from odcr_cli.tasks.train.settings import TrainConfig, check_options, resumed_config
from odcr_cli.tasks.train.state import Distributed, TrainingState, init_distributed, resolve_device

__all__ = ("TrainCallbacks", "TrainConfig", "TrainResult", "run_iterations", "train", "train_step")

Batches = Callable[[int], tuple[torch.Tensor, ...]]  # iteration -> (hazy, clear[, synthetic hazy, its t])
Step = Callable[[TrainingState, tuple], dict[str, torch.Tensor]]  # (state, batch) -> its losses


def _quiet(msg: str) -> None:
    """The ``say`` of ranks other than 0: one voice per run."""


@dataclass(frozen=True)
class TrainCallbacks:
    """How the loop reports; the CLI plugs a rich progress bar in here."""

    on_start: Callable[[int, int], None] = lambda start, total: None
    on_iteration: Callable[[int, dict[str, float]], None] = lambda it, terms: None
    on_message: Callable[[str], None] = lambda msg: None
    # polled after each iteration's step: True ends the run after it, with a checkpoint (Ctrl-C, SIGTERM)
    stop_requested: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    iteration: int
    seconds_per_iter: float
    last_checkpoint: Path | None
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    validation: dict[str, float] | None = None


def train(config: TrainConfig, method: MethodConfig, generator: GeneratorConfig,
          resume: bool = False, callbacks: TrainCallbacks | None = None,
          explicit: frozenset[str] | None = None) -> TrainResult:
    """Run (or resume) a training run in ``config.out``.

    ``explicit``: the names of the settings the user gave (the CLI's flags). On ``resume`` the run
    keeps its own settings: an explicit one that differs is an error naming it, except those that
    may change between invocations (``settings.MAY_CHANGE_ON_RESUME``), which are applied
    and reported. None: ``config`` is used as given (the Python API's old behaviour)."""
    cb = callbacks or TrainCallbacks()
    dctx = init_distributed()
    try:
        result = _set_up_and_run(config, method, generator, resume, cb, dctx, explicit)
        if dctx.world > 1:
            dist.barrier()  # leave together: a rank tearing down early can abort its peer
        return result
    finally:
        if dctx.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _set_up_and_run(config: TrainConfig, method: MethodConfig, generator: GeneratorConfig, resume: bool,
                    cb: TrainCallbacks, dctx: Distributed, explicit: frozenset[str] | None) -> TrainResult:
    started = time.perf_counter()  # --max-minutes counts the set-up too
    folder = RunFolder(Path(config.out))
    say = cb.on_message if dctx.is_main else _quiet
    check_options(config)
    checkpoint = folder.state_to_resume(resume, say)
    if checkpoint is not None:  # a resumed run keeps the method and network it was started with
        if explicit is not None:
            config = resumed_config(config, method, generator, checkpoint, explicit, say)
        method = MethodConfig.from_dict(checkpoint["method"])
        generator = GeneratorConfig.from_dict(checkpoint["generator_config"])
    init = None
    if checkpoint is None and config.init:  # a fine-tune: the model's generator (a resume has it already)
        init = load_initial_weights(config.init)
        method, generator = fine_tune_settings(init, method, generator, explicit)
        say(f"fine-tuning {init.source} ({init.config.ngf} wide, {init.config.n_blocks} blocks, "
            f"{init.config.output} output)")
    if generator.output != "scattering" and method.transmission_terms:
        raise TrainingError(TRANSMISSION_TERMS_NEED_SCATTERING)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # training crops have one fixed size
    spec = CropSpec(crop=config.crop, load_size=max(config.effective_load_size, config.crop),
                    preprocess=config.preprocess)
    hazy, clear, sampler = load_pools(config.hazy, config.clear, config.exclude_clear, spec, config.seed,
                                      SynthConfig(beta=method.synth_beta) if method.lambda_synth > 0 else None, say)

    state = TrainingState(config, method, generator, device, dctx)
    if init is not None:
        state.start_from(init.state_dict)
    if checkpoint is not None:
        state.load_state_dict(checkpoint)
        say(f"resumed from iteration {state.iteration}")
        del checkpoint  # its tensors are in the models now: free the copy
    if dctx.is_main:
        folder.write_config({"train": config.to_dict(), "method": method.to_dict(), "generator": generator.to_dict(),
                             "odcr_version": __version__, "device": str(device), "world_size": dctx.world,
                             "torch": torch.__version__, **({"init_weights": init.record()} if init else {})})
        folder.update_report(say)
    fixed = torch.stack([center_crop(im, config.crop) for im in hazy.images[: config.num_samples]])

    def batches(iteration: int) -> tuple[torch.Tensor, ...]:
        # the ranks take consecutive slices of one sequence of samples, each a pure function of its
        # index: the data of a run depend neither on the timing nor on where it was resumed
        return sampler.batch((iteration * dctx.world + dctx.rank) * config.batch, config.batch)

    result = run_iterations(state, folder, batches, fixed, cb, say, started)
    return replace(result, skipped_files=[(str(p), w) for p, w in hazy.skipped + clear.skipped])


def _gan_step(state: TrainingState, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    hazy, clear, *synthetic = batch
    return train_step(state, hazy, clear, tuple(synthetic) if synthetic else None)


def run_iterations(state: TrainingState, folder: RunFolder, batches: Batches, fixed: torch.Tensor,
                   callbacks: TrainCallbacks | None = None, say: Callable[[str], None] = _quiet,
                   started: float | None = None, step: Step = _gan_step) -> TrainResult:
    """The iterations of one invocation, from ``state.iteration`` to ``state.config.stop``.

    ``batches(iteration)`` gives this rank's (hazy, clear) batches, each (B, 3, crop, crop) in
    [-1, 1]; ``fixed`` holds the (N, 3, crop, crop) hazy crops of the sample grids (N may be 0);
    ``started`` is the ``time.perf_counter()`` that ``--max-minutes`` counts from (default: now).
    ``step(state, batch)`` moves the state by one iteration and returns its losses (default: the
    GAN's :func:`train_step`; ``odcr distill`` gives its own, with a state of the same interface).
    Rank 0 writes ``folder``; every rank takes part in the checks that ranks agree on. The
    result's ``skipped_files`` is left empty (the caller's)."""
    c, cb, main = state.config, callbacks or TrainCallbacks(), state.dist.is_main
    started = time.perf_counter() if started is None else started
    stop = c.stop  # lowered by --max-minutes and by Ctrl-C / SIGTERM
    last_checkpoint, validation = folder.latest_checkpoint(), None
    if main:
        cb.on_start(state.iteration, stop)
    t0, first = time.perf_counter(), state.iteration
    while state.iteration < stop:
        done = state.iteration + 1
        batch = batches(state.iteration)
        if c.max_minutes is not None:
            out_of_time = time.perf_counter() - started > c.max_minutes * 60
            # every rank takes part in any_rank, even on what is already the last iteration
            if state.dist.any_rank(out_of_time, state.device) and done < stop:
                stop = done
                say(f"--max-minutes {c.max_minutes:g} reached: stopping after iteration {done} of "
                    f"{c.iters} (continue with --resume)")

        try:
            terms = step(state, batch)
            interrupted = cb.stop_requested() and done < stop  # Ctrl-C or SIGTERM came during the step
            stop = done if interrupted else stop
            last = done == stop
            log = done % c.log_every == 0 or last
            checkpoint = done % c.checkpoint_every == 0 or last
            sample = (done % c.sample_every == 0 or last) and len(fixed) > 0
            validate = bool(c.val_hazy and c.val_gt) and (done % c.val_every == 0 or last)
            if log or checkpoint or sample or validate:  # the device is read anyway: a deferred check is free
                state.check_finite()
        except TrainingDiverged as exc:
            where = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
            raise TrainingDiverged(f"{exc}; {where}") from None
        if interrupted:
            say(f"interrupted: stopping after iteration {done} of {c.iters}, with a checkpoint")

        if main and log:
            values = {k: float(v) for k, v in terms.items()}  # the read-back from the device
            folder.append({"iter": done, "lr": state.last_lr,
                           "sec_per_iter": (time.perf_counter() - t0) / max(1, done - first), **values})
            cb.on_iteration(done, values)
        elif main:
            cb.on_iteration(done, {})
        if checkpoint:
            synced = state.dist.in_sync(state.model)
            if main:
                last_checkpoint = folder.save_checkpoint(state.iteration, state.state_dict(), state.output_generator,
                                                         state.generator_metadata(), c.keep_checkpoints)
                folder.append({"iter": done, "checkpoint": last_checkpoint.name, "world_size": state.dist.world,
                               "ranks_in_sync": synced})
            if not synced:
                raise TrainingError(f"ranks disagree on the weights at iteration {done}")
        if main and sample:
            folder.save_sample(done, state.sample_grid(fixed))
        if main and validate:
            validation = _validation_scores(state)
            folder.append({"iter": done, "val": validation})
            say(f"validation at {done}: PSNR {validation['psnr']:.2f} dB, SSIM {validation['ssim']:.4f}")
        if main and checkpoint:  # after this iteration's samples and validation
            folder.update_report(say)
    seconds_per_iter = (time.perf_counter() - t0) / max(1, state.iteration - first)
    return TrainResult(folder.path, state.iteration, seconds_per_iter, last_checkpoint, [], validation)


def train_step(state: TrainingState, hazy: torch.Tensor, clear: torch.Tensor,
               synthetic: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """One iteration on (B, 3, H, W) batches in [-1, 1]: the discriminator step, then the generator
    step (with the head, the classifiers and the Stiefel step). ``synthetic``: (hazy, true t) made
    from the clear crops, for ``lambda_synth``. Returns the losses as 0-d tensors, still on the device."""
    m, it = state.model, state.iteration
    # the patches and FastCUT's flip are drawn from (seed, iteration, rank): a resumed run draws the same
    rng = np.random.default_rng([state.config.seed, 3, it, state.dist.rank])
    hazy, clear = state.to_device(hazy), state.to_device(clear)
    flip = m.method.flip_equivariance and bool(rng.random() < 0.5)
    with state.autocast:
        translated = m.translate(hazy, clear, flip)

    # discriminator: clear photos against the generator's (detached) output
    m.discriminator.requires_grad_(True)
    state.opt_d.zero_grad(set_to_none=True)
    with state.autocast:
        loss_d = m.discriminator_loss(clear, translated["fake"])
    state.note_finite(loss_d)
    loss_d.backward()
    state.dist.average_gradients(m.discriminator.parameters())
    state.opt_d.step()

    # generator, projection head and classifiers, against the frozen discriminator
    m.discriminator.requires_grad_(False)
    for o in (state.opt_g, state.opt_f, state.opt_s):
        if o is not None:
            o.zero_grad(set_to_none=True)
    with state.autocast:
        syn = tuple(state.to_device(x) for x in synthetic) if synthetic is not None else None
        out = m.generator_objective(hazy, clear, translated, rng, flip, it, syn)
    state.note_finite(out.total)
    out.total.backward()
    state.dist.average_gradients(list(m.generator.parameters()) + list(m.head.parameters())
                                 + (list(m.classifiers.parameters()) if m.classifiers is not None else []))
    held = it < state.config.critic_warmup  # a fine-tune's fresh critics learn first (--critic-warmup)
    if not held:
        state.opt_g.step()
    if state.ema is not None:
        state.ema.update(m.generator)  # the weight average that is saved, sampled and validated
    state.opt_f.step()
    if state.opt_s is not None:
        state.opt_s.step()  # the orthogonal head on its manifold: float64 polar retraction, outside autocast
    state.last_lr = state.opt_g.param_groups[0]["lr"]  # the rate this iteration used
    with warnings.catch_warnings():
        if held:  # the generator's rate runs on while it is held: PyTorch's warning says it skipped a step
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        for s in state.schedulers:
            s.step()
    state.iteration += 1
    terms = {f"G_{k}": v.detach() for k, v in out.terms.items()}
    terms["G_total"] = out.total.detach()
    terms["D"] = loss_d.detach()
    return terms


def _validation_scores(state: TrainingState) -> dict[str, float]:
    """Mean PSNR/SSIM of the output generator on the paired folders (evaluate's conventions)."""
    from odcr_cli.tasks.evaluate.evaluation import evaluate_generator_on_pairs

    c, g = state.config, state.output_generator
    was_training = g.training
    try:
        return evaluate_generator_on_pairs(g.eval(), Path(c.val_hazy), Path(c.val_gt))
    finally:
        g.train(was_training)
