"""The classical dark-channel-prior dehazer (``odcr dehaze --method dcp``; needs no weights): the
prior's t and airlight (:mod:`odcr_cli.haze.prior`), floored, J = (I - A) / t + A. numpy + OpenCV."""

from __future__ import annotations

import numpy as np

from odcr_cli.haze.constants import EPS, OMEGA, PATCH, T_MIN, TOP
from odcr_cli.haze.filters import upsample_transmission
from odcr_cli.haze.network_input import shrink_to
from odcr_cli.haze.prior import dcp_transmission
from odcr_cli.haze.scattering import remove_haze
from odcr_cli.haze.transmission import with_strength


def dehaze_dcp(rgb: np.ndarray, patch: int = PATCH, omega: float = OMEGA, t0: float = T_MIN,
               top: float = TOP, radius: int | None = None, eps: float = EPS,
               max_side: int | None = None, strength: float = 1.0,
               with_transmission: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """HxWx3 float32 RGB in [0, 1] -> dehazed HxWx3 float32 in [0, 1].

    ``strength``: the floored t scaled as :func:`odcr_cli.haze.transmission.with_strength` says,
    floored again at ``t0`` (0: the input, 1: the classical result).

    ``max_side``: estimate t and A on a copy whose longer side is at most this (then t is carried
    up by :func:`odcr_cli.haze.filters.upsample_transmission`, as for scattering models); None: at
    full resolution, the classical algorithm. ``with_transmission``: return (J, the HxW t it used)."""
    rgb = np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB, got shape {rgb.shape}")
    small = shrink_to(rgb, max_side)
    if small is not rgb:
        t_small, A = dcp_transmission(small, patch, omega, top, radius, eps)
        t = upsample_transmission(t_small, rgb)
    else:
        t, A = dcp_transmission(rgb, patch, omega, top, radius, eps)
    # above strength 1 the scaled t may fall below the floor: floored again (a no-op up to 1)
    t = np.maximum(with_strength(np.maximum(t, t0)[..., None], strength), t0)
    out = np.clip(remove_haze(rgb, t, A), 0.0, 1.0).astype(np.float32)
    return (out, t[..., 0].astype(np.float32)) if with_transmission else out
