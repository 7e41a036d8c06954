"""What a training run is made of, without any files: its models, optimisers, schedules and
weight average (:class:`TrainingState`, built here and written to and read from checkpoints),
the learning-rate schedule and the ranks of a multi-GPU run. The iterations that move them are
:func:`odcr_cli.tasks.train.training.train_step` and :func:`odcr_cli.tasks.train.training.run_iterations`.

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
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from odcr_cli import __version__
from odcr_cli.core.configs import MethodConfig
from odcr_cli.core.configs import GeneratorConfig
from odcr_cli.core.methods import ContrastiveModel
from odcr_cli.haze.network_input import to_unit
from odcr_cli.core.stiefel import StiefelSGD
from odcr_cli.errors import InferenceError, TrainingDiverged, TrainingError
from odcr_cli.tasks.train.settings import TrainConfig


def lr_factor(iteration: int, total: int, decay_fraction: float) -> float:
    """CUT's linear policy over iterations: 1 for the first part, then linear decay towards 0."""
    n_decay = max(1, round(total * decay_fraction))
    n_const = total - n_decay
    return 1.0 - max(0, iteration + 1 - n_const) / (n_decay + 1)


def resolve_device(spec: str) -> torch.device:
    """``auto|cpu|cuda[:i]|mps`` (dehaze's words and rules); under torchrun ``auto``/``cuda`` mean this rank's GPU."""
    from odcr_cli.engine.options import Device
    from odcr_cli.engine.torch_backend import resolve_torch_device

    try:
        device = Device.parse(spec)
        local_rank = os.environ.get("LOCAL_RANK")
        if local_rank is not None and device in (Device("auto"), Device("cuda")) and torch.cuda.is_available():
            device = Device("cuda", int(local_rank))
        if device.kind == "tensorrt":
            raise TrainingError("training runs on PyTorch: --device tensorrt is for odcr dehaze --backend onnx")
        return torch.device(resolve_torch_device(device))
    except InferenceError as exc:
        raise TrainingError(str(exc)) from None


@dataclass(frozen=True)
class Distributed:
    """This process's place among the ranks of a run (rank 0 of 1 without torchrun)."""

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
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce, not one per tensor
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


def init_distributed() -> Distributed:
    """This rank under torchrun (the process group is created here), else a single rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size())


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


class TrainingState:
    """Models, optimisers, schedules, weight average and iteration count of one run: what a
    checkpoint holds (:meth:`state_dict`), on its device. :func:`odcr_cli.tasks.train.training.train_step`
    moves it by one iteration."""

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

    def start_from(self, generator_state: dict[str, torch.Tensor]) -> None:
        """A fine-tune's first weights (odcr train --init): the generator's and its average's."""
        self.model.generator.load_state_dict(generator_state)
        if self.ema is not None:
            self.ema.module.load_state_dict(generator_state)
        self.dist.broadcast_(self.model.generator)

    @property
    def output_generator(self) -> nn.Module:
        """The generator to save, sample and validate: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model.generator

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.opt_g, self.opt_d, self.opt_f, self.opt_s) if o is not None]

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the run's device (channels-last on CUDA, as the models are)."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def note_finite(self, loss: torch.Tensor) -> None:
        """Remember the first iteration whose loss is NaN or infinite; raise at once unless the
        checks are deferred (on a GPU: :meth:`check_finite` reads the note at the loop's sync points)."""
        bad = ~torch.isfinite(loss.detach())
        self._first_bad = torch.where(bad & (self._first_bad == 0), self.iteration + 1, self._first_bad)
        if not self.defer_finite_checks:
            self.check_finite()

    def check_finite(self) -> None:
        """Raise TrainingDiverged if any loss since the start was NaN or infinite."""
        first = int(self._first_bad)
        if first:
            raise TrainingDiverged(f"non-finite loss at iteration {first}")

    def sample_grid(self, fixed: torch.Tensor) -> np.ndarray:
        """The output generator on ``fixed`` (N, 3, H, W) hazy crops in [-1, 1] -> an
        (N*H, 2W, 3) uint8 image whose rows are input | output."""
        with torch.no_grad():
            out = self.output_generator(self.to_device(fixed)).float().cpu()
        rows = torch.cat([fixed, out], dim=3)  # (N, 3, H, 2W): input | output
        grid = torch.cat(list(rows), dim=1)    # (3, N*H, 2W)
        return (to_unit(grid.clamp(-1, 1)) * 255.0).round().byte().permute(1, 2, 0).numpy()

    def generator_metadata(self) -> dict[str, str]:
        """What a saved generator file says about itself (safetensors metadata are strings)."""
        c, ema = self.config, self.ema
        return {"method": self.method.name, "iteration": str(self.iteration),
                "weights": f"EMA of the generator's weights, decay {ema.decay}" if ema else "raw generator weights",
                "training_data": c.training_data or f"hazy={','.join(c.hazy)}; clear={','.join(c.clear)}",
                **({"fine_tuned_from": c.init} if c.init else {})}

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
