"""Edge-aware smoothing shared by the dark channel prior, synthetic haze and fast mode:
a reflect-bordered box filter and the grey-guide guided filter (He, Sun, Tang, ECCV 2010).
numpy + OpenCV only (``cv2.boxFilter``; no ``cv2.ximgproc``)."""

from __future__ import annotations

import cv2
import numpy as np


def box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over (2r+1)x(2r+1) windows, per channel, borders reflected."""
    return cv2.boxFilter(a, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter: both HxW float32."""
    mI, mp = box(guide, r), box(src, r)
    var = box(guide * guide, r) - mI * mI
    cov = box(guide * src, r) - mI * mp
    a = cov / (var + eps)
    b = mp - a * mI
    return box(a, r) * guide + box(b, r)
