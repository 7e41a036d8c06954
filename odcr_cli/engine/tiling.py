"""Image-space numerics shared by whole-image, tiled and fast-mode inference (numpy + OpenCV only).

Overlapping feathered tiling (used with frozen InstanceNorm statistics by the torch backend and
with per-tile statistics by ONNX) and the guided (colour-affine) upsampling of fast mode live here,
apart from any backend (the padding to the network's multiple is
:mod:`odcr_cli.haze.network_input`'s). No torch import, so the ONNX path stays torch-free.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from odcr_cli.engine.options import DEFAULT_HALO
from odcr_cli.haze.constants import SIZE_MULTIPLE
from odcr_cli.haze.filters import box
from odcr_cli.haze.network_input import from_net, pad_to_multiple, to_net


def run_padded(run: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray) -> np.ndarray:
    """HxWx3 [0,1] -> HxWx3 [0,1] through ``run`` with padding to the network's multiple."""
    x, (h, w) = pad_to_multiple(to_net(rgb)[0])
    y = run(x[None])
    return from_net(y[:, :, :h, :w])


def _ramp(n: int, start_interior: bool, end_interior: bool, fade: int) -> np.ndarray:
    w = np.ones(n, np.float32)
    fade = max(1, min(fade, n // 2))
    r = (np.arange(fade, dtype=np.float32) + 0.5) / fade
    if start_interior:
        w[:fade] = r
    if end_interior:
        w[n - fade:] = np.minimum(w[n - fade:], r[::-1])
    return w


def _tile_starts(n: int, tile: int) -> list[int]:
    if n <= tile:
        return [0]
    count = int(math.ceil(n / tile))
    step = (n - tile) / (count - 1)
    return sorted({int(round(i * step / SIZE_MULTIPLE)) * SIZE_MULTIPLE for i in range(count)})


def run_tiled(run_tile: Callable[[np.ndarray], np.ndarray], x: np.ndarray, tile: int,
              halo: int = DEFAULT_HALO) -> np.ndarray:
    """Run (1, 3, H, W) ``x`` (H, W multiples of 4) as overlapping tiles and blend them.

    Cores of ``tile`` px (multiple of 4, starting on multiples of 4 so that the network's
    stride-4 grid lines up with the whole image) grow by ``halo`` px on every interior side;
    adjacent tiles cross-fade linearly over their 2*halo overlap."""
    _, c, h, w = x.shape
    tile = max(SIZE_MULTIPLE * 4, tile // SIZE_MULTIPLE * SIZE_MULTIPLE)
    halo = halo // SIZE_MULTIPLE * SIZE_MULTIPLE
    out = np.zeros((3, h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    for y0 in _tile_starts(h, tile):
        for x0 in _tile_starts(w, tile):
            ys, ye = max(0, y0 - halo), min(h, y0 + tile + halo)
            xs, xe = max(0, x0 - halo), min(w, x0 + tile + halo)
            y = run_tile(np.ascontiguousarray(x[:, :, ys:ye, xs:xe]))[0]
            wy = _ramp(ye - ys, ys > 0, ye < h, 2 * halo if halo else 4)
            wx = _ramp(xe - xs, xs > 0, xe < w, 2 * halo if halo else 4)
            wt = wy[:, None] * wx[None, :]
            out[:, ys:ye, xs:xe] += y * wt
            weight[ys:ye, xs:xe] += wt
    return (out / np.maximum(weight, 1e-8))[None]


def guided_upsample(low_in: np.ndarray, low_out: np.ndarray, full_in: np.ndarray,
                    radius: int | None = None, eps: float = 1e-4) -> np.ndarray:
    """Carry the mapping ``low_in -> low_out`` (both hxwx3) to ``full_in`` (HxWx3).

    Fits a per-pixel colour-affine model out = A in + b in (2r+1)^2 windows at low resolution
    (He et al.'s guided filter with a colour guide), smooths A and b, upsamples them bilinearly
    and applies them to the full-resolution input."""
    h, w, _ = low_in.shape
    r = radius if radius is not None else max(1, round(max(h, w) / 512))
    I = low_in.astype(np.float32)
    O = low_out.astype(np.float32)
    mI = box(I, r)
    mO = box(O, r)
    sig = np.empty((h, w, 3, 3), np.float32)
    cov = np.empty((h, w, 3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            v = box(I[..., i] * I[..., j], r) - mI[..., i] * mI[..., j]
            sig[..., i, j] = v
            sig[..., j, i] = v
        for c in range(3):
            cov[..., i, c] = box(I[..., i] * O[..., c], r) - mI[..., i] * mO[..., c]
    sig += np.eye(3, dtype=np.float32) * eps
    A = np.linalg.solve(sig.reshape(-1, 3, 3), cov.reshape(-1, 3, 3)).reshape(h, w, 3, 3)  # A[k, c]
    b = mO - np.einsum("hwk,hwkc->hwc", mI, A)
    A = box(A.reshape(h, w, 9), r).reshape(h, w, 3, 3)
    b = box(b, r)
    H, W, _ = full_in.shape
    out = cv2.resize(b, (W, H), interpolation=cv2.INTER_LINEAR)
    for k in range(3):
        Ak = cv2.resize(np.ascontiguousarray(A[:, :, k, :]), (W, H), interpolation=cv2.INTER_LINEAR)
        out += Ak * full_in[..., k:k + 1]
    return np.clip(out, 0.0, 1.0, out=out)


__all__ = ("run_padded", "run_tiled", "guided_upsample")
