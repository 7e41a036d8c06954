"""How a network's named outputs become a full-resolution clear image, per output kind
(numpy + OpenCV only, so both backends share it and the ONNX path stays torch-free).

* ``image`` (the paper's generator): the network writes J itself, in [-1, 1]; the Dehazer pads,
  tiles and guided-upsamples it (``odcr_cli.engine.tiling``), so this readout only names it.
* ``scattering``: the network writes the transmission t (and a correction of the airlight). The
  airlight is the dark-channel rule on the network's input plus that correction; t is carried
  to full resolution by a guided filter with the photo as guide, and J = (I - A) / t + A is
  computed at full resolution, so every pixel of the photo's own detail is kept; detail no
  stronger than what the camera and codec leave in this photo (grain, JPEG blocks, 8-bit steps:
  its noise floor, from its flattest regions and a JPEG's tables) keeps its own amplitude instead
  of gaining 1 / t (:func:`odcr_cli.haze.inversion.recover`, :mod:`odcr_cli.haze.noise`).
  ``--strength`` scales the haze removed (up to ``MAX_STRENGTH``;
  :func:`odcr_cli.haze.transmission.with_strength`), here where t is known; ``carry_t`` floors it
  at t_min.

The order of these steps, and the network's framing, is :mod:`odcr_cli.haze.pipeline`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from odcr_cli.haze.constants import AIRLIGHT_FLOOR, MODEL_SIDE, PATCH, T_MIN, TOP
from odcr_cli.haze.filters import upsample_transmission
from odcr_cli.haze.inversion import FLAT_SIGMA, recover, remove_haze_flat_aware
from odcr_cli.haze.noise import Source
from odcr_cli.haze.prior import airlight_rule, dcp_transmission
from odcr_cli.haze.transmission import transmission_from_residual, with_strength

Outputs = Mapping[str, np.ndarray]


def output_names(output: str, t_prior: str = "none") -> tuple[str, ...]:
    """Names of what a generator predicts, in the order of its ONNX outputs: ``image`` for the
    paper's output; for scattering ``t`` (or ``t_residual`` on the DCP prior) and the airlight
    correction. One definition for the networks (torch) and the readout (numpy)."""
    if output == "image":
        return ("image",)
    return ("t_residual" if t_prior == "dcp" else "t", "airlight_correction")


def model_side(generator_config: Mapping) -> int:
    """The side a scattering model's network runs at by default: the one it records
    (``inference_side``, a student distilled to run smaller), else :data:`~odcr_cli.haze.constants.MODEL_SIDE`."""
    side = generator_config.get("inference_side", 0)
    return side if isinstance(side, int) and side > 0 else MODEL_SIDE  # damaged metadata is no error


@dataclass(frozen=True)
class ImageReadout:
    """The paper's direct output: one named output ``image``, (1, 3, h, w) in [-1, 1]."""

    kind: str = "image"
    output_names: tuple[str, ...] = ("image",)
    # the network writes the image itself: the Dehazer runs it at full resolution (whole, tiled with
    # frozen statistics, or in fast mode with guided upsampling; odcr_cli.engine.tiling)
    writes_image: bool = True


@dataclass(frozen=True)
class ScatteringReadout:
    """Scattering output: ``t`` (1, 1, h, w) in [t_min, 1], or with the DCP prior the logit
    residual ``t_residual`` (1, 1, h, w) on the dark-channel-prior transmission of the network's
    input; and ``airlight_correction`` (1, 3)."""

    t_min: float = T_MIN
    airlight_patch: int = PATCH
    airlight_top: float = TOP
    t_prior: str = "none"
    flat_sigma: float = FLAT_SIGMA  # 0: the plain inversion, noise amplified by 1 / t everywhere
    noise_aware: bool = True  # False: luma detail amplified by 1 / t whatever the photo's noise floor
    kind: str = "scattering"
    writes_image: bool = False  # it writes t, which needs no full resolution: a small copy, never tiled

    @property
    def output_names(self) -> tuple[str, ...]:
        return output_names(self.kind, self.t_prior)

    def airlight_rule(self, net_in: np.ndarray) -> np.ndarray:
        """(3,) the dark-channel rule's airlight of the network's input (before the network's correction)."""
        return airlight_rule(net_in, self.airlight_patch, self.airlight_top)

    def estimate(self, net_in: np.ndarray, outputs: Outputs, strength: float = 1.0,
                 rule: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(hxw float32 transmission, (3,) airlight) of the network's input, each computed once, as
        :meth:`odcr_cli.core.networks.ResnetGenerator.haze_estimate` computes them in training: the
        airlight is the dark-channel rule plus the network's correction; with the DCP prior, t is
        the network's logit residual on the prior's t. ``strength``: as
        :func:`odcr_cli.haze.transmission.with_strength` (0: the input, 1: the network's t). ``rule``: the
        dark-channel rule's airlight to use (video passes one smoothed over time)."""
        h, w, _ = net_in.shape
        if "t" in outputs:
            t = np.ascontiguousarray(outputs["t"][0, 0, :h, :w], dtype=np.float32)
            rule = self.airlight_rule(net_in) if rule is None else rule
        else:
            t_dcp, rule = dcp_transmission(net_in, patch=self.airlight_patch, top=self.airlight_top, airlight=rule)
            t = transmission_from_residual(outputs["t_residual"][0, 0, :h, :w], t_dcp, self.t_min)
        correction = np.asarray(outputs["airlight_correction"], np.float32).reshape(-1)[:3]
        return with_strength(t, strength), np.clip(rule + correction, AIRLIGHT_FLOOR, 1.0).astype(np.float32)

    def carry_t(self, full_in: np.ndarray, t_small: np.ndarray) -> np.ndarray:
        """hxw ``t_small`` (of ``full_in`` or of a smaller copy of it) carried to ``full_in``
        (HxWx3) by a guided filter whose guide is the photo, floored at ``t_min``: HxW float32."""
        same = t_small.shape == full_in.shape[:2]  # the network saw the photo itself: nothing to carry
        t = np.maximum(t_small, self.t_min) if same else upsample_transmission(t_small, full_in)
        return np.maximum(t, self.t_min, out=t)

    def invert(self, full_in: np.ndarray, t: np.ndarray, airlight: np.ndarray,
               source: Source | None = Source()) -> np.ndarray:
        """J = (I - A) / t + A at full resolution, in [0, 1], amplifying the scene and not the camera
        (``odcr_cli.haze.inversion.recover``; ``source``: what the file says of its noise)."""
        if self.noise_aware:
            out = recover(full_in, t, airlight, source, self.flat_sigma)
        else:
            out = remove_haze_flat_aware(full_in, t, airlight, self.flat_sigma)
        return np.clip(out, 0.0, 1.0, out=out)


Readout = ImageReadout | ScatteringReadout


def readout_for(generator_config: Mapping | None) -> Readout:
    """The readout of a generator config (``GeneratorConfig.to_dict()``, as backends report it), or
    None / {} for a model without one: a CUT ``.pth`` is a direct model."""
    config = dict(generator_config or {})
    if config.get("output", "image") != "scattering":
        return ImageReadout()
    return ScatteringReadout(t_min=float(config.get("t_min", T_MIN)),
                             airlight_patch=int(config.get("airlight_patch", PATCH)),
                             airlight_top=float(config.get("airlight_top", TOP)),
                             t_prior=str(config.get("t_prior", "none")))
