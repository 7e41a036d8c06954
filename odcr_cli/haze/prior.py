"""The dark channel prior (He, Sun and Tang, CVPR 2009 / TPAMI 2011) in numpy + OpenCV: the dark
channel, the airlight rule and the prior's transmission, refined by the guided filter (ECCV 2010).

Its torch twin, :mod:`odcr_cli.haze.prior_torch`, is the same function for training: a network
learns a residual on the torch prior and is applied to this one, so the two share their settings
(:mod:`odcr_cli.haze.constants`), their window rules (below) and their border rule (reflect without
repeating the edge pixel, OpenCV's ``BORDER_REFLECT_101``, torch's ``reflect``).
``tests/test_dcp.py`` pins them together. See docs/scattering.md."""

from __future__ import annotations

import cv2
import numpy as np

from odcr_cli.haze.constants import AIRLIGHT_FLOOR, EPS, OMEGA, PATCH, TOP
from odcr_cli.haze.filters import guided_filter


def patch_for(h: int, w: int, patch: int = PATCH) -> int:
    """The dark-channel window for an h x w image: odd, and no larger than the image allows."""
    return max(1, min(patch, 2 * (min(h, w) // 2) + 1))


def radius_for(h: int, w: int, radius: int | None = None) -> int:
    """The guided filter's radius of the transmission: 60 px for a 600-px image, scaled with the
    shorter side (at least 4), and always below the shorter side (a reflected border needs it)."""
    if radius is None:
        radius = max(4, round(60 * min(h, w) / 600))
    return max(1, min(radius, min(h, w) - 1))


def dark_channel(rgb: np.ndarray, patch: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(rgb.min(axis=2), kernel, borderType=cv2.BORDER_REFLECT_101)


def atmospheric_light(rgb: np.ndarray, dark: np.ndarray, top: float) -> np.ndarray:
    """Mean colour of the input at the ``top`` fraction of brightest dark-channel pixels; ties
    (the minimum filter makes plateaus) go to the first pixels in row-major order, as in
    :func:`odcr_cli.haze.prior_torch.estimate_airlight`."""
    flat = dark.reshape(-1)
    n = max(1, int(flat.size * top))
    threshold = np.partition(flat, flat.size - n)[flat.size - n]
    above = np.flatnonzero(flat > threshold)
    idx = np.concatenate([above, np.flatnonzero(flat == threshold)[: n - above.size]])
    A = rgb.reshape(-1, 3)[idx].mean(axis=0)
    return np.maximum(A, AIRLIGHT_FLOOR).astype(np.float32)


def airlight_rule(rgb: np.ndarray, patch: int = PATCH, top: float = TOP) -> np.ndarray:
    """(3,) the dark-channel rule's airlight of ``rgb`` (HxWx3 float32 in [0, 1])."""
    h, w, _ = rgb.shape
    return atmospheric_light(rgb, dark_channel(rgb, patch_for(h, w, patch)), top)


def dcp_transmission(rgb: np.ndarray, patch: int = PATCH, omega: float = OMEGA, top: float = TOP,
                     radius: int | None = None, eps: float = EPS,
                     airlight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HxWx3 float32 RGB in [0, 1] -> (guided-filter refined transmission HxW, airlight (3,)),
    the same function as :func:`odcr_cli.haze.prior_torch.dcp_transmission`. ``airlight``: use
    this one instead of the dark-channel rule's (video keeps one smoothed over time)."""
    h, w, _ = rgb.shape
    radius = radius_for(h, w, radius)
    patch = patch_for(h, w, patch)
    A = atmospheric_light(rgb, dark_channel(rgb, patch), top) if airlight is None else airlight
    t = 1.0 - omega * dark_channel(rgb / A, patch)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return guided_filter(grey, t.astype(np.float32), radius, eps), A
