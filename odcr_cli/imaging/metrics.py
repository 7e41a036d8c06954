"""Full-reference image quality, defined once: PSNR and SSIM (numpy; SSIM from scikit-image)."""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, peak: float, cap: float | None = None) -> float:
    """``10 log10(peak^2 / MSE)`` with the MSE over every pixel and channel, in float64; ``peak``
    has no default on purpose (255 for uint8 levels, 1.0 for floats in [0, 1]).

    Identical images score ``inf``, or ``cap`` when given (so that means stay finite)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    value = math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)
    return value if cap is None else min(cap, value)


def ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two HxWx3 uint8 images: scikit-image's defaults (7x7 uniform window, K1 0.01,
    K2 0.03), per RGB channel and averaged."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=255))
