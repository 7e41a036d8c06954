"""The scattering model's inversion, amplifying the scene and not the camera.

J = (I - A) / t + A multiplies everything that is not haze by 1 / t, the camera's and the codec's
errors included: in dense fog the gain reaches 5 to 10, a JPEG's 8x8 blocks become a grid, a
video's macroblocks a checkerboard, the 1-level steps of an 8-bit sky contour rings, grain specks,
and JPEG's chroma, stored at half resolution in 8x8 blocks (16x16 pixels), cyan, magenta and
brown blotches. Here the photo's detail D = I - B (B a box mean over 65x65 pixels, larger than
the blocks) is split into its luma and its chroma (D minus its luma, per channel), and the luma
into bands by scale; the haze is removed from B with 1 / t, and each part of D gets a gain
1 + (1 / t - 1) w that falls to 1 where that part is no more than what the camera and codec leave:

* :func:`recover` (the default): the luma's bands get w from their local energy against the
  photo's own noise floor in each band (``odcr_cli.haze.noise``: measured in its flattest
  regions, and no lower than what the file's quantisation says). Detail at the floor keeps its
  input amplitude, detail well above it is the plain inversion; a clean photo's floor is its
  8-bit step, so its texture is inverted as before. The chroma gets the rule below, and only
  where the luma's coarsest band says the scene has shapes.
* :func:`remove_haze_flat_aware` (the chroma rule alone, the default until 2026-12-07): the
  chroma's w = v / (v + sigma^2), v the variance of the luma's fine detail over 9x9 pixels (a
  Wiener-style weight); the luma is inverted plainly.

The separation is linear (box means), so B + D is the photo exactly, and the result is the plain
inversion wherever every w is 1. See docs/scattering.md. numpy + OpenCV, on top of the one
definition of the inversion (``odcr_cli.haze.scattering``); a grey conversion, a dozen box filters
at full resolution and a percentile of a subsampled map per band.
"""

from __future__ import annotations

import cv2
import numpy as np

from odcr_cli.haze.filters import box
from odcr_cli.haze.noise import Source, noise_floor
from odcr_cli.haze.scattering import remove_haze

# sigma: the luma detail amplitude (in [0, 1] units, ~6 levels of 255) below which a region
# counts as flat, measured over (2 FLAT_RADIUS + 1)^2 pixels; CHROMA_RADIUS: the box whose mean
# is the chroma base, larger than a JPEG's 16-px chroma blocks. Chosen on the dev pairs and
# dev/real_hazy with benchmarks/readout_arms.py, and by looking at a dense-fog JPEG sky
# (weights/MODEL_CARD.md).
FLAT_SIGMA = 0.025
FLAT_RADIUS = 4
CHROMA_RADIUS = 32


def remove_haze_flat_aware(hazy: np.ndarray, t: np.ndarray, airlight: np.ndarray,
                           sigma: float = FLAT_SIGMA) -> np.ndarray:
    """hazy (H, W, 3) float32 in [0, 1], t (H, W) or (H, W, 1) floored (> 0), airlight (3,) ->
    J (H, W, 3) float32, not clipped. ``sigma`` 0 gives the plain inversion
    (:func:`odcr_cli.haze.scattering.remove_haze`)."""
    t2 = t.reshape(t.shape[0], t.shape[1])
    out = _plain(hazy, t2, airlight)
    if sigma > 0:
        luma = cv2.cvtColor(hazy, cv2.COLOR_RGB2GRAY)
        _damp_chroma(out, hazy, t2, luma, luma - box(luma, CHROMA_RADIUS), sigma)
    return out


def _plain(hazy: np.ndarray, t2: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    return remove_haze(hazy, t2[..., None], np.asarray(airlight, np.float32).reshape(3)).astype(np.float32, copy=False)


def _damp_chroma(out: np.ndarray, hazy: np.ndarray, t2: np.ndarray, luma: np.ndarray, luma_detail: np.ndarray,
                 sigma: float, kept: np.ndarray | None = None, gain: np.ndarray | None = None) -> None:
    """The chroma rule on ``out`` (the plain inversion), in place; ``luma_detail``: the luma less its
    CHROMA_RADIUS box mean (the box mean is linear, so the luma of the detail is the detail of the
    luma); ``kept``: 1 - w2 of a second weight w2 that the chroma's w is multiplied by; ``gain``:
    1 / t - 1 if known."""
    fine = luma - box(luma, FLAT_RADIUS)
    var = box(fine * fine, FLAT_RADIUS)
    # the chroma detail's gain minus the plain gain: -(1/t - 1)(1 - w), with 1 - w = s^2 / (v + s^2),
    # or, times a second weight w2 = 1 - k, 1 - w2 v / (v + s^2) = (k v + s^2) / (v + s^2)
    s2 = sigma * sigma
    cut = s2 / (var + s2) if kept is None else (kept * var + s2) / (var + s2)
    cut *= (1.0 / t2 - 1.0) if gain is None else gain
    chroma = box(hazy, CHROMA_RADIUS)
    np.subtract(hazy, chroma, out=chroma)
    chroma -= luma_detail[..., None]
    chroma *= cut[..., None]
    out -= chroma


# The luma detail's gain is 1 + (1 / t - 1) w, w rising smoothly from 0 where the detail's local
# energy is FLOOR_LOW times the photo's noise floor (odcr_cli.haze.noise) to 1 from FLOOR_HIGH
# times it: detail at the floor keeps its input amplitude, detail 2.8 times the floor's amplitude
# is the plain inversion. Chosen with benchmarks/clean_recovery.py (docs/scattering.md): 8 rather
# than 4 keeps a dense-fog JPEG's specks (isolated, a few times the floor) near their input
# amplitude, at 0.01 dB on the clean dev pairs.
FLOOR_LOW = 1.0
FLOOR_HIGH = 8.0
# The detail is split at these box radii into bands, each with its own floor: below 5x5 pixels a
# sensor's grain, 5 to 17 pixels a JPEG's 8x8 blocks and a codec's 16x16 macroblocks, 17 to 65
# pixels the 8-bit steps of slow gradients and the skirts of strong edges. A band's floor is its own
# energy in flat regions: grain does not hide a far skyline's shapes (mostly above 5 px), and a
# strong edge's skirt is not judged against the blocks' floor (which painted halos around it).
BAND_RADII = (2, 8)


def detail_weight(energy: np.ndarray, floor: float) -> np.ndarray:
    """w in [0, 1] of the detail whose local energy is ``energy`` over a photo whose noise floor
    (a variance) is ``floor``: 0 at or below FLOOR_LOW x floor, 1 from FLOOR_HIGH x floor (smoothstep)."""
    return 1.0 - _kept(energy, floor)


def _kept(energy: np.ndarray, floor: float) -> np.ndarray:
    """1 - :func:`detail_weight`, in place of ``energy``: with x the position between the two
    thresholds, 1 - x^2 (3 - 2 x) = y^2 (3 - 2 y) for y = 1 - x (a few full-resolution passes)."""
    span = (FLOOR_HIGH - FLOOR_LOW) * floor
    y = np.multiply(energy, np.float32(-1.0 / span), out=energy)
    y += np.float32(FLOOR_HIGH * floor / span)
    np.clip(y, 0.0, 1.0, out=y)
    factor = 3.0 - 2.0 * y
    y *= y
    y *= factor
    return y


def recover(hazy: np.ndarray, t: np.ndarray, airlight: np.ndarray, source: Source | None = Source(),
            sigma: float = FLAT_SIGMA) -> np.ndarray:
    """J of ``hazy`` (H, W, 3) float32 in [0, 1] under ``t`` (H, W), floored, and ``airlight`` (3,),
    amplifying the scene and not the camera. The luma of the detail D = I - B (B the 65x65 box
    mean), split into bands at BAND_RADII, gets per band 1 + (1 / t - 1) w, w from the band's
    local energy over 9x9 pixels against this photo's floor in that band (:func:`detail_weight`,
    :func:`odcr_cli.haze.noise.noise_floor`; ``source``: what the file says of its own
    quantisation, None: nothing); its chroma gets the chroma rule of :func:`remove_haze_flat_aware`
    times the coarsest band's w. On a clean photo the floors are the 8-bit step's and this is the
    plain inversion wherever there is texture. Not clipped."""
    t2 = t.reshape(t.shape[0], t.shape[1])
    out = _plain(hazy, t2, airlight)
    luma = cv2.cvtColor(hazy, cv2.COLOR_RGB2GRAY)
    detail = luma - box(luma, CHROMA_RADIUS)
    bases = [luma] + [box(luma, r) for r in BAND_RADII] + [luma - detail]
    keep = np.zeros_like(luma)  # the detail that keeps its input amplitude: (1 - w) per band
    h, w = luma.shape
    half = (max(1, w // 2), max(1, h // 2))
    luma_half = cv2.resize(luma, half, interpolation=cv2.INTER_AREA)
    kept = np.zeros_like(luma)
    for upper, lower in zip(bases[:-1], bases[1:]):
        band = upper - lower
        # the local energy is smooth: measured on 2x2 means of band^2, its weight carried back up
        energy = box(cv2.resize(band * band, half, interpolation=cv2.INTER_AREA), FLAT_RADIUS // 2)
        floor = noise_floor(energy, luma_half, source)
        if floor <= 0:
            kept = np.zeros_like(luma)
            continue
        kept = cv2.resize(_kept(energy, floor), (w, h), interpolation=cv2.INTER_LINEAR)
        band *= kept
        keep += band
    gain = 1.0 / t2 - 1.0  # the plain gain of the detail less the 1 that it keeps
    if sigma > 0:  # the chroma is amplified only where the luma's shapes are (w of the coarsest band)
        _damp_chroma(out, hazy, t2, luma, detail, sigma, kept, gain)
    keep *= gain
    out -= keep[..., None]
    return out
