"""The PyTorch backend, with frozen InstanceNorm statistics for tiled inference (forward hooks
on the generator's InstanceNorm layers, so the engine does not repeat the network's structure).

Torch is imported lazily (inside the functions that need it), so importing this module, or
:mod:`odcr_cli.engine.dehazer`, costs nothing on the ONNX path.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from odcr_cli.engine.backend_base import Backend
from odcr_cli.engine.options import Device
from odcr_cli.errors import InferenceError


def resolve_torch_device(device: Device) -> str:
    """A requested device -> a usable torch device string, or InferenceError.

    A requested GPU that is not usable is an error, never a silent CPU fallback."""
    import torch

    mps_ok = torch.backends.mps.is_available()
    if device.kind == "auto":
        return "cuda:0" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if device.kind == "cpu":
        return "cpu"
    if device.kind == "mps":
        if not mps_ok:
            raise InferenceError("--device mps requested but MPS is not available on this machine")
        return "mps"
    if device.kind == "tensorrt":
        raise InferenceError("--device tensorrt runs on ONNX Runtime: odcr dehaze --backend onnx, "
                             "odcr evaluate -m onnx:FILE")
    if not torch.cuda.is_available():
        raise InferenceError(f"--device {device.named} requested but CUDA is not available "
                             f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    index, count = device.index or 0, torch.cuda.device_count()
    if not 0 <= index < count:
        raise InferenceError(f"--device {device.named} requested but only {count} CUDA device(s) exist")
    return f"cuda:{index}"


T = TypeVar("T")


def finite_or_fp32(run_half: Callable[[], T], run_fp32: Callable[[], T]) -> tuple[T, bool]:
    """fp16 output (an array, or a dict of named arrays), or the fp32 one when fp16 was not finite
    (a NaN must never become a black image); the flag says whether fp32 was needed."""
    y = run_half()
    arrays = y.values() if isinstance(y, dict) else [y]
    if all(np.isfinite(a).all() for a in arrays):
        return y, False
    return run_fp32(), True


class TorchBackend(Backend):
    """PyTorch backend. ``half=True`` (CUDA only) runs fp16 and redoes any non-finite output in
    fp32, so a NaN never becomes a black image. Supports frozen InstanceNorm statistics."""

    name = "torch"
    supports_frozen_stats = True

    def __init__(self, generator: Any, device: Device | str = "auto", half: bool = False,
                 threads: int | None = None) -> None:
        import copy

        import torch

        if threads:  # torch's CPU thread pool is one per process
            torch.set_num_threads(int(threads))

        self.device = resolve_torch_device(Device.parse(device))
        if half and not self.device.startswith("cuda"):
            raise InferenceError(f"--half needs a CUDA device (running on {self.device}); fp32 is used on CPU/MPS")
        self.half = half
        self.generator = generator.to(self.device).float().eval()
        self._half_generator = copy.deepcopy(self.generator).half().eval() if half else None
        self.parameters: int | None = int(sum(p.numel() for p in self.generator.parameters()))
        self.fp32_retries = 0
        self._torch = torch

    # -- plain run --------------------------------------------------------------------------
    def _forward(self, x: np.ndarray, half: bool, stats: list | None = None) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            net = self._half_generator if half else self.generator
            if half:
                t = t.half()
            if stats is None:
                y = net(t)
            else:
                with _instance_norms_replaced(net, _FrozenNorm(stats, t.dtype)):
                    y = net(t)
            return y.float().cpu().numpy()

    def _checked(self, x: np.ndarray, stats: list | None = None) -> np.ndarray:
        if not self.half:
            return self._forward(x, False, stats)
        y, retried = finite_or_fp32(lambda: self._forward(x, True, stats), lambda: self._forward(x, False, stats))
        self.fp32_retries += retried  # Dehazer reports it as a note of the image's record
        return y

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._checked(x)

    @property
    def generator_config(self) -> dict:
        return self.generator.config.to_dict()

    def run_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """(1, 3, H, W) float32 in [-1, 1] -> the generator's named raw outputs (fp32 numpy); with
        ``half``, from the fp16 generator, redone in fp32 when not finite."""
        if self.generator.config.output == "image":
            return {"image": self.run(x)}
        if not self.half:
            return self._raw_outputs(x, False)
        out, retried = finite_or_fp32(lambda: self._raw_outputs(x, True), lambda: self._raw_outputs(x, False))
        self.fp32_retries += retried
        return out

    def _raw_outputs(self, x: np.ndarray, half: bool) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            net = self._half_generator if half else self.generator
            raw = net.raw_outputs(t.half() if half else t)
            return {k: v.float().cpu().numpy() for k, v in raw.items()}

    # -- frozen InstanceNorm statistics -------------------------------------------------------
    def instance_norm_stats(self, x: np.ndarray) -> list:
        """Run ``x`` once and return every InstanceNorm layer's (mean, var), in order (fp32)."""
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            rec = _RecordNorm()
            with _instance_norms_replaced(self.generator, rec):
                self.generator(t)
            return rec.stats

    def run_frozen(self, x: np.ndarray, stats: list) -> np.ndarray:
        return self._checked(x, stats)


class _RecordNorm:
    def __init__(self) -> None:
        self.stats: list = []

    def __call__(self, module: Any, x: Any) -> Any:
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
        self.stats.append((mean, var))
        return (x - mean) / (var + module.eps).sqrt()


class _FrozenNorm:
    def __init__(self, stats: list, dtype: Any) -> None:
        self.stats, self.dtype, self.i = stats, dtype, 0

    def __call__(self, module: Any, x: Any) -> Any:
        mean, var = self.stats[self.i]
        self.i += 1
        return ((x.float() - mean) / (var + module.eps).sqrt()).to(self.dtype)


@contextmanager
def _instance_norms_replaced(generator: Any, norm: Callable[[Any, Any], Any]) -> Iterator[None]:
    """Inside the block, every InstanceNorm2d of ``generator`` outputs ``norm(module, its input)``
    instead, in the order the network runs them (forward hooks: whatever the architecture)."""
    from torch import nn

    handles = [m.register_forward_hook(lambda module, args, _out: norm(module, args[0]))
               for m in generator.modules() if isinstance(m, nn.InstanceNorm2d)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


__all__ = ("TorchBackend", "finite_or_fp32", "resolve_torch_device")
