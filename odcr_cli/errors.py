"""Every error odcr reports to the user as one line, under one base class (no torch, no imports).

The CLI catches :class:`OdcrError` alone, prints ``error: <message>`` and exits with the
error's ``exit_code``: 2 for what was refused before any work started (a usage error), 1 for a
run that started and failed. Python callers catch the same classes.
"""

from __future__ import annotations

from typing import Any


# The commands that install an extra, said once: every "needs the X extra" error and README's
# Extras paragraph quote them (tests/test_install.py holds the two equal). pip alone resolves
# torch to its CUDA build on Linux (several GB of nvidia-* packages), so the extra that brings
# torch installs the CPU build first; on a CUDA machine the user installs the build they want.
TORCH_CPU_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
GPU_ONNX_INSTALL = "pip uninstall -y onnxruntime && pip install 'odcr[gpu]'"


def install_hint(extra: str) -> str:
    """The command line that installs the extra ``extra`` (``train`` brings torch: its CPU build)."""
    if extra == "train":
        return (f"{TORCH_CPU_INSTALL} && pip install 'odcr[train]' "
                "(the CPU build of torch; on a CUDA machine install the torch build you want first)")
    if extra == "gpu":
        return GPU_ONNX_INSTALL
    return f"pip install 'odcr[{extra}]'"


class OdcrError(Exception):
    """A problem the user can act on; ``str()`` is one line."""

    exit_code: int = 2


class UsageError(OdcrError):
    """Bad arguments or an unsafe plan; nothing has been processed."""


class InferenceError(OdcrError):
    """A device, backend or option of the dehazing engine that cannot be used."""


class OnnxBackendError(InferenceError):
    """An ONNX model or onnxruntime provider that cannot be used."""


class WeightsError(OdcrError):
    """A weights file that cannot be used."""


class BundledModelError(WeightsError):
    """A bundled model that is unknown, missing or fails its checksum."""


class ImageReadError(OdcrError):
    """A file that cannot be read as an image: ``"name: reason"``; ``reason`` alone is kept for
    reports that already name the file."""

    def __init__(self, name: str, reason: str | None = None) -> None:
        # one argument (a finished message) still works: unpickling passes the message alone
        super().__init__(name if reason is None else f"{name}: {reason}")
        self.name, self.reason = (None, name) if reason is None else (name, reason)


class ImageWriteError(OdcrError):
    """An image that cannot be written in the requested format."""


class TrainingError(OdcrError):
    """A training run that cannot start or go on."""


class TrainingDiverged(TrainingError):
    """A loss became NaN or infinite; the message names the last good checkpoint."""

    exit_code = 1


class SynthesisError(UsageError):
    """An ``odcr synth`` run refused before any work (options, folders, outputs that exist)."""


class EvaluationError(OdcrError):
    """A problem with the inputs of an evaluation."""


class ExportError(OdcrError):
    """An export that failed."""


class ExportCheckError(ExportError):
    """The exported model disagrees with PyTorch; ``report`` (an ``ExportReport``) holds the checks."""

    exit_code = 1

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class FadeError(OdcrError, ValueError):
    """An image FADE cannot score (too small, wrong layout)."""


__all__ = ("TORCH_CPU_INSTALL", "GPU_ONNX_INSTALL", "install_hint", "OdcrError", "UsageError", "InferenceError", "OnnxBackendError", "WeightsError", "BundledModelError",
           "ImageReadError", "ImageWriteError", "SynthesisError", "TrainingError", "TrainingDiverged", "EvaluationError",
           "ExportError", "ExportCheckError", "FadeError")
