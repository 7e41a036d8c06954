"""ONNX Runtime backend for the generator: numpy in, numpy out, no torch.

Implements the ``Backend`` protocol of :mod:`odcr_cli.engine.backends`: ``run_outputs`` maps a
float32 (N, 3, H, W) array, RGB in [-1, 1] with H and W multiples of the model's size multiple,
to the graph's named outputs. Padding and tiling live in ``odcr_cli.engine.tiling``, image I/O in
``odcr_cli.files.imageio``.

Providers are tried in the order TensorRT, CUDA, CPU, filtered by
``onnxruntime.get_available_providers()``. onnxruntime-gpu lists CUDA and TensorRT even where
their libraries are missing and then silently builds a CPU session, so the provider that is
really active is read back from ``session.get_providers()`` after the session is created;
``device="cuda"`` fails when CUDA is not really active (never a silent CPU fallback).

This module must not import torch (``import torch`` costs ~1.5 s); a test checks it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from odcr_cli.haze.constants import SIZE_MULTIPLE
from odcr_cli.engine.backend_base import Backend
from odcr_cli.engine.options import Device

from odcr_cli.errors import GPU_ONNX_INSTALL, OnnxBackendError

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def nvidia_driver_present() -> bool:
    """Cheap probe for an NVIDIA driver, without loading any CUDA library."""
    if os.name == "nt":
        import ctypes.util
        return ctypes.util.find_library("nvcuda") is not None
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def _tensorrt_present() -> bool:
    import ctypes
    import ctypes.util
    import importlib.util
    if importlib.util.find_spec("tensorrt_libs") or importlib.util.find_spec("tensorrt"):
        return True
    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "nvinfer_10.dll", "nvinfer.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return ctypes.util.find_library("nvinfer") is not None


def _provider_list(device: Device, available: list[str], cache_dir: Path | None) -> list:
    if device.kind == "auto":
        # onnxruntime-gpu lists the GPU providers even on machines without a GPU, then logs
        # errors while failing to load them; under "auto" skip them when they cannot work.
        available = [p for p in available
                     if p == "CPUExecutionProvider"
                     or (p == "CUDAExecutionProvider" and nvidia_driver_present())
                     or (p == "TensorrtExecutionProvider" and nvidia_driver_present() and _tensorrt_present())
                     or p not in PREFERRED_PROVIDERS]
    wanted = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
              "tensorrt": list(PREFERRED_PROVIDERS), "auto": list(PREFERRED_PROVIDERS)}.get(device.kind)
    if wanted is None:
        raise OnnxBackendError(f"device {device.named} is not one of ONNX Runtime's (auto, cpu, cuda, tensorrt)")
    gpu = {"cuda": ("CUDAExecutionProvider", "CUDA"), "tensorrt": ("TensorrtExecutionProvider", "TensorRT")}.get(device.kind)
    if gpu is not None and gpu[0] not in available:  # the CPU build of onnxruntime
        raise OnnxBackendError(f"--device {device.named}: this onnxruntime has no {gpu[1]} provider (the CPU "
                               f"build); for ONNX Runtime on an NVIDIA GPU: {GPU_ONNX_INSTALL}, or use --device cpu")
    chosen: list = []
    for name in wanted:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider" and cache_dir is not None:
            chosen.append((name, {"trt_engine_cache_enable": "True", "trt_timing_cache_enable": "True",
                                  "trt_engine_cache_path": str(cache_dir)}))
        elif name == "CUDAExecutionProvider" and device.index is not None:
            chosen.append((name, {"device_id": str(device.index)}))
        else:
            chosen.append(name)
    if not chosen:
        raise OnnxBackendError(f"no usable onnxruntime provider for device {device.named} "
                               f"(available: {', '.join(available)})")
    return chosen


class OnnxBackend(Backend):
    """One onnxruntime session for an exported odcr generator.

    Attributes: ``name`` ("onnx"), ``device`` (the provider really active, e.g.
    ``"CPUExecutionProvider"``), ``providers`` (all active providers), ``metadata`` (the model's
    ``metadata_props``), ``size_multiple``, ``static_hw`` ((H, W) for a static export, else None),
    ``input_name``/``output_name``.
    """

    name = "onnx"
    supports_frozen_stats = False  # a graph's InstanceNorm always uses its input's statistics
    fp32_retries = 0               # an fp16 export runs as exported

    def __init__(self, path: str | os.PathLike, device: Device | str = "auto", threads: int | None = None) -> None:
        device = Device.parse(device)
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxBackendError(f"ONNX model not found: {self.path}")
        available = ort.get_available_providers()
        cache_dir = self.path.parent if os.access(self.path.parent, os.W_OK) else None
        providers = _provider_list(device, available, cache_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxBackendError(f"{self.path}: onnxruntime cannot load it: {msg}") from None
        self.providers: list[str] = list(self.session.get_providers())
        self.device: str = self.providers[0]
        if device.kind == "cuda" and "CUDAExecutionProvider" not in self.providers:
            raise OnnxBackendError(
                "--device cuda was asked for, but onnxruntime could not activate the CUDA provider "
                f"(active: {', '.join(self.providers)}); check the CUDA/cuDNN libraries or use --device cpu")
        if device.kind == "tensorrt" and "TensorrtExecutionProvider" not in self.providers:
            raise OnnxBackendError(f"TensorRT was asked for, but it is not active (active: {', '.join(self.providers)})")

        meta = self.session.get_modelmeta()
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map or {})
        self.precision = self.metadata.get("precision", "fp32")
        try:
            self.size_multiple = int(self.metadata.get("size_multiple", SIZE_MULTIPLE))
        except ValueError:
            self.size_multiple = SIZE_MULTIPLE
        input_range = self.metadata.get("input_range", "[-1,1]").replace(" ", "")
        if input_range != "[-1,1]":
            raise OnnxBackendError(f"{self.path}: input range {input_range} is not supported (expected [-1,1])")
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise OnnxBackendError(f"{self.path}: expected one input and at least one output, found {len(inputs)} and {len(outputs)}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in outputs]
        self.output_name = self.output_names[0]
        self.generator_config: dict = _json_object(self.metadata.get("generator_config"))
        count = self.metadata.get("parameters", "")
        self.parameters: int | None = int(count) if count.isdigit() else None
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise OnnxBackendError(f"{self.path}: input shape {shape} is not (N, 3, H, W)")
        h, w = shape[2], shape[3]
        self.static_hw: tuple[int, int] | None = (int(h), int(w)) if isinstance(h, int) and isinstance(w, int) else None
        self.input_type = inputs[0].type  # 'tensor(float)' for our exports, fp16 included

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 in [-1, 1] -> the same shape, float32 (direct-output models)."""
        return self._session_run(x, [self.output_name])[0]

    def run_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, H, W) float32 in [-1, 1] -> every named graph output, float32. The one output
        of a graph exported before outputs were named (``output``) is the direct model's ``image``."""
        values = self._session_run(x, self.output_names)
        if len(values) == 1 and self.output_names[0] == "output":
            return {"image": values[0]}
        return dict(zip(self.output_names, values))

    def _session_run(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) array, got shape {x.shape}")
        if self.static_hw is not None and tuple(x.shape[2:]) != self.static_hw:
            raise OnnxBackendError(
                f"{self.path.name} was exported for {self.static_hw[0]}x{self.static_hw[1]} only and cannot run "
                f"{x.shape[2]}x{x.shape[3]} (export without --static for any size)")
        m = self.size_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"height and width must be multiples of {m}, got {x.shape[2]}x{x.shape[3]}")
        feed = np.ascontiguousarray(x, dtype=np.float32)
        if self.input_type == "tensor(float16)":
            feed = feed.astype(np.float16)
        return [np.asarray(o, dtype=np.float32) for o in self.session.run(names, {self.input_name: feed})]



def _json_object(text: str | None) -> dict:
    """A metadata entry holding a JSON object; {} when absent or damaged (a direct model's config)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
