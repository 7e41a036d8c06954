"""The atmospheric scattering model I = J t + A (1 - t), written once for numpy arrays and torch
tensors alike (plain arithmetic, no imports): training composes J in torch, inference and the
dark channel prior compose it in numpy.

Shapes: I, J (..., H, W, 3) or (B, 3, H, W); t broadcastable to them ((H, W, 1) or (B, 1, H, W));
A broadcastable too ((3,) or (B, 3, 1, 1)). Values in [0, 1].
"""

from __future__ import annotations

from typing import TypeVar

Array = TypeVar("Array")


def add_haze(clear: Array, t: Array, airlight: Array) -> Array:
    """I = J t + A (1 - t): the hazy image a scene ``clear`` gives under transmission ``t``."""
    return clear * t + airlight * (1.0 - t)


def remove_haze(hazy: Array, t: Array, airlight: Array) -> Array:
    """J = (I - A) / t + A, the inverse of :func:`add_haze`. ``t`` must already be floored (> 0):
    the floor is what bounds the amplification 1 / t of noise; nothing is clipped here."""
    return (hazy - airlight) / t + airlight
