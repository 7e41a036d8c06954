"""The settings of a training run: :class:`TrainConfig` (everything but the method's losses and
the generator's shape), the checks of its values, and what a resumed run may change.

A run keeps the settings it was started with: ``--resume`` reads them back from the checkpoint,
applies the changes that may differ between invocations (its budget, files and reporting) and
refuses any other, naming the flag.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

from odcr_cli.core.methods import MethodConfig
from odcr_cli.core.network_input import MIN_SIDE, SIZE_MULTIPLE
from odcr_cli.core.networks import GeneratorConfig
from odcr_cli.errors import TrainingError
from odcr_cli.tasks.training_data import PREPROCESS


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

    @property
    def stop(self) -> int:
        """The last iteration of this invocation: ``until`` when given, never past ``iters``."""
        return min(self.until or self.iters, self.iters)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def check_options(config: TrainConfig) -> None:
    """The values no layer below checks, as one-line TrainingErrors naming the flag."""
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


def resumed_config(config: TrainConfig, method: MethodConfig, generator: GeneratorConfig, state: dict,
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
