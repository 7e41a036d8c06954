"""Edge-aware smoothing shared by the dark channel prior, synthetic haze, fast mode and the
scattering readout: a reflect-bordered box filter, the grey-guide guided filter (He, Sun, Tang,
ECCV 2010) and the guided upsampling of a transmission map.
numpy + OpenCV only (``cv2.boxFilter``; no ``cv2.ximgproc``)."""

from __future__ import annotations

import cv2
import numpy as np

from odcr_cli.core import guided


def box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over (2r+1)x(2r+1) windows, per channel, borders reflected without repeating the edge
    pixel (as torch's ``reflect`` in :func:`odcr_cli.core.haze.box_filter`)."""
    return cv2.boxFilter(a, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT_101)


def shrink_to(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """A copy whose longer side is at most ``max_side``, area-averaged (``rgb`` itself when it fits
    or ``max_side`` is None/0): the small copy that the networks, ``dcp@N`` and int8 calibration see."""
    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter: both HxW float32."""
    return guided.guided_filter(box, guide, src, r, eps)


def upsample_transmission(t_small: np.ndarray, full_rgb: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """hxw transmission -> HxW: bilinear, then a guided filter whose guide is the full-resolution
    grey photo, so that t follows the photo's edges (radius: half of ``dehaze_dcp``'s, as the
    radius measured for the dark channel prior on a reduced copy; docs/scattering.md). Shared by scattering models
    and ``dcp@N``."""
    H, W, _ = full_rgb.shape
    up = cv2.resize(t_small, (W, H), interpolation=cv2.INTER_LINEAR)
    radius = max(2, round(30 * min(H, W) / 600))
    grey = cv2.cvtColor(full_rgb, cv2.COLOR_RGB2GRAY)
    return guided_filter(grey, up, radius, eps)
