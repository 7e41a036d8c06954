"""The settings of a training run: :class:`TrainConfig` (everything but the method's losses and
the generator's shape), the checks of its values, and what a resumed run may change.

Torch- and numpy-free: the command line builds its flags from these fields whenever it starts.
A run keeps the settings it was started with: ``--resume`` reads them back from the checkpoint,
applies the changes that may differ between invocations (its budget, files and reporting) and
refuses any other, naming the flag.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

from odcr_cli.core.configs import GeneratorConfig, MethodConfig, check_synth_beta, flag
from odcr_cli.errors import TrainingError

PREPROCESS = ("scale_shortside_crop", "resize_crop", "crop")


@dataclass(frozen=True)
class TrainConfig:
    """Everything of a run except the method's loss settings and the generator's shape (see
    :mod:`odcr_cli.core.configs`). The fields with a help text are flags of ``odcr train``.
    A run's settings come from a recipe (:func:`odcr_cli.tasks.train.recipe.configs`, as the
    command builds them); the defaults here are what no recipe sets, and CUT's."""

    hazy: tuple[str, ...] = flag(help="Folder (or one file) of hazy photos; repeatable.", path=True)  # or one str
    clear: tuple[str, ...] = flag(help="Folder of clear (haze-free) photos, unpaired; repeatable.", path=True)
    out: str = flag(help="Run folder: checkpoints, generator, log, samples.", path=True)
    iters: int = flag(1000, help="Total iteration budget (the LR schedule spans it).")
    # CUT's shape: constant LR, then linear decay to zero
    decay_fraction: float = flag(0.5, help="Final fraction of iterations with linear LR decay.")
    crop: int = flag(256, help="Training crop size (multiple of 4).")
    # CUT's 286 for a 256 crop
    load_size: int | None = flag(None, help="Scale before cropping (0: crop*286/256).")
    preprocess: str = flag("scale_shortside_crop", help="scale_shortside_crop | resize_crop (CUT, square) | crop (native).")
    batch: int = flag(1, help="Images per iteration and per GPU (CUT: 1 works best).")
    lr: float = flag(2e-4, help="Adam learning rate of the generator, discriminator and head.")
    beta1: float = flag(0.5, help="Adam beta1 (CUT: 0.5).")
    beta2: float = flag(0.999, help="Adam beta2.")
    stiefel_lr: float | None = flag(None, help="Stiefel step size gamma (default: --lr).")
    seed: int = flag(0, help="Seed of the weights, the data order, the crops and the patches (same seed, same run).")
    device: str = flag("auto", help="auto | cpu | cuda[:i] | mps.")
    amp: str = flag("auto", help="auto (bf16 on CUDA) | bf16 | off.")
    checkpoint_every: int = flag(500, help="Iterations between checkpoints (also written at the last iteration).")
    keep_checkpoints: int = flag(3, help="How many of the newest checkpoints to keep.")
    log_every: int = flag(10, help="Iterations between log lines (log.jsonl and the terminal).")
    sample_every: int = flag(500, help="Iterations between sample grids in the run folder.")
    num_samples: int = 4
    val_hazy: str | None = flag(None, help="Paired validation: hazy folder.", path=True)
    val_gt: str | None = flag(None, help="Paired validation: ground-truth folder.", path=True)
    val_every: int = flag(1000, help="Iterations between paired validations (with --val-hazy/--val-gt).")
    until: int | None = flag(None, help="Stop after this iteration (schedule still spans --iters).")
    training_data: str = flag("", help="Description stored in the weights' metadata.")
    exclude_clear: tuple[str, ...] = flag((), help="Text file of clear photos to leave out (e.g. odcr synth's "
                                                   "sources.txt); repeatable.", path=True)
    # 0: the raw weights are saved; the average never changes training itself
    ema_decay: float = flag(0.999, help="Save an EMA of the generator's weights (0 = the raw weights).",
                            min=0.0, max=0.99999)
    # this invocation's limit, not the run's: a resumed run counts afresh
    max_minutes: float | None = flag(None, help="Stop, with a checkpoint, after this much wall-clock time (resumable).",
                                     min=0.0)
    # a fine-tune's critics (discriminator, projection head, classifiers) start afresh: left alone,
    # their first, random answers would move a trained generator
    critic_warmup: int = flag(0, help="First iterations in which only the critics (discriminator, projection head, "
                                      "classifiers) learn and the generator is held.", min=0)
    # odcr train --init: the model a fine-tune started from (a bundled name or an absolute path)
    init: str | None = None

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


@dataclass(frozen=True)
class DistillConfig:
    """What ``odcr distill`` (:mod:`~odcr_cli.tasks.train.distill`) adds to a run's TrainConfig (its data, schedule and files); the fields
    with a help text are its flags."""

    teacher: str = flag("odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema",
                        help="The scattering model to distil: a bundled model's name, a .safetensors file or a run folder.")
    ngf: int = flag(16, help="The student's width.")
    n_blocks: int = flag(6, help="The student's residual blocks.")
    sides: tuple[int, ...] = flag((256, 320, 384), help="Sides the student is fitted at, one drawn per step "
                                                         "(the teacher's t is carried to it).")
    side: int = flag(320, help="The side the student runs at in odcr dehaze (recorded in its weights).", min=64)
    synthetic: bool = flag(True, help="Also fit a synthetic hazy copy of each clear photo.")
    # a fine-tune to the user's own haze (docs/scattering.md, "Your own dehazer"): the student starts
    # as this model, and the synthetic copies teach it the truth of a haze like the user's
    init: str = flag("", help="Start the student from this model (a bundled name, a weights file or a run "
                              "folder), not afresh: its shape and side are kept (--ngf, --n-blocks and --side "
                              "are not used), it is the teacher unless --teacher is given, and the schedule "
                              "is a fine-tune's where not typed (odcr_cli/tasks/train/recipes/adapt.toml). "
                              "With --truth: your own dehazer.")
    truth: bool = flag(False, help="Fit the synthetic hazy copies to their own true t and airlight, not to the "
                                   "teacher's answer: the haze drawn in the airlights of the hazy photos (as the "
                                   "teacher estimates them) and --synth-beta dense.")
    synth_beta: tuple[float, ...] = flag((0.5, 3.0), help="With --truth: range LO,HI of the synthetic haze's "
                                                          "scattering coefficient beta (t at the far end: exp(-beta)).")
    copies: int = flag(1, help="Synthetic hazy copies of each clear photo.", min=1)

    def __post_init__(self) -> None:
        if not self.sides or min(self.sides) < 64:
            raise TrainingError(f"--sides: expected sides of 64 px or more, got {','.join(map(str, self.sides))}")
        try:
            check_synth_beta(self.synth_beta)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None

    def to_dict(self) -> dict:
        return {**asdict(self), "sides": list(self.sides), "synth_beta": list(self.synth_beta)}

    @classmethod
    def from_dict(cls, values: dict) -> "DistillConfig":
        kept = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        for name in ("sides", "synth_beta"):
            if name in kept:
                kept[name] = tuple(kept[name])
        return cls(**kept)


def check_options(config: TrainConfig) -> None:
    """The values no layer below checks, as one-line TrainingErrors naming the flag."""
    from odcr_cli.haze.constants import MIN_SIDE, SIZE_MULTIPLE

    if config.preprocess not in PREPROCESS:
        raise TrainingError(f"unknown --preprocess {config.preprocess!r}")
    for flag, value in (("--iters", config.iters), ("--batch", config.batch)):  # the one that is wrong, by name
        if value < 1:
            raise TrainingError(f"{flag} {value}: must be at least 1")
    if config.crop < MIN_SIDE or config.crop % SIZE_MULTIPLE:
        raise TrainingError(f"--crop {config.crop}: must be a multiple of {SIZE_MULTIPLE}, at least {MIN_SIDE}")


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
