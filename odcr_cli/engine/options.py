"""The engine's options as types, parsed once at the boundary (the CLI and the ``Dehazer``
constructor) so that inner code never checks a string again."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, TypeVar, Union

from odcr_cli.haze.constants import MAX_STRENGTH, MIN_SIDE
from odcr_cli.errors import InferenceError


class _Choice(str, Enum):
    def __str__(self) -> str:  # f-strings and messages show the word the user typed
        return self.value


class Method(_Choice):
    """``odcr``: a learned generator; ``dcp``: the dark channel prior (no weights)."""

    ODCR = "odcr"
    DCP = "dcp"


class BackendChoice(_Choice):
    """``auto``: ONNX Runtime for a bundled model on the CPU, PyTorch everywhere else."""

    AUTO = "auto"
    TORCH = "torch"
    ONNX = "onnx"


E = TypeVar("E", bound=_Choice)


def parse_choice(kind: type[E], value: str | E, option: str) -> E:
    """``"odcr"`` -> ``Method.ODCR``; an unknown word is an InferenceError naming the choices."""
    try:
        return kind(value)
    except ValueError:
        words = [m.value for m in kind]
        raise InferenceError(f"unknown {option} {value!r}: use {', '.join(words[:-1])} or {words[-1]}") from None


DeviceKind = Literal["auto", "cpu", "cuda", "mps", "tensorrt"]
_ALIASES: dict[str, DeviceKind] = {"auto": "auto", "cpu": "cpu", "cuda": "cuda", "gpu": "cuda", "mps": "mps",
                                   "tensorrt": "tensorrt", "trt": "tensorrt"}


@dataclass(frozen=True)
class Device:
    """A requested device: ``auto``, ``cpu``, ``cuda`` (``index`` None: the first), ``mps`` or
    ``tensorrt`` (ONNX Runtime only). What it resolves to is the backend's business."""

    kind: DeviceKind = "auto"
    index: int | None = None
    # what the user typed (``gpu`` for cuda): errors name the device in the user's own word
    said: str | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: "str | Device") -> "Device":
        """``auto|cpu|cuda|cuda:N|gpu|mps|tensorrt|trt`` (any case) -> Device, or InferenceError."""
        if isinstance(text, Device):
            return text
        word = (text or "auto").strip().lower()
        if word.startswith("cuda:"):
            index = word.split(":", 1)[1]
            if not index.isdigit():
                raise InferenceError(f"bad device {text!r}: expected cuda:N")
            return cls("cuda", int(index))
        if word not in _ALIASES:
            raise InferenceError(f"unknown device {text!r}: use auto, cpu, cuda, cuda:N, gpu (= cuda), mps or tensorrt")
        return cls(_ALIASES[word], said=word if word != _ALIASES[word] else None)

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.index is not None else self.kind

    @property
    def named(self) -> str:
        """The device as errors name it: the user's word, with what it means (``gpu (cuda)``)."""
        return f"{self.said} ({self})" if self.said else str(self)


AUTO = "auto"
# ``"auto"`` (each model's default), None (the network at full resolution) or a side in pixels
MaxSide = Union[int, None, Literal["auto"]]


def parse_max_side(value: "int | str | None") -> MaxSide:
    """``"auto"``, 0 / None (full resolution) or a side of at least MIN_SIDE px (an int or its digits)."""
    if value is None or value == AUTO:
        return AUTO if value == AUTO else None
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise InferenceError(f"--max-side {value}: expected a number of pixels, 0 or auto")
        value = int(value)
    if value < 0 or 0 < value < MIN_SIDE:
        raise InferenceError(f"--max-side must be at least {MIN_SIDE} pixels (0 = full resolution)")
    return int(value) or None


def check_strength(strength: float) -> float:
    """``--strength``: 0 (the input) to :data:`MAX_STRENGTH`, or InferenceError."""
    if not 0.0 <= strength <= MAX_STRENGTH:
        raise InferenceError(f"--strength {strength:g}: use a value from 0 (the input) to {MAX_STRENGTH:g} "
                             "(1: full dehazing, above 1: more)")
    return float(strength)


DEFAULT_MEMORY_BUDGET_GB = 4.0  # above this estimate a full-resolution direct model runs in tiles
DEFAULT_HALO = 64               # px of context around each tile
CPU_AUTO_MAX_SIDE = 1600        # --max-side auto: a direct model's side on the CPU (larger photos: fast mode)


@dataclass(frozen=True)
class EngineOptions:
    """Everything a :class:`~odcr_cli.engine.dehazer.Dehazer` is made from, parsed and checked
    once, here: strings become the types above, and a bad value is an InferenceError. The CLI
    builds one from its flags; ``Dehazer(**same names)`` builds one too."""

    method: Method = Method.ODCR
    model: str | None = None           # a bundled model by name (None: the default)
    weights: str | None = None         # a generator file or run folder (torch)
    onnx_path: str | None = None       # an exported graph (ONNX Runtime)
    backend: BackendChoice = BackendChoice.AUTO
    device: Device = Device()
    half: bool = False
    tile: int | None = None
    max_side: MaxSide = AUTO
    strength: float = 1.0
    threads: int | None = None
    keep_transmission: bool = False    # the full-resolution t in each image's record
    keep_exposure: bool = False        # the output's mean luma brought back to the input's
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB
    halo: int = DEFAULT_HALO
    stats_max_pixels: int | None = None

    def __post_init__(self) -> None:
        parsed = {"method": parse_choice(Method, self.method, "--method"),
                  "backend": parse_choice(BackendChoice, self.backend, "--backend"),
                  "device": Device.parse(self.device), "max_side": parse_max_side(self.max_side),
                  "strength": check_strength(self.strength)}
        for name, value in parsed.items():
            object.__setattr__(self, name, value)
        if self.model is not None and (self.weights is not None or self.onnx_path is not None):
            raise InferenceError("--model picks a bundled model; --weights/--onnx pick a file: give one of them")
        if self.threads is not None and self.threads < 1:
            raise InferenceError(f"--threads {self.threads}: give at least 1")
