"""How a backend is chosen and built (what one must provide: :mod:`odcr_cli.engine.backend_base`).
The PyTorch and ONNX Runtime backends are imported only when built, so that the ONNX path never
imports torch."""

from __future__ import annotations

from typing import Any

from odcr_cli.engine.backend_base import Backend
from odcr_cli.engine.options import BackendChoice, Device, parse_choice
from odcr_cli.errors import InferenceError
from odcr_cli.files.bundled import bundled_onnx_available


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
    if weights is not None or half:
        return BackendChoice.TORCH
    if device.kind not in ("auto", "cpu"):
        # a GPU: PyTorch where it is installed; on the base install, ONNX Runtime's GPU route
        # (the [gpu] extra) for a bundled model with a graph, whose error says how to get it
        onnx_gpu = device.kind in ("cuda", "tensorrt") and not torch_installed() and bundled_onnx_available(model)
        return BackendChoice.ONNX if onnx_gpu else BackendChoice.TORCH
    from odcr_cli.engine.onnx_backend import nvidia_driver_present

    if device.kind == "auto" and nvidia_driver_present() and torch_installed():
        return BackendChoice.TORCH
    return BackendChoice.ONNX if bundled_onnx_available(model) else BackendChoice.TORCH


def torch_installed() -> bool:
    """Whether torch can be imported, without importing it (1.5 s)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


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
