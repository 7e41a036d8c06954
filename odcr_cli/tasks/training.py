"""The training loop of ``odcr train``: optimisers, schedule, checkpoints, logs and samples.

Layout of a run folder::

    RUN_DIR/config.json                      effective configuration (updated on resume)
    RUN_DIR/log.jsonl                        every loss term, learning rate and speed
    RUN_DIR/samples/iter_XXXXXXXX.jpg        input | output grid of a fixed set of hazy crops
    RUN_DIR/checkpoints/ckpt_XXXXXXXX.pt     full training state (the last K are kept)
    RUN_DIR/checkpoints/generator_XXXXXXXX.safetensors
    RUN_DIR/generator.safetensors            generator of the newest checkpoint, for dehaze/export
    RUN_DIR/report.html                      curves, samples and configuration (rewritten at every checkpoint)

The generator files, samples and validation use an exponential moving average (EMA) of the
generator's weights when ``ema_decay > 0`` (the default): a GAN's raw weights swing from one
checkpoint to the next, the average does not. The EMA only reads the weights, so training
itself is the same with or without it; checkpoints hold both.

Multi-GPU: under ``torchrun`` (WORLD_SIZE > 1) every rank trains on its own deterministic
slice of samples and gradients are averaged across ranks before each optimiser step
(synchronous data parallelism, like DDP); rank 0 writes the files.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn

from odcr_cli import __version__
from odcr_cli.core.methods import ContrastiveModel, MethodConfig
from odcr_cli.core.network_input import to_unit
from odcr_cli.core.networks import GeneratorConfig
from odcr_cli.core.stiefel import StiefelSGD
from odcr_cli.tasks.training_data import PREPROCESS, CropSpec, ImageFolder, UnpairedSampler, gather_images, to_tensor
from odcr_cli.files.fsutil import atomic_output
from odcr_cli.files.weights_io import save_generator
from odcr_cli.errors import InferenceError, TrainingDiverged, TrainingError

CKPT_RE = re.compile(r"ckpt_(\d{8})\.pt$")


@dataclass(frozen=True)
class TrainConfig:
    """Everything of a run except the method's loss settings (see MethodConfig)."""

    hazy: tuple[str, ...]              # files/folders; a single str is accepted
    clear: tuple[str, ...]
    out: str
    iters: int = 1000
    decay_fraction: float = 0.5        # CUT's shape: constant LR, then linear decay to zero
    crop: int = 256
    load_size: int | None = None       # default: crop * 286 / 256 (CUT's 286 for 256)
    preprocess: str = "scale_shortside_crop"
    batch: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    stiefel_lr: float | None = None    # step size gamma of the Stiefel update; default = lr
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                  # auto (bf16 on CUDA) | bf16 | off
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    sample_every: int = 500
    num_samples: int = 4
    val_hazy: str | None = None
    val_gt: str | None = None
    val_every: int = 1000
    until: int | None = None           # stop after this iteration (the schedule still spans iters)
    training_data: str = ""            # free text recorded in the generator's metadata
    exclude_clear: tuple[str, ...] = ()  # lists of clear files to leave out (odcr synth's sources.txt)
    ema_decay: float = 0.999           # EMA of the generator's weights for the saved model; 0 = raw weights
    max_minutes: float | None = None   # wall-clock limit of this invocation; stops with a checkpoint

    def __post_init__(self) -> None:
        for name in ("hazy", "clear", "exclude_clear"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(str(v) for v in value))

    @property
    def effective_load_size(self) -> int:
        return self.load_size or round(self.crop * 286 / 256)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def lr_factor(iteration: int, total: int, decay_fraction: float) -> float:
    """CUT's linear policy over iterations: 1 for the first part, then linear decay towards 0."""
    n_decay = max(1, round(total * decay_fraction))
    n_const = total - n_decay
    return 1.0 - max(0, iteration + 1 - n_const) / (n_decay + 1)


def resolve_device(spec: str) -> torch.device:
    """``auto|cpu|cuda[:i]|mps`` (dehaze's rules); under torchrun ``auto``/``cuda`` mean this rank's GPU."""
    from odcr_cli.engine.torch_backend import resolve_torch_device

    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and spec in ("auto", "cuda") and torch.cuda.is_available():
        spec = f"cuda:{local_rank}"
    try:
        return torch.device(resolve_torch_device(spec))
    except InferenceError as exc:
        raise TrainingError(str(exc)) from None


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()

    def any_rank(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if ``flag`` is true on any (so that all ranks stop together)."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast_(self, module: nn.Module) -> None:
        if self.world == 1:
            return
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)

    def in_sync(self, module: nn.Module) -> bool:
        """Do all ranks hold identical weights? (a cheap checksum gathered from every rank)"""
        if self.world == 1:
            return True
        with torch.no_grad():
            s = torch.stack([torch.cat([p.detach().double().reshape(-1) for p in module.parameters()]).sum(),
                             torch.cat([p.detach().double().reshape(-1).abs() for p in module.parameters()]).sum()])
        gathered = [torch.zeros_like(s) for _ in range(self.world)]
        dist.all_gather(gathered, s)
        return all(torch.equal(g, gathered[0]) for g in gathered)


class WeightAverage:
    """Exponential moving average of a module's parameters (buffers are copied).

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so that early
    weights, far from the current ones, do not linger."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay: expected a number in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(module).requires_grad_(False).eval()
        self.updates = 0

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.module.parameters(), source.parameters()):
            avg.lerp_(p.detach().to(avg.dtype), 1.0 - d)
        for avg, b in zip(self.module.buffers(), source.buffers()):
            avg.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


class Trainer:
    """Models, optimisers and schedules of one run; ``step`` performs one training iteration."""

    def __init__(self, config: TrainConfig, method: MethodConfig, generator: GeneratorConfig,
                 device: torch.device, dist_ctx: Distributed | None = None) -> None:
        self.config, self.method, self.device = config, method, device
        self.dist = dist_ctx or Distributed()
        torch.manual_seed(config.seed)
        self.model = ContrastiveModel(method, generator).to(device)
        self.dist.broadcast_(self.model)
        if device.type == "cuda":
            self.model.generator.to(memory_format=torch.channels_last)
            self.model.discriminator.to(memory_format=torch.channels_last)
        betas = (config.beta1, config.beta2)
        m = self.model
        self.opt_g = torch.optim.Adam(m.generator.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(m.discriminator.parameters(), lr=config.lr, betas=betas)
        self.opt_f = torch.optim.Adam(m.head_euclidean_parameters(), lr=config.lr, betas=betas)
        stiefel = m.head.stiefel_parameters()
        self.opt_s = StiefelSGD(stiefel, lr=config.stiefel_lr or config.lr) if stiefel else None
        factor = lambda it: lr_factor(it, config.iters, config.decay_fraction)  # noqa: E731
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in self.optimizers]
        self.ema = WeightAverage(m.generator, config.ema_decay) if config.ema_decay > 0 else None
        self.iteration = 0
        self.last_lr = config.lr
        # On a GPU, reading a loss back every step stalls the queue of kernels; there the losses
        # are checked on the device and read at the loop's sync points (check_finite).
        self.defer_finite_checks = device.type == "cuda"
        self._first_bad = torch.zeros((), dtype=torch.long, device=device)  # 0: all finite so far
        amp = config.amp if config.amp != "auto" else ("bf16" if device.type == "cuda" else "off")
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16"
                         else nullcontext())

    @property
    def output_generator(self) -> nn.Module:
        """The generator to save, sample and validate: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model.generator

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.opt_g, self.opt_d, self.opt_f, self.opt_s) if o is not None]

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def step(self, hazy: torch.Tensor, clear: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration: D step, then G + head (+ classifiers, + Stiefel) step. Returns the losses."""
        m, it = self.model, self.iteration
        rng = np.random.default_rng([self.config.seed, 3, it, self.dist.rank])
        hazy, clear = self._to_device(hazy), self._to_device(clear)
        flip = m.method.flip_equivariance and bool(rng.random() < 0.5)

        with self.autocast:
            state = m.translate(hazy, clear, flip)
        # discriminator
        m.discriminator.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast:
            loss_d = m.discriminator_loss(clear, state["fake"])
        self._note_finite(loss_d, it)
        loss_d.backward()
        self.dist.average_gradients(m.discriminator.parameters())
        self.opt_d.step()
        # generator, head, classifiers
        m.discriminator.requires_grad_(False)
        for o in (self.opt_g, self.opt_f, self.opt_s):
            if o is not None:
                o.zero_grad(set_to_none=True)
        with self.autocast:
            out = m.generator_objective(hazy, clear, state, rng, flip, it)
        self._note_finite(out.total, it)
        out.total.backward()
        self.dist.average_gradients(list(m.generator.parameters()) + list(m.head.parameters())
                                    + (list(m.classifiers.parameters()) if m.classifiers is not None else []))
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(m.generator)
        self.opt_f.step()
        if self.opt_s is not None:
            self.opt_s.step()  # float64 polar retraction, outside autocast
        self.last_lr = self.opt_g.param_groups[0]["lr"]  # the rate this iteration used
        for s in self.schedulers:
            s.step()
        self.iteration += 1
        terms = {f"G_{k}": v.detach() for k, v in out.terms.items()}
        terms["G_total"] = out.total.detach()
        terms["D"] = loss_d.detach()
        return terms

    def _note_finite(self, loss: torch.Tensor, iteration: int) -> None:
        bad = ~torch.isfinite(loss.detach())
        self._first_bad = torch.where(bad & (self._first_bad == 0), iteration + 1, self._first_bad)
        if not self.defer_finite_checks:
            self.check_finite()

    def check_finite(self) -> None:
        """Raise TrainingDiverged if any loss since the start was NaN or infinite."""
        first = int(self._first_bad)
        if first:
            raise TrainingDiverged(f"non-finite loss at iteration {first}")

    def state_dict(self) -> dict:
        m = self.model
        state = {
            "format": "odcr-checkpoint", "odcr_version": __version__, "iteration": self.iteration,
            "method": m.method.to_dict(), "generator_config": m.generator.config.to_dict(),
            "train_config": self.config.to_dict(),
            "generator": m.generator.state_dict(), "discriminator": m.discriminator.state_dict(),
            "head": m.head.state_dict(),
            "classifiers": m.classifiers.state_dict() if m.classifiers is not None else {},
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "rng": {"torch": torch.get_rng_state()},
        }
        if self.ema is not None:
            state["generator_ema"] = self.ema.state_dict()
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        m = self.model
        m.generator.load_state_dict(state["generator"])
        m.discriminator.load_state_dict(state["discriminator"])
        m.head.load_state_dict(state["head"])
        if m.classifiers is not None:
            m.classifiers.load_state_dict(state["classifiers"])
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            sch.load_state_dict(s)
        self.iteration = int(state["iteration"])
        if self.ema is not None:
            if "generator_ema" in state:
                self.ema.load_state_dict(state["generator_ema"])
            else:  # a run started without EMA: the average starts from the current weights
                self.ema.module.load_state_dict(state["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])


# --- run folder -----------------------------------------------------------------------------------

def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_RE.search(p.name))]
    return sorted(found)


def load_latest_checkpoint(run_dir: Path, warn: Callable[[str], None]) -> dict | None:
    """Newest checkpoint that loads; a damaged newest one is reported and skipped."""
    for it, path in reversed(list_checkpoints(run_dir)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: fall back to the previous one
            warn(f"checkpoint {path.name} is unreadable ({type(exc).__name__}); trying an older one")
    return None


def _save_checkpoint(trainer: Trainer, run_dir: Path, keep: int) -> Path:
    it = trainer.iteration
    folder = run_dir / "checkpoints"
    ckpt = folder / f"ckpt_{it:08d}.pt"
    with atomic_output(ckpt) as fh:
        torch.save(trainer.state_dict(), fh)
    ema = trainer.ema
    meta = {"method": trainer.method.name, "iteration": str(it),
            "weights": f"EMA of the generator's weights, decay {ema.decay}" if ema else "raw generator weights",
            "training_data": trainer.config.training_data or f"hazy={','.join(trainer.config.hazy)}; clear={','.join(trainer.config.clear)}"}
    save_generator(folder / f"generator_{it:08d}.safetensors", trainer.output_generator, meta)
    save_generator(run_dir / "generator.safetensors", trainer.output_generator, meta)
    for old_it, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
        (folder / f"generator_{old_it:08d}.safetensors").unlink(missing_ok=True)
    return ckpt


def _save_samples(trainer: Trainer, fixed: torch.Tensor, path: Path) -> None:
    g = trainer.output_generator
    with torch.no_grad():
        out = g(trainer._to_device(fixed)).float().cpu()
    rows = torch.cat([fixed, out], dim=3)  # (N, 3, H, 2W): input | output
    grid = torch.cat(list(rows), dim=1)    # (3, N*H, 2W)
    arr = (to_unit(grid.clamp(-1, 1)) * 255.0).round().byte().permute(1, 2, 0).numpy()
    with atomic_output(path) as fh:
        Image.fromarray(arr).save(fh, format="JPEG", quality=90)


@dataclass
class TrainCallbacks:
    """How the loop reports; the CLI plugs a rich progress bar in here."""

    on_start: Callable[[int, int], None] = lambda start, total: None
    on_iteration: Callable[[int, dict[str, float]], None] = lambda it, terms: None
    on_message: Callable[[str], None] = lambda msg: None


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    seconds_per_iter: float
    last_checkpoint: Path | None
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    validation: dict[str, float] | None = None


def _init_distributed() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size())


def train(config: TrainConfig, method: MethodConfig, generator: GeneratorConfig,
          resume: bool = False, callbacks: TrainCallbacks | None = None) -> TrainResult:
    """Run (or resume) a training run in ``config.out``."""
    cb = callbacks or TrainCallbacks()
    dctx = _init_distributed()
    try:
        result = _train(config, method, generator, resume, cb, dctx)
        if dctx.world > 1:
            dist.barrier()  # leave together: a rank tearing down early can abort its peer
        return result
    finally:
        if dctx.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, method: MethodConfig, generator: GeneratorConfig, resume: bool,
           cb: TrainCallbacks, dctx: Distributed) -> TrainResult:
    started = time.perf_counter()
    run_dir = Path(config.out)
    say = cb.on_message if dctx.is_main else (lambda msg: None)
    if config.preprocess not in PREPROCESS:
        raise TrainingError(f"unknown --preprocess {config.preprocess!r}")
    if config.iters < 1 or config.batch < 1 or config.crop < 16 or config.crop % 4:
        raise TrainingError("--iters and --batch must be >= 1 and --crop a multiple of 4, at least 16")

    state = None
    if resume:
        state = load_latest_checkpoint(run_dir, say)
        if state is None:
            raise TrainingError(f"--resume: no readable checkpoint in {run_dir / 'checkpoints'}")
        method = MethodConfig.from_dict(state["method"])
        generator = GeneratorConfig.from_dict(state["generator_config"])
    elif list_checkpoints(run_dir):
        raise TrainingError(f"{run_dir} already holds a run; use --resume to continue it or choose another --out")

    if generator.output != "scattering" and (method.lambda_dcp or method.lambda_tv):
        raise TrainingError("the transmission priors (--lambda-dcp, --lambda-tv) need --output scattering")
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # training crops have one fixed size
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
    skip = lambda p, why: say(f"skipped unreadable image {p}: {why}")  # noqa: E731
    hazy, clear = ImageFolder(hazy_files, spec, skip), ImageFolder(clear_files, spec, skip)
    try:
        sampler = UnpairedSampler(hazy, clear, config.seed)
    except ValueError as exc:
        raise TrainingError(f"{exc} (hazy: {', '.join(config.hazy)}; clear: {', '.join(config.clear)})") from None
    if len(hazy) == 1:
        say("one hazy image: single-image translation, negatives drawn from that image")

    trainer = Trainer(config, method, generator, device, dctx)
    if state is not None:
        trainer.load_state_dict(state)
        say(f"resumed from iteration {trainer.iteration}")
        del state
    stop = min(config.until or config.iters, config.iters)

    if dctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        effective = {"train": config.to_dict(), "method": method.to_dict(), "generator": generator.to_dict(),
                     "odcr_version": __version__, "device": str(device), "world_size": dctx.world,
                     "torch": torch.__version__}
        with atomic_output(run_dir / "config.json", "w") as fh:
            json.dump(effective, fh, indent=2)
        _update_report(run_dir, say)
    fixed = torch.stack([_center_crop(im, config.crop) for im in hazy.images[: config.num_samples]])

    cb.on_start(trainer.iteration, stop) if dctx.is_main else None
    existing = list_checkpoints(run_dir)
    last_ckpt = existing[-1][1] if existing else None
    t0, it0 = time.perf_counter(), trainer.iteration
    validation = None
    log_path = run_dir / "log.jsonl"
    while trainer.iteration < stop:
        it = trainer.iteration
        a, b = sampler.batch((it * dctx.world + dctx.rank) * config.batch, config.batch)
        done = it + 1
        out_of_time = config.max_minutes is not None and time.perf_counter() - started > config.max_minutes * 60
        if config.max_minutes is not None and dctx.any_rank(out_of_time, device) and done < stop:
            stop = done
            say(f"--max-minutes {config.max_minutes:g} reached: stopping after iteration {done} of "
                f"{config.iters} (continue with --resume)")
        log_now = done % config.log_every == 0 or done == stop
        checkpoint_now = done % config.checkpoint_every == 0 or done == stop
        sample_now = (done % config.sample_every == 0 or done == stop) and len(fixed) > 0
        validate_now = bool(config.val_hazy and config.val_gt) and (done % config.val_every == 0 or done == stop)
        try:
            terms = trainer.step(a, b)
            if log_now or checkpoint_now or sample_now or validate_now:  # the points that read the GPU
                trainer.check_finite()
        except TrainingDiverged as exc:
            where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
            raise TrainingDiverged(f"{exc}; {where}") from None
        if dctx.is_main and log_now:
            values = {k: float(v) for k, v in terms.items()}
            elapsed = time.perf_counter() - t0
            record = {"iter": done, "lr": trainer.last_lr,
                      "sec_per_iter": elapsed / max(1, done - it0), **values}
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            cb.on_iteration(done, values)
        elif dctx.is_main:
            cb.on_iteration(done, {})
        if checkpoint_now:
            synced = dctx.in_sync(trainer.model)
            if dctx.is_main:
                last_ckpt = _save_checkpoint(trainer, run_dir, config.keep_checkpoints)
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"iter": done, "checkpoint": last_ckpt.name,
                                         "world_size": dctx.world, "ranks_in_sync": synced}) + "\n")
            if not synced:
                raise TrainingError(f"ranks disagree on the weights at iteration {done}")
        if dctx.is_main and sample_now:
            _save_samples(trainer, fixed, run_dir / "samples" / f"iter_{done:08d}.jpg")
        if dctx.is_main and validate_now:
            validation = _validate(trainer, config)
            with open(log_path, "a") as fh:
                fh.write(json.dumps({"iter": done, "val": validation}) + "\n")
            say(f"validation at {done}: PSNR {validation['psnr']:.2f} dB, SSIM {validation['ssim']:.4f}")
        if dctx.is_main and checkpoint_now:  # after this iteration's samples and validation
            _update_report(run_dir, say)

    spi = (time.perf_counter() - t0) / max(1, trainer.iteration - it0)
    return TrainResult(run_dir, trainer.iteration, spi, last_ckpt,
                       [(str(p), w) for p, w in hazy.skipped + clear.skipped], validation)


def _update_report(run_dir: Path, say: Callable[[str], None]) -> None:
    """Rewrite RUN/report.html; a page that cannot be written is reported and never stops training."""
    from odcr_cli.tasks.report import write_training_report

    try:
        write_training_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - a report bug must not cost a long GPU run
        say(f"warning: {run_dir / 'report.html'} not updated: {type(exc).__name__}: {exc}")


def _center_crop(im: Image.Image, size: int) -> torch.Tensor:
    w, h = im.size
    x, y = (w - size) // 2, (h - size) // 2
    return to_tensor(im.crop((x, y, x + size, y + size)))


def _validate(trainer: Trainer, config: TrainConfig) -> dict[str, float]:
    """Mean PSNR/SSIM of the current generator on a paired folder (evaluate's conventions)."""
    from odcr_cli.tasks.evaluation import evaluate_generator_on_pairs

    g = trainer.output_generator
    was_training = g.training
    try:
        return evaluate_generator_on_pairs(g.eval(), Path(config.val_hazy), Path(config.val_gt))
    finally:
        g.train(was_training)
