"""Dehazing a stream of frames (video) with state kept between them, so that the output does not
flicker. Photos stay stateless (:class:`~odcr_cli.engine.dehazer.Dehazer`); a
:class:`DehazeStream` wraps one and takes the frames of one shot after another in order.

Per frame, the steps of the method's pipeline (:mod:`odcr_cli.haze.pipeline`) with state between
frames (docs/video.md says why and how the settings were measured):

1. the frame's small copy (longer side at most the Dehazer's side, as for photos; ``--method dcp``:
   :data:`~odcr_cli.haze.constants.MODEL_SIDE` unless ``--max-side``);
2. a scene cut (colour histograms both far apart and shifted, ``cut`` and ``cut_shift``) resets
   everything below;
3. the camera's motion since the last frame (:mod:`odcr_cli.imaging.motion`): what the stream
   remembers is moved with it before it is used;
4. t and the airlight of the small copy. A scattering model runs its network every
   ``network_every`` frames only (and at every cut), each new pass blended into the last one
   (``field_blend``); between passes its last output, moved with the camera, is read out on the
   current frame, so that a model refining the dark-channel-prior transmission (the bundled
   default) still follows the current frame's own prior. ``--method dcp`` estimates them on every
   frame. The airlight is a moving average (``airlight_seconds``) that follows large changes at
   once; t may be averaged too where the scene is static (``t_seconds``, off by default);
5. the frame itself averaged over time along the camera's motion where the scene is static
   (``settle_seconds``): the codec's block noise and the sensor's grain change from frame to frame
   where the scene does not, and what is averaged away is not amplified by 1 / t;
6. t carried to full resolution with the frame of step 5 as the guide, and J computed there, as
   for photos (:func:`odcr_cli.haze.pipeline.render`).

Steps 1-5 (:meth:`DehazeStream.estimate`) are sequential; step 6 (:meth:`DehazeStream.render`)
is the costly one and keeps no state, so a pipeline may render several frames at once on threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.engine.options import Method
from odcr_cli.haze import pipeline
from odcr_cli.haze.constants import MODEL_SIDE
from odcr_cli.haze.filters import box
from odcr_cli.haze.network_input import shrink_to
from odcr_cli.haze.pipeline import Haze, to_float_rgb
from odcr_cli.haze.prior import dcp_transmission
from odcr_cli.haze.readout import ScatteringReadout
from odcr_cli.haze.transmission import with_strength
from odcr_cli.imaging.motion import global_motion, seen_before, warp

_HIST_BINS = 32
_IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
_SPREAD = np.ones((17, 17), np.uint8)


@dataclass(frozen=True)
class StreamConfig:
    """How a stream smooths over time (defaults chosen with ``benchmarks/video.py``)."""

    network_every: int = 10         # frames between two network passes (1: every frame)
    field_blend: float = 0.3        # weight of a new network pass against the last one moved along (1: replace)
    airlight_seconds: float = 0.5   # time constant of the airlight's moving average
    t_seconds: float = 0.0          # time constant of t where the scene is static (0: none; docs/video.md)
    motion: float = 0.01            # luma change (of 1) above which t follows the current frame alone
    airlight_jump: float = 0.03     # a change of the airlight this large is followed at once
    t_jump: float = 0.05            # and one of t
    cut: float = 0.3                # a scene cut: colour histograms this far apart (half the L1 distance, 0..1)
    cut_shift: float = 0.04         # and moved this far (earth mover's distance, of the range)
    settle_seconds: float = 0.1     # time constant of the frame's own average along the motion (0: off; docs/video.md)
    settle_motion: float = 3.0 / 255.0  # a luma change (5x5 mean) this large: the current frame alone there

    def __post_init__(self) -> None:
        if self.network_every < 1:
            raise ValueError("network_every must be at least 1")
        if self.settle_seconds < 0 or self.settle_motion <= 0:
            raise ValueError("settle_seconds must be 0 or more and settle_motion positive")


@dataclass(frozen=True)
class Estimated:
    """What :meth:`DehazeStream.estimate` hands to :meth:`DehazeStream.render`: the frame to render
    (averaged over time where the scene is static) and its haze."""

    frame: np.ndarray
    haze: Haze


class DehazeStream:
    """Frames of one video in order, each dehazed with the haze smoothed over time.

    ``DehazeStream(dehazer, fps=25.0, config=StreamConfig())``; ``push(frame)`` takes an HxWx3
    uint8/uint16/float frame and returns the dehazed one (same shape and dtype);
    ``estimate(rgb)`` and ``render(estimated)`` are its two halves for pipelines that render on
    threads. ``frames``, ``network_runs`` and ``cuts`` count what happened.

    A direct model (the paper's generator) has no haze to smooth: its frames are dehazed one by
    one as photos (``smoothed`` is False)."""

    def __init__(self, dehazer: Dehazer, fps: float = 25.0, config: StreamConfig = StreamConfig()) -> None:
        self.dehazer, self.config = dehazer, config
        dcp = dehazer.method is Method.DCP
        self.readout = ScatteringReadout(flat_sigma=0.0, noise_aware=False) if dcp else dehazer.readout
        self.smoothed = isinstance(self.readout, ScatteringReadout)
        # the network's side as for photos (--max-side 0: full resolution as far as the memory
        # budget allows, chosen at the first frame); dcp, full resolution on photos unless
        # --max-side, estimates on a MODEL_SIDE copy here unless told otherwise
        self.side = dehazer.max_side if not dcp else dehazer.max_side or MODEL_SIDE
        self._side_chosen = self.side is not None or dcp
        step = 1.0 / max(fps, 1e-3)
        self._a_airlight = _blend(step, config.airlight_seconds)
        self._a_t = _blend(step, config.t_seconds)
        self._a_frame = _blend(step, config.settle_seconds)
        self.frames = self.network_runs = self.cuts = 0
        self.reset()

    def reset(self) -> None:
        """Forget the past (the next frame is treated as a new shot)."""
        self._field: np.ndarray | None = None      # the network's last t map (hxw), moved with the camera
        self._correction: np.ndarray | None = None  # and its airlight correction
        self._since_network = 0
        self._luma = self._luma8 = self._hist = None
        self._rule = self._t = self._airlight = None
        self._settled: np.ndarray | None = None      # the frame averaged along the motion (full size)

    # -- the two halves ------------------------------------------------------------------------
    def estimate(self, rgb: np.ndarray) -> Estimated:
        """HxWx3 float32 [0, 1] frame -> what :meth:`render` needs of it, the stream's state
        updated (steps 1-5)."""
        if not self._side_chosen:
            self.side, self._side_chosen = self.dehazer.network_side(*rgb.shape[:2]), True
        small = shrink_to(rgb, self.side)
        luma = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        luma8 = np.clip(luma * 255.0 + 0.5, 0, 255).astype(np.uint8)
        hist = _histogram(small)
        cut = self._hist is not None and _is_cut(self._hist, hist, self.config)
        if cut:
            self.reset()
            self.cuts += 1
        matrix = None if self._luma8 is None else self._motion(luma8)
        rule = self.readout.airlight_rule(small)
        self._rule = rule if self._rule is None else self._smooth_airlight(self._rule, rule)
        t, airlight = self._raw(small, matrix)
        if self._t is None or matrix is None:
            self._t, self._airlight = t, airlight
        else:
            self._t = self._smooth_t(t, luma, matrix) if self._a_t < 1.0 else t
            self._airlight = self._smooth_airlight(self._airlight, airlight)
        self._luma, self._luma8, self._hist = luma, luma8, hist
        self.frames += 1
        return Estimated(self._settle(rgb, matrix, small.shape[:2]),
                         Haze(with_strength(self._t, self.dehazer.strength), self._airlight.copy()))

    def _settle(self, rgb: np.ndarray, matrix: np.ndarray | None, small: tuple[int, int]) -> np.ndarray:
        """The frame averaged over time along the camera's motion where the scene is static
        (``settle_seconds``): a codec's block noise and a sensor's grain differ from frame to frame
        where the sky does not, so the average keeps the sky and loses much of the noise that the
        inversion would amplify. Where the moved average and the frame differ by ``settle_motion``
        or more (5x5 mean of the luma), the frame follows itself at once."""
        if self._a_frame >= 1.0:
            return rgb
        if self._settled is None or matrix is None or self._settled.shape != rgb.shape:
            self._settled = rgb.copy()
            return rgb
        h, w = rgb.shape[:2]
        full = _at_full_size(matrix, (h / small[0], w / small[1]))
        previous = self._settled
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float32)
        if np.abs(corners @ (full - _IDENTITY).T).max() > 0.25:  # a still camera: no resampling blur to build up
            previous = cv2.warpAffine(previous, full, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        change = box(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) - cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY), 2)
        # (change / settle_motion)^2: the noise's own small changes barely count, a real one in full
        follow = cv2.multiply(change, change, scale=(1.0 - self._a_frame) / self.config.settle_motion ** 2)
        np.minimum(follow, 1.0 - self._a_frame, out=follow)
        # spread over the neighbourhood and softened (17x17, more than a codec's 16-px block): where the
        # codec redrew one block and not the next, the average must not switch off at the block's edge
        follow = box(cv2.dilate(follow, _SPREAD), _SPREAD.shape[0] // 2)
        follow += np.float32(self._a_frame)
        # one pass of OpenCV's over the three channels (numpy's broadcasting of the weight costs five times as much)
        self._settled = cv2.blendLinear(rgb, previous, follow, 1.0 - follow)
        return self._settled

    def _motion(self, luma8: np.ndarray) -> np.ndarray:
        """The camera's motion since the last frame, where something moves with it (the network's
        last output, t or the frame averaged over time); else none is assumed and none is looked for."""
        if self._a_t == 1.0 and self._a_frame == 1.0 and self.dehazer.method is Method.DCP:
            return _IDENTITY
        matrix = global_motion(self._luma8, luma8)
        return _IDENTITY if matrix is None else matrix

    def _smooth_t(self, t: np.ndarray, luma: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """t averaged over time where the scene is static (``t_seconds``): the current frame's t
        where the scene moves, where the last frame did not see it, or where t changed by more
        than jitter."""
        previous_t, previous_luma = warp(self._t, matrix), warp(self._luma, matrix)
        moving = box(np.abs(luma - previous_luma), 2) / self.config.motion
        moving = np.maximum(moving, np.abs(t - previous_t) / self.config.t_jump)
        moving[~seen_before(luma.shape, matrix)] = 1.0
        follow = self._a_t + (1.0 - self._a_t) * np.minimum(moving, 1.0)
        return (previous_t + follow * (t - previous_t)).astype(np.float32)

    def _smooth_airlight(self, previous: np.ndarray, new: np.ndarray) -> np.ndarray:
        """The moving average of the airlight, which follows a change larger than jitter at once."""
        jump = min(1.0, float(np.abs(new - previous).max()) / self.config.airlight_jump)
        follow = self._a_airlight + (1.0 - self._a_airlight) * jump
        return (previous + follow * (new - previous)).astype(np.float32)

    def _raw(self, small: np.ndarray, matrix: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """This frame's unsmoothed t and airlight (with the smoothed airlight rule); between network
        passes the last t map follows the camera (``matrix``)."""
        if self.dehazer.method is Method.DCP:
            t, airlight = dcp_transmission(small, airlight=self._rule)
            return np.clip(t, 0.0, 1.0).astype(np.float32), airlight
        h, w = small.shape[:2]
        name = self.readout.output_names[0]  # "t" or "t_residual": the map; then the correction
        moved = None if self._field is None else warp(self._field, matrix if matrix is not None else _IDENTITY)
        if moved is None or self._since_network >= self.config.network_every - 1:
            outputs = self.dehazer.network_outputs(small)
            new = np.ascontiguousarray(outputs[name][0, 0, :h, :w], dtype=np.float32)
            correction = np.asarray(outputs["airlight_correction"], np.float32)
            if moved is not None:  # a new pass is blended in: its step would be a flicker every few frames
                new = moved + self.config.field_blend * (new - moved)
                correction = self._correction + self.config.field_blend * (correction - self._correction)
            self._field, self._correction = new, correction
            self._since_network = 0
            self.network_runs += 1
        else:
            self._field = moved
            self._since_network += 1
        outputs = {name: self._field[None, None], "airlight_correction": self._correction}
        return self.readout.estimate(small, outputs, rule=self._rule)

    def render(self, estimated: Estimated) -> np.ndarray:
        """A frame's :meth:`estimate` -> the dehazed frame, HxWx3 float32 [0, 1] (step 6; no state)."""
        return pipeline.render(estimated.frame, estimated.haze, self.readout)[0]

    # -- one call per frame -------------------------------------------------------------------------
    def push(self, frame: np.ndarray) -> np.ndarray:
        """Dehaze the next frame (HxWx3 uint8/uint16/float in [0, 1]); same shape and dtype out."""
        if not self.smoothed or self.dehazer.strength == 0.0:
            self.frames += 1
            return self.dehazer.dehaze(frame)
        rgb, restore = to_float_rgb(np.asarray(frame))
        return restore(self.render(self.estimate(rgb)))


def _blend(step: float, seconds: float) -> float:
    """The weight of the new value in a moving average with time constant ``seconds`` sampled
    every ``step`` seconds (1: no memory)."""
    return 1.0 if seconds <= 0 else 1.0 - math.exp(-step / seconds)


def _at_full_size(matrix: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """A 2x3 motion measured on the small copy -> the same motion in pixels of the frame, whose
    rows and columns are ``scale`` (sy, sx) times the small copy's."""
    sy, sx = scale
    up, down = np.diag([sx, sy]).astype(np.float32), np.diag([1.0 / sx, 1.0 / sy]).astype(np.float32)
    return np.hstack([up @ matrix[:, :2] @ down, up @ matrix[:, 2:]]).astype(np.float32)


def _is_cut(before: np.ndarray, after: np.ndarray, config: StreamConfig) -> bool:
    """Two (3, bins) histograms of consecutive frames: another shot? Both the L1 distance and the
    earth mover's distance must be large: noise and an exposure change move a hazy frame's narrow
    histogram across bins (large L1) but not far (small EMD)."""
    l1 = 0.5 * float(np.abs(after - before).sum(axis=1).mean())
    emd = float(np.abs(np.cumsum(after - before, axis=1)).mean())
    return l1 > config.cut and emd > config.cut_shift


def _histogram(small: np.ndarray) -> np.ndarray:
    """(3, bins) colour histograms of a small copy, each summing to 1 (every other pixel)."""
    sample = small[::2, ::2].reshape(-1, 3)
    counts = [np.bincount(np.minimum((sample[:, c] * _HIST_BINS).astype(np.int32), _HIST_BINS - 1),
                          minlength=_HIST_BINS) for c in range(3)]
    return np.stack(counts).astype(np.float32) / max(1, sample.shape[0])
