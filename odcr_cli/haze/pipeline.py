"""One photo through a scattering model, the default method, in the order every caller runs it
(``Dehazer``, the video stream, int8 calibration, distillation and the benchmarks):

1. shrink: a copy whose longer side is at most the network's side (area average);
2. frame: that copy mirrored by a margin, in [-1, 1], padded to the network's multiple
   (:mod:`odcr_cli.haze.network_input`);
3. run: ``run_network(framed) -> named outputs``, any runtime (ONNX Runtime, PyTorch, a test's
   function), so nothing here imports one; the margin is cropped off its spatial outputs;
4. estimate: the airlight (the dark-channel rule plus the network's correction) and t on the small
   copy (with the DCP prior, the network's logit residual on the prior's t), ``strength`` applied
   (:meth:`~odcr_cli.haze.readout.ScatteringReadout.estimate`);
5. carry up: t carried to the photo by a guided filter whose guide is the photo, floored;
6. invert: J = (I - A) / t + A at full resolution, flat regions' colour noise not amplified.

:func:`estimate` is steps 1-4, :func:`render` steps 5-6 and :func:`dehaze` both. Video runs the
same steps with state between frames (:mod:`odcr_cli.engine.stream`). numpy + OpenCV only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from odcr_cli.haze.constants import LUMA, MARGIN
from odcr_cli.haze.network_input import frame_for_network, shrink_to
from odcr_cli.haze.noise import Source
from odcr_cli.haze.readout import ScatteringReadout

RunNetwork = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Haze:
    """One image's haze: t on the small copy (hxw, strength applied, not floored) and the
    airlight (3,)."""

    t_small: np.ndarray
    airlight: np.ndarray


@dataclass
class Dehazed:
    """What :func:`dehaze` made of one photo: J (HxWx3 float32 in [0, 1]), the full-resolution t
    it used (HxW, floored), the haze of the small copy, and seconds by stage."""

    image: np.ndarray
    t: np.ndarray
    haze: Haze
    seconds: dict[str, float] = field(default_factory=dict)


def network_input(rgb: np.ndarray, side: int | None, margin: int = MARGIN) -> np.ndarray:
    """Steps 1-2: what the network is given for ``rgb`` (HxWx3 float32 [0, 1]): (1, 3, H', W') in
    [-1, 1] (int8 calibration feeds exactly this)."""
    return frame_for_network(shrink_to(rgb, side), margin)[0]


def network_outputs(run_network: RunNetwork, small: np.ndarray, margin: int = MARGIN) -> dict[str, np.ndarray]:
    """Steps 2-3: the network's named outputs on ``small`` (hxwx3 float32 [0, 1], already the size
    it should run at), framed, run, and the spatial outputs cropped back to h x w (numpy arrays,
    or the torch tensors that distillation's student returns, gradients kept)."""
    h, w = small.shape[:2]
    x, m = frame_for_network(small, margin)
    return {k: _crop(v, m, h, w) for k, v in run_network(x).items()}


def _crop(v: np.ndarray, m: int, h: int, w: int) -> np.ndarray:
    if v.ndim != 4:
        return v
    v = v[:, :, m:m + h, m:m + w]
    return np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v


def estimate(rgb: np.ndarray, run_network: RunNetwork, readout: ScatteringReadout, side: int | None,
             margin: int = MARGIN, strength: float = 1.0) -> Haze:
    """Steps 1-4: the haze of ``rgb`` (HxWx3 float32 [0, 1]) from the network at ``side`` px."""
    return _estimate(rgb, run_network, readout, side, margin, strength, {})


def render(rgb: np.ndarray, haze: Haze, readout: ScatteringReadout,
           source: Source = Source()) -> tuple[np.ndarray, np.ndarray]:
    """Steps 5-6: (J HxWx3 float32 in [0, 1], the full-resolution t it used); ``source``: what the
    file says of its own noise (a JPEG's tables, :mod:`odcr_cli.haze.noise`). No state: video
    renders frames with it on several threads."""
    t = readout.carry_t(rgb, haze.t_small)
    return readout.invert(rgb, t, haze.airlight, source), t


def dehaze(rgb: np.ndarray, run_network: RunNetwork, readout: ScatteringReadout, side: int | None,
           margin: int = MARGIN, strength: float = 1.0, source: Source = Source()) -> Dehazed:
    """Steps 1-6 on ``rgb`` (HxWx3 float32 [0, 1]); ``side`` None: the network sees the photo itself."""
    seconds: dict[str, float] = {}
    haze = _estimate(rgb, run_network, readout, side, margin, strength, seconds)
    start = time.perf_counter()
    image, t = render(rgb, haze, readout, source)
    seconds["readout"] += time.perf_counter() - start
    return Dehazed(image, t, haze, seconds)


def _estimate(rgb: np.ndarray, run_network: RunNetwork, readout: ScatteringReadout, side: int | None,
              margin: int, strength: float, seconds: dict[str, float]) -> Haze:
    t0 = time.perf_counter()
    small = shrink_to(rgb, side)
    t1 = time.perf_counter()
    outputs = network_outputs(run_network, small, margin)
    t2 = time.perf_counter()
    t_small, airlight = readout.estimate(small, outputs, strength)
    seconds.update(downscale=t1 - t0, network=t2 - t1, readout=time.perf_counter() - t2)
    return Haze(t_small, airlight)


def to_float_rgb(arr: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Array in any supported layout -> (HxWx3 float32 [0,1], function restoring layout/dtype)."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
        squeeze_back = True
    else:
        squeeze_back = False
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected HxW, HxWx1, HxWx3 or HxWx4 image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image of shape {arr.shape}")
    dtype = arr.dtype
    if dtype == np.uint8:
        scale = 255.0
    elif dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(dtype, np.floating):
        scale = 1.0
    else:
        raise ValueError(f"unsupported dtype {dtype}: use uint8, uint16 or float in [0, 1]")
    f = arr.astype(np.float32) / scale if scale != 1.0 else np.clip(np.nan_to_num(arr.astype(np.float32)), 0, 1)
    alpha = None
    grey = f.ndim == 2
    if grey:
        rgb = np.repeat(f[..., None], 3, axis=2)
    else:
        rgb = np.ascontiguousarray(f[..., :3])
        if f.shape[2] == 4:
            alpha = arr[..., 3]

    def restore(out: np.ndarray) -> np.ndarray:
        res = out @ np.asarray(LUMA, np.float32) if grey else out
        if scale != 1.0:
            res = np.clip(np.rint(res * scale), 0, scale).astype(dtype)
        else:
            res = res.astype(dtype)
        if alpha is not None:
            res = np.concatenate([res, alpha[..., None].astype(res.dtype)], axis=2)
        if squeeze_back:
            res = res[..., None]
        return res

    return rgb, restore
