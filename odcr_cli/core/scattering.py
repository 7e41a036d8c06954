"""The atmospheric scattering model I = J t + A (1 - t), written once for numpy arrays and torch
tensors alike (plain arithmetic, no imports): training composes J in torch, inference and the
dark channel prior compose it in numpy.

Shapes: I, J (..., H, W, 3) or (B, 3, H, W); t broadcastable to them ((H, W, 1) or (B, 1, H, W));
A broadcastable too ((3,) or (B, 3, 1, 1)). Values in [0, 1].
"""

from __future__ import annotations

from typing import TypeVar

Array = TypeVar("Array")

# A prior transmission is clamped to [1%, 99%] of (t_min, 1) before its logit is taken, so that
# the logit stays finite (|logit| <= 4.6) where the dark channel prior says 0 or 1.
PRIOR_CLAMP = 0.01
# --strength s removes that fraction of the haze, t -> 1 - s (1 - t), floored at t_min (0: the
# input, 1: the model's t); above 1 it removes more than the model sees, at most MAX_STRENGTH times.
MAX_STRENGTH = 2.0


def add_haze(clear: Array, t: Array, airlight: Array) -> Array:
    """I = J t + A (1 - t): the hazy image a scene ``clear`` gives under transmission ``t``."""
    return clear * t + airlight * (1.0 - t)


def remove_haze(hazy: Array, t: Array, airlight: Array) -> Array:
    """J = (I - A) / t + A, the inverse of :func:`add_haze`. ``t`` must already be floored (> 0):
    the floor is what bounds the amplification 1 / t of noise; nothing is clipped here."""
    return (hazy - airlight) / t + airlight



def output_names(output: str, t_prior: str = "none") -> tuple[str, ...]:
    """Names of what a generator predicts, in the order of its ONNX outputs: ``image`` for the
    paper's output; for scattering ``t`` (or ``t_residual`` on the DCP prior) and the airlight
    correction. One definition for the networks (torch) and the readout (numpy)."""
    if output == "image":
        return ("image",)
    return ("t_residual" if t_prior == "dcp" else "t", "airlight_correction")
