"""How images meet the generator, defined once: RGB in [-1, 1], NCHW, height and width multiples
of :data:`SIZE_MULTIPLE` and at least :data:`MIN_SIDE`. No torch import: ``to_signed`` and
``to_unit`` are plain arithmetic, so they serve numpy arrays and torch tensors alike, and the
ONNX path stays torch-free."""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

SIZE_MULTIPLE = 4  # two stride-2 downsamplings
MIN_SIDE = 16      # the reflection pads need a few pixels at 1/4 resolution

T = TypeVar("T")


def to_signed(x: T) -> T:
    """[0, 1] -> the network's [-1, 1] (numpy array or torch tensor)."""
    return x * 2.0 - 1.0  # type: ignore[operator]


def to_unit(y: T) -> T:
    """The network's [-1, 1] -> [0, 1] (numpy array or torch tensor); no clipping."""
    return (y + 1.0) * 0.5  # type: ignore[operator]


def padded_size(n: int) -> int:
    """The side the network runs at for an image side of ``n`` px."""
    return max(MIN_SIDE, int(math.ceil(n / SIZE_MULTIPLE)) * SIZE_MULTIPLE)


def to_net(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 float in [0, 1] -> (1, 3, H, W) float32 in [-1, 1]."""
    return to_signed(rgb.transpose(2, 0, 1)[None]).astype(np.float32)


def from_net(y: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> HxWx3 float32 in [0, 1], clipped."""
    return np.clip(to_unit(y[0].transpose(1, 2, 0)), 0.0, 1.0).astype(np.float32)


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Anything in the network's [-1, 1] -> uint8 levels, rounded and clipped (same layout)."""
    return np.clip(np.rint(to_unit(np.asarray(y, np.float32)) * 255.0), 0, 255).astype(np.uint8)
