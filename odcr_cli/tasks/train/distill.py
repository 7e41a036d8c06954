"""``odcr distill``: a narrower student fitted to a scattering teacher's transmission, so that it
runs faster at a side of its own (docs/scattering.md, "A student for speed"; the bundled default's
recipe).

Two stages, one run folder (the layout of ``odcr train``'s, :mod:`~odcr_cli.tasks.train.run_folder`):

1. the teacher's t on every photo, computed as ``odcr dehaze`` computes it (the photo's copy at the
   teacher's side, framed by its margin, the readout's prior and residual), for the hazy photos,
   the clear ones and, with ``synthetic``, ``copies`` synthetic hazy copies of each clear one; kept
   in ``RUN/teacher_cache.pt`` so that a resumed run does not compute it again. With ``truth`` the
   copies' targets are their own true t and airlight instead, the haze drawn in the airlights the
   teacher finds on the hazy photos and ``synth_beta`` dense: the haze of the user's photos, whose
   truth is known;
2. the student (a ResNet trunk, ``ngf``/``n_blocks``, the teacher's prior and floor of t; or with
   ``init`` a model's own weights, shape and side: a fine-tune) on whole
   photos framed as ``odcr dehaze`` frames them, one photo per step at a side drawn from
   ``sides``, against the teacher's t carried to that side (area average):
   :func:`odcr_cli.core.losses.distillation_loss`, |t - t_teacher| + |J - J_teacher|. The loop
   is ``odcr train``'s (:func:`~odcr_cli.tasks.train.training.run_iterations`: its schedule,
   weight average, checkpoints, resume, log, ``--max-minutes`` and report) with this module's step.

The student records ``side`` (``inference_side``), the side ``odcr dehaze`` runs it at.

``odcr distill --init odcr --truth --hazy mine/ --clear clear/`` is the fine-tune to one's own haze
(docs/scattering.md, "Your own dehazer"): the model keeps its answer on the user's hazy photos and
learns the truth of synthetic haze like theirs, on whole photos framed as ``odcr dehaze`` frames
them (``odcr train --init`` fine-tunes on crops, with its unpaired losses).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from odcr_cli import __version__
from odcr_cli.core import losses
from odcr_cli.core.configs import GeneratorConfig
from odcr_cli.core.networks import ResnetGenerator, init_weights
from odcr_cli.errors import TrainingError
from odcr_cli.haze import pipeline
from odcr_cli.haze.constants import MODEL_SIDE
from odcr_cli.haze.network_input import shrink_to
from odcr_cli.haze.prior import dcp_transmission
from odcr_cli.haze.transmission_torch import transmission_from_residual
from odcr_cli.imaging.haze_synthesis import SynthConfig, plausible_depth, sample_params, scatter, synthesize
from odcr_cli.tasks.train.data import gather_images, load_rgb
from odcr_cli.tasks.train.fine_tune import InitialWeights, load_initial_weights
from odcr_cli.tasks.train.run_folder import RunFolder
from odcr_cli.tasks.train.settings import (MAY_CHANGE_ON_RESUME, PER_INVOCATION, DistillConfig, TrainConfig,
                                           check_options)
from odcr_cli.tasks.train.state import Distributed, WeightAverage, lr_factor, resolve_device
from odcr_cli.tasks.train.training import TrainCallbacks, TrainResult, run_iterations

CACHE = "teacher_cache.pt"
# The teacher's own synthetic haze (its --synth-beta): from none to thick.
SYNTH = SynthConfig(beta=(0.0, 2.0))
# With --truth, each copy's airlight is one the teacher found on a hazy photo, moved by this much
# (a standard deviation, per channel): the user's haze, not one airlight of it.
AIRLIGHT_JITTER = 0.02


def teacher_targets(distill: DistillConfig, hazy: list[Path], clear: list[Path], seed: int,
                    say: Callable[[str], None]) -> dict:
    """The teacher's answer on every photo: {"teacher": its record, "entries": [{img (H, W, 3)
    float16 at the teacher's side, t (H, W) float16, A (3,)}]} (odcr dehaze's pipeline)."""
    from odcr_cli.engine.dehazer import Dehazer

    teacher = load_initial_weights(distill.teacher)
    if teacher.config.output != "scattering":
        raise TrainingError(f"--teacher {distill.teacher}: its output is the image ({teacher.config.output}); "
                            "distillation fits a scattering model's transmission")
    copies = (f"{distill.copies} synthetic hazy cop{'y' if distill.copies == 1 else 'ies'} of each clear one"
              + (", fitted to their truth" if distill.truth else ""))
    say(f"the teacher's t on {len(hazy)} hazy and {len(clear)} clear photo(s)"
        + (f", and {copies}" if distill.synthetic and clear else ""))
    d = Dehazer(weights=str(teacher.path), backend="torch", device="cpu")
    side = d.max_side or MODEL_SIDE
    items = [(f, False) for f in hazy + clear] + ([(f, True) for f in clear] * distill.copies if distill.synthetic else [])
    rng = np.random.default_rng([seed, 5])
    entries, airlights, started = [], [], time.perf_counter()
    truth = SynthConfig(beta=distill.synth_beta)
    for i, (f, synthetic) in enumerate(items):
        try:
            rgb = np.asarray(load_rgb(f), dtype=np.float32) / 255.0
        except Exception as exc:  # noqa: BLE001 - one bad photo never stops the run
            say(f"skipped unreadable image {f}: {type(exc).__name__}")
            continue
        small = shrink_to(rgb, side)
        if synthetic and distill.truth:
            entries.append(_true_haze(small, rng, truth, airlights, teacher.config.t_min))
            continue
        if synthetic:
            small = np.clip(synthesize(small, rng, SYNTH)[0], 0.0, 1.0).astype(np.float32)
        haze = pipeline.estimate(small, d.backend.run_outputs, d.readout, side)  # as odcr dehaze estimates it
        entries.append({"img": small.astype(np.float16), "t": haze.t_small.astype(np.float16),
                        "A": np.asarray(haze.airlight, np.float32)})
        if i < len(hazy):
            airlights.append(entries[-1]["A"])
        if (i + 1) % 100 == 0:
            say(f"teacher: {i + 1} of {len(items)} photos, {time.perf_counter() - started:.0f} s")
    if not entries:
        raise TrainingError("no readable photo to distil on")
    return {"teacher": {**teacher.record(), "side": side, "t_min": teacher.config.t_min}, "entries": entries}


def _true_haze(clear: np.ndarray, rng: np.random.Generator, cfg: SynthConfig, airlights: list[np.ndarray],
               t_min: float) -> dict:
    """A synthetic hazy copy of ``clear`` (h, w, 3) and its truth, as a cache entry: the haze's
    density and depth drawn as ``odcr synth`` draws them, its airlight one of ``airlights`` (the
    teacher's on the hazy photos; ``cfg``'s range when there are none) moved by AIRLIGHT_JITTER,
    and t floored where the model's t is."""
    params = sample_params(rng, cfg)
    airlight = np.asarray(params.airlight, np.float32)
    if airlights:
        airlight = airlights[int(rng.integers(len(airlights)))] + rng.normal(0.0, AIRLIGHT_JITTER, 3)
    airlight = np.clip(airlight, 0.0, 1.0).astype(np.float32)
    hazy, t = scatter(clear, plausible_depth(clear, params, rng, cfg.variation), params.beta, airlight)
    return {"img": hazy.astype(np.float16), "t": np.maximum(t, t_min).astype(np.float16), "A": airlight}


class DistillState:
    """The student, its optimiser, schedule and weight average: the interface of
    :class:`~odcr_cli.tasks.train.state.TrainingState` that the loop uses."""

    def __init__(self, config: TrainConfig, distill: DistillConfig, generator: GeneratorConfig,
                 entries: list[dict], teacher: dict, device: torch.device,
                 start: dict[str, torch.Tensor] | None = None) -> None:
        self.config, self.distill, self.entries, self.teacher, self.device = config, distill, entries, teacher, device
        self.dist = Distributed()
        torch.manual_seed(config.seed)
        self.model = init_weights(ResnetGenerator(generator)).to(device)
        if start is not None:  # --init: the student starts as that model
            self.model.load_state_dict(start)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: lr_factor(it, config.iters, config.decay_fraction))
        self.ema = WeightAverage(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.iteration, self.last_lr = 0, config.lr
        self._bad = 0

    @property
    def output_generator(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def check_finite(self) -> None:
        if self._bad:
            from odcr_cli.errors import TrainingDiverged

            raise TrainingDiverged(f"non-finite loss at iteration {self._bad}")

    def generator_metadata(self) -> dict[str, str]:
        t = self.teacher
        return {"method": "distillation", "iteration": str(self.iteration),
                "weights": f"EMA of the student's weights, decay {self.ema.decay}" if self.ema else "raw weights",
                "teacher": f"{t['model']} (sha256 {t['sha256'][:12]}, at {t['side']} px)",
                "training_data": self.config.training_data or f"distilled on {','.join(self.config.hazy + self.config.clear)}"}

    def state_dict(self) -> dict:
        state = {"format": "odcr-distill-checkpoint", "odcr_version": __version__, "iteration": self.iteration,
                 "train_config": self.config.to_dict(), "distill": self.distill.to_dict(),
                 "generator_config": self.model.config.to_dict(), "teacher": self.teacher,
                 "generator": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "rng": {"torch": torch.get_rng_state()}}
        if self.ema is not None:
            state["generator_ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and "generator_ema" in state:
            self.ema.load_state_dict(state["generator_ema"])
        self.iteration = int(state["iteration"])
        torch.set_rng_state(state["rng"]["torch"])


def photo_at_side(iteration: int, state: DistillState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step ``iteration``'s photo (a pure function of the seed and the iteration): (the photo at a
    side drawn from ``sides`` (h, w, 3), the teacher's t carried there (h, w), its airlight)."""
    rng = np.random.default_rng([state.config.seed, 6, iteration])
    entry = state.entries[int(rng.integers(len(state.entries)))]
    side = int(rng.choice(state.distill.sides))
    img, target = entry["img"].astype(np.float32), entry["t"].astype(np.float32)
    if rng.random() < 0.5:
        img, target = img[:, ::-1].copy(), target[:, ::-1].copy()
    small = shrink_to(img, side)
    h, w = small.shape[:2]
    if (h, w) != target.shape:
        target = cv2.resize(target, (w, h), interpolation=cv2.INTER_AREA)
    return small, target, entry["A"]


def distill_step(state: DistillState, batch: tuple) -> dict[str, torch.Tensor]:
    """One photo: the student's t (its prior is the DCP t of its own input, framed as odcr dehaze
    frames it) against the teacher's, |t - t_teacher| + |J - J_teacher|."""
    small, target, airlight = batch
    t_min = state.model.config.t_min
    t_dcp, _ = dcp_transmission(small)  # the readout's prior of the student's own input
    t_prior = torch.from_numpy(t_dcp.astype(np.float32))[None, None].to(state.device)
    # the student's outputs on its input framed as odcr dehaze frames it, with gradients
    raw = pipeline.network_outputs(
        lambda x: state.model.raw_outputs(torch.from_numpy(np.ascontiguousarray(x)).to(state.device)), small)
    t = transmission_from_residual(raw["t_residual"], t_prior, t_min)
    photo = torch.from_numpy(small.transpose(2, 0, 1).copy())[None].to(state.device)
    loss_t, loss_j = losses.distillation_loss(t, torch.from_numpy(target)[None, None].to(state.device), photo,
                                              torch.from_numpy(np.asarray(airlight)).view(1, 3, 1, 1).to(state.device))
    total = loss_t + loss_j
    if not torch.isfinite(total.detach()):
        state._bad = state._bad or state.iteration + 1
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update(state.model)
    state.last_lr = state.optimizer.param_groups[0]["lr"]
    state.scheduler.step()
    state.iteration += 1
    return {"t": loss_t.detach(), "J": loss_j.detach(), "total": total.detach()}


def distill(config: TrainConfig, settings: DistillConfig, resume: bool = False,
            callbacks: TrainCallbacks | None = None, explicit: frozenset[str] = frozenset()) -> TrainResult:
    """Run a distillation in ``config.out``, or resume one: the run keeps its own settings, except
    where to stop this time (``until``, ``max_minutes``, the ``device``) and the ``iters`` and
    reporting settings named in ``explicit``."""
    cb = callbacks or TrainCallbacks()
    started = time.perf_counter()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one photo a step: nothing to share between ranks
        raise TrainingError("odcr distill runs in one process; start it without torchrun")
    folder, say = RunFolder(Path(config.out)), cb.on_message
    check_options(config)
    if settings.truth and not (settings.synthetic and config.clear) and not resume:
        raise TrainingError("--truth fits synthetic haze made from clear photos: give --clear (and keep --synthetic)")
    checkpoint = folder.state_to_resume(resume, say)
    if checkpoint is not None:
        if checkpoint.get("format") != "odcr-distill-checkpoint":
            raise TrainingError(f"--resume: {config.out} holds an odcr train run, not a distillation")
        own = TrainConfig.from_dict(checkpoint["train_config"])
        changed = {n: getattr(config, n) for n in MAY_CHANGE_ON_RESUME if n in explicit or n in PER_INVOCATION}
        config = replace(own, **changed)
        settings = DistillConfig.from_dict(checkpoint["distill"])
    cache_path = folder.path / CACHE
    if cache_path.is_file():
        cached = torch.load(cache_path, weights_only=False)  # our own file, written below
    else:
        hazy, _ = _gather(config.hazy)
        clear, _ = _gather(config.clear)
        cached = teacher_targets(settings, hazy, clear, config.seed, say)
        folder.path.mkdir(parents=True, exist_ok=True)
        from odcr_cli.files.fsutil import atomic_output

        with atomic_output(cache_path) as fh:
            torch.save(cached, fh)
    teacher = cached["teacher"]
    t_min = float(teacher.get("t_min", GeneratorConfig().t_min))  # the teacher's floor of t
    student = GeneratorConfig(ngf=settings.ngf, n_blocks=settings.n_blocks, output="scattering", t_prior="dcp",
                              t_min=t_min, inference_side=settings.side)
    init = None
    if checkpoint is not None:
        student = GeneratorConfig.from_dict(checkpoint["generator_config"])
    elif settings.init:
        init = _initial_student(settings.init)
        student = init.config
    state = DistillState(config, settings, student, cached["entries"], teacher, resolve_device(config.device),
                         start=init.state_dict if init is not None else None)
    if checkpoint is not None:
        state.load_state_dict(checkpoint)
        say(f"resumed from iteration {state.iteration}")
    elif init is not None:
        say(f"the student starts as {init.source} ({init.config.ngf} wide, {init.config.n_blocks} blocks, "
            f"run at {init.config.inference_side or MODEL_SIDE} px)")
    folder.write_config({"train": config.to_dict(), "distill": settings.to_dict(), "generator": student.to_dict(),
                         "teacher": teacher, "odcr_version": __version__, "device": str(state.device),
                         "torch": torch.__version__, **({"init_weights": init.record()} if init else {})})
    folder.update_report(say)

    def batches(iteration: int) -> tuple:
        return photo_at_side(iteration, state)

    return run_iterations(state, folder, batches, torch.zeros(0), cb, say, started, step=distill_step)


def _initial_student(spec: str) -> InitialWeights:
    """--init's model as the student's start: a scattering model refining the dark-channel prior's
    t, as the distillation's step reads it; a one-line TrainingError otherwise."""
    init = load_initial_weights(spec)
    if init.config.output != "scattering" or init.config.t_prior != "dcp":
        raise TrainingError(f"--init {spec}: a student starts from a scattering model that refines the "
                            f"dark-channel prior's t (as the bundled default does); this one's output is "
                            f"{init.config.output}, its prior {init.config.t_prior}")
    return init


def _gather(paths: tuple[str, ...]) -> tuple[list[Path], int]:
    try:
        return gather_images(paths)
    except FileNotFoundError as exc:
        raise TrainingError(str(exc)) from None
