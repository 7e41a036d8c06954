"""What a runtime must provide to the ``Dehazer`` (the :class:`Backend` protocol), and how one is
chosen and built. The PyTorch and ONNX Runtime backends are imported only when built, so that
the ONNX path never imports torch."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from odcr_cli.engine.options import BackendChoice, Device, parse_choice
from odcr_cli.errors import InferenceError
from odcr_cli.files.bundled import bundled_onnx_available


@runtime_checkable
class Backend(Protocol):
    """Everything the ``Dehazer`` asks of a runtime. Arrays are (1, 3, H, W) float32 in [-1, 1]
    with H and W multiples of ``odcr_cli.core.network_input.SIZE_MULTIPLE``."""

    name: str                              # "torch", "onnx", or a custom runtime's name
    device: str                            # what really runs, in the runtime's words
    on_gpu: bool                           # decides the default of fast mode (one rule for all)
    parameters: int | None                 # of the generator, when known
    generator_config: Mapping[str, Any]    # GeneratorConfig.to_dict(); {} = a direct model
    supports_frozen_stats: bool            # can tile with the whole image's InstanceNorm statistics
    fp32_retries: int                      # fp16 outputs redone in fp32 so far

    def run_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The generator's named outputs (``image``, or ``t``/``t_residual`` and ``airlight_correction``)."""
        ...

    def instance_norm_stats(self, x: np.ndarray) -> list:
        """Every InstanceNorm layer's (mean, var) on ``x``, in order (when ``supports_frozen_stats``)."""
        ...

    def run_frozen(self, x: np.ndarray, stats: list) -> np.ndarray:
        """The direct model's image with InstanceNorm statistics ``stats`` (when ``supports_frozen_stats``)."""
        ...


class BaseBackend:
    """A custom runtime's starting point: override ``run`` (a direct model) or ``run_outputs``;
    the rest says "on ``device`` (a GPU unless it is ``cpu``), no frozen statistics, no fp16,
    parameters unknown"."""

    name = "custom"
    device = "cpu"
    parameters: int | None = None
    generator_config: Mapping[str, Any] = {}
    supports_frozen_stats = False
    fp32_retries = 0

    @property
    def on_gpu(self) -> bool:
        return not self.device.lower().startswith("cpu")

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} implements neither run nor run_outputs")

    def run_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": self.run(x)}

    def instance_norm_stats(self, x: np.ndarray) -> list:
        raise InferenceError(f"the {self.name} backend cannot freeze InstanceNorm statistics")

    def run_frozen(self, x: np.ndarray, stats: list) -> np.ndarray:
        raise InferenceError(f"the {self.name} backend cannot freeze InstanceNorm statistics")


def choose_backend(choice: BackendChoice | str, *, weights: str | None, onnx_path: str | None, device: Device,
                   half: bool, model: str | None) -> BackendChoice:
    """``auto``: ONNX Runtime for a bundled model that ships an ONNX graph, on the CPU (the
    scattering default: its int8 graph is about twice as fast as torch eager, and needs no 1.5 s
    ``import torch``; ``benchmarks/readout_arms.py --latency``); torch everywhere else (GPU,
    --half, user weights, which have no exported graph, and the paper's direct generator, which
    ships no graph because PyTorch runs it twice as fast on the CPU)."""
    choice = parse_choice(BackendChoice, choice, "backend")
    if choice is not BackendChoice.AUTO:
        return choice
    if onnx_path is not None or (weights is not None and str(weights).endswith(".onnx")):
        return BackendChoice.ONNX
    if weights is not None or half or device.kind not in ("auto", "cpu"):
        return BackendChoice.TORCH
    from odcr_cli.engine.onnx_backend import nvidia_driver_present

    if device.kind == "auto" and nvidia_driver_present():
        return BackendChoice.TORCH
    return BackendChoice.ONNX if bundled_onnx_available(model) else BackendChoice.TORCH


def make_backend(choice: BackendChoice | str, *, generator: Any = None, onnx_path: str | None = None,
                 device: Device | str = "auto", half: bool = False, threads: int | None = None) -> Backend:
    """Build the chosen backend (``auto`` resolved already, see :func:`choose_backend`)."""
    choice = parse_choice(BackendChoice, choice, "backend")
    if choice is BackendChoice.AUTO:
        raise InferenceError("make_backend builds torch or onnx; choose_backend resolves auto")
    if choice is BackendChoice.TORCH:
        from odcr_cli.engine.torch_backend import TorchBackend

        return TorchBackend(generator, device=device, half=half, threads=threads)
    if half:
        raise InferenceError("--half applies to the torch backend; export an fp16 ONNX model instead")
    from odcr_cli.engine.onnx_backend import OnnxBackend

    return OnnxBackend(onnx_path, device=device, threads=threads)
