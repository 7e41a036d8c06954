"""What the network sees, defined once: the photo's copy at the network's side, framed by a
mirrored margin, RGB in [-1, 1], NCHW, height and width multiples of ``SIZE_MULTIPLE`` and at
least ``MIN_SIDE`` (both in :mod:`odcr_cli.haze.constants`). ``to_signed`` and ``to_unit`` are
plain arithmetic, so they serve numpy arrays and torch tensors alike; nothing here imports torch,
so the ONNX path stays torch-free."""

from __future__ import annotations

import math
from typing import TypeVar

import cv2
import numpy as np

from odcr_cli.haze.constants import MIN_SIDE, SIZE_MULTIPLE

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


def shrink_to(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """A copy whose longer side is at most ``max_side``, area-averaged (``rgb`` itself when it fits
    or ``max_side`` is None/0): the small copy that the networks, ``dcp@N`` and int8 calibration see."""
    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def pad_to_multiple(chw: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(C, H, W) -> reflect-padded (C, H', W') with H', W' multiples of 4 and >= 16."""
    _, h, w = chw.shape
    ph, pw = padded_size(h) - h, padded_size(w) - w
    if ph == 0 and pw == 0:
        return chw, (h, w)
    mode = "reflect" if min(h, w) > 1 else "edge"  # numpy's reflect repeats for large pads
    return np.pad(chw, ((0, 0), (0, ph), (0, pw)), mode=mode), (h, w)


def frame_for_network(small: np.ndarray, margin: int) -> tuple[np.ndarray, int]:
    """``small`` (hxwx3 float32 [0, 1]) as a scattering network sees it: mirrored by ``margin`` px
    on every side (reflect-101, as the network's own padding; less on tiny images), padded to the
    network's multiple: ((1, 3, H, W) in [-1, 1], the margin m used; outputs [m:m + h, m:m + w])."""
    h, w = small.shape[:2]
    m = max(0, min(margin, h - 1, w - 1))
    framed = cv2.copyMakeBorder(small, m, m, m, m, cv2.BORDER_REFLECT_101) if m else small
    return pad_to_multiple(to_net(framed)[0])[0][None], m
