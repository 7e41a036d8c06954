"""What a runtime must provide to the ``Dehazer``: :class:`Backend`, the one base class of the
PyTorch and ONNX Runtime backends and of any custom runtime (numpy only)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from odcr_cli.errors import InferenceError


class Backend:
    """Everything the ``Dehazer`` asks of a runtime, and the one base of every backend (PyTorch,
    ONNX Runtime, a custom runtime). Arrays are (1, 3, H, W) float32 in [-1, 1] with H and W
    multiples of ``odcr_cli.haze.constants.SIZE_MULTIPLE``. A custom runtime overrides ``run``
    (a direct model) or ``run_outputs``; the defaults say "on ``device``, no frozen statistics, no
    fp16, parameters unknown"."""

    name = "custom"                        # "torch", "onnx", or a custom runtime's name
    device = "cpu"                         # what really runs, in the runtime's words
    parameters: int | None = None          # of the generator, when known
    generator_config: Mapping[str, Any] = {}  # GeneratorConfig.to_dict(); {} = a direct model
    supports_frozen_stats = False          # can tile with the whole image's InstanceNorm statistics
    fp32_retries = 0                       # fp16 outputs redone in fp32 so far
    precision = "fp32"                     # of the graph's weights: "fp32", "fp16" or "int8" (memory estimates)

    @property
    def on_gpu(self) -> bool:
        """Decides the default of fast mode, one rule for every runtime: a GPU unless the device's
        name starts with ``cpu`` (torch's ``cpu``, ONNX Runtime's ``CPUExecutionProvider``)."""
        return not self.device.lower().startswith("cpu")

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} implements neither run nor run_outputs")

    def run_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The generator's named outputs (``image``, or ``t``/``t_residual`` and ``airlight_correction``)."""
        return {"image": self.run(x)}

    def instance_norm_stats(self, x: np.ndarray) -> list:
        raise InferenceError(f"the {self.name} backend cannot freeze InstanceNorm statistics")

    def run_frozen(self, x: np.ndarray, stats: list) -> np.ndarray:
        raise InferenceError(f"the {self.name} backend cannot freeze InstanceNorm statistics")
