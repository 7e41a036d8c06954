"""Dark channel prior dehazing (He, Sun, Tang, CVPR 2009 / TPAMI 2011) with guided-filter
refinement of the transmission (He, Sun, Tang, ECCV 2010, ``odcr_cli.imaging.filters``). numpy + OpenCV
only: the minimum filter is an erosion.

Classical baseline for ``odcr dehaze --method dcp``; needs no weights.
"""

from __future__ import annotations

import cv2
import numpy as np

from odcr_cli.core import prior
from odcr_cli.core.scattering import remove_haze
from odcr_cli.imaging.filters import guided_filter, shrink_to, upsample_transmission


def dark_channel(rgb: np.ndarray, patch: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(rgb.min(axis=2), kernel, borderType=cv2.BORDER_REFLECT_101)


def atmospheric_light(rgb: np.ndarray, dark: np.ndarray, top: float) -> np.ndarray:
    """Mean colour of the input at the ``top`` fraction of brightest dark-channel pixels; ties
    (the minimum filter makes plateaus) go to the first pixels in row-major order, as in
    :func:`odcr_cli.core.haze.estimate_airlight`."""
    flat = dark.reshape(-1)
    n = max(1, int(flat.size * top))
    threshold = np.partition(flat, flat.size - n)[flat.size - n]
    above = np.flatnonzero(flat > threshold)
    idx = np.concatenate([above, np.flatnonzero(flat == threshold)[: n - above.size]])
    A = rgb.reshape(-1, 3)[idx].mean(axis=0)
    return np.maximum(A, prior.AIRLIGHT_FLOOR).astype(np.float32)


def dcp_transmission(rgb: np.ndarray, patch: int = prior.PATCH, omega: float = prior.OMEGA, top: float = prior.TOP,
                     radius: int | None = None, eps: float = prior.EPS,
                     airlight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HxWx3 float32 RGB in [0, 1] -> (guided-filter refined transmission HxW, airlight (3,)),
    the same function as :func:`odcr_cli.core.haze.dcp_transmission` (windows and radius:
    :mod:`odcr_cli.core.prior`). ``airlight``: use this one instead of the dark-channel rule's
    (video keeps one smoothed over time)."""
    h, w, _ = rgb.shape
    radius = prior.radius_for(h, w, radius)
    patch = prior.patch_for(h, w, patch)
    A = atmospheric_light(rgb, dark_channel(rgb, patch), top) if airlight is None else airlight
    t = 1.0 - omega * dark_channel(rgb / A, patch)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return guided_filter(grey, t.astype(np.float32), radius, eps), A


def dehaze_dcp(rgb: np.ndarray, patch: int = prior.PATCH, omega: float = prior.OMEGA, t0: float = 0.1,
               top: float = prior.TOP, radius: int | None = None, eps: float = prior.EPS,
               max_side: int | None = None, strength: float = 1.0,
               with_transmission: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """HxWx3 float32 RGB in [0, 1] -> dehazed HxWx3 float32 in [0, 1].

    ``strength`` s removes that fraction of the haze: the floored t becomes 1 - s (1 - t), floored
    again at ``t0`` (0: the input, 1: the classical result, 2: twice the haze removed).

    ``max_side``: estimate t and A on a copy whose longer side is at most this (then t is carried
    up by ``odcr_cli.imaging.filters.upsample_transmission``, as for scattering models); None: at full
    resolution, the classical algorithm. ``with_transmission``: return (J, the HxW t it used)."""
    rgb = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB, got shape {rgb.shape}")
    small = shrink_to(rgb, max_side)
    if small is not rgb:
        t_small, A = dcp_transmission(small, patch, omega, top, radius, eps)
        t = upsample_transmission(t_small, rgb)
    else:
        t, A = dcp_transmission(rgb, patch, omega, top, radius, eps)
    t = np.maximum(t, t0)[..., None]
    if strength != 1.0:  # above 1 the scaled t may fall below the floor: floored again
        t = np.maximum(1.0 - strength * (1.0 - t), t0)
    out = np.clip(remove_haze(rgb, t, A), 0.0, 1.0).astype(np.float32)
    return (out, t[..., 0].astype(np.float32)) if with_transmission else out
