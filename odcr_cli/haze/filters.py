"""Edge-aware smoothing in numpy + OpenCV (``cv2.boxFilter``; no ``cv2.ximgproc``): a
reflect-bordered box filter, the grey-guide guided filter (He, Sun, Tang, ECCV 2010;
:mod:`odcr_cli.haze.guided`) and the carrying of a small copy's transmission up to the photo.
Shared by the prior, the readout, the inversion, synthetic haze and fast mode."""

from __future__ import annotations

import cv2
import numpy as np

from odcr_cli.haze import guided
from odcr_cli.haze.constants import EPS


def box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over (2r+1)x(2r+1) windows, per channel, borders reflected without repeating the edge
    pixel (as torch's ``reflect`` in :func:`odcr_cli.haze.prior_torch.box_filter`)."""
    return cv2.boxFilter(a, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT_101)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter: both HxW float32."""
    return guided.guided_filter(box, guide, src, r, eps)


def upsample_transmission(t_small: np.ndarray, full_rgb: np.ndarray, eps: float = EPS) -> np.ndarray:
    """hxw transmission -> HxW: bilinear, then a guided filter whose guide is the full-resolution
    grey photo, so that t follows the photo's edges (radius: half of ``dehaze_dcp``'s, as the
    radius measured for the dark channel prior on a reduced copy; docs/scattering.md). Shared by scattering models
    and ``dcp@N``."""
    H, W, _ = full_rgb.shape
    up = cv2.resize(t_small, (W, H), interpolation=cv2.INTER_LINEAR)
    radius = max(2, round(30 * min(H, W) / 600))
    grey = cv2.cvtColor(full_rgb, cv2.COLOR_RGB2GRAY)
    return guided_filter(grey, up, radius, eps)
