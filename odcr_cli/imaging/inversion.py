"""The scattering model's inversion without amplifying colour noise where the photo is flat.

J = (I - A) / t + A multiplies everything that is not haze by 1 / t, noise and a JPEG's blocks
included: in dense fog over a flat grey sky the gain reaches 10, and JPEG's chroma, stored at half
resolution in 8x8 blocks (16x16 pixels), becomes cyan, magenta and brown blotches. Here the
photo's detail D = I - B (B a box mean over 65x65 pixels, larger than the blocks) is split into
its luma and its chroma (D minus its luma, per channel). Everything is inverted with 1 / t except
the chroma of the detail, whose gain falls from 1 / t to 1 where the photo is flat:
1 + (1 / t - 1) w, w = v / (v + sigma^2), v the variance of the luma's fine detail over 9x9
pixels (a Wiener-style weight). Where there is texture (v >> sigma^2) this is the
plain inversion; in flat fog and sky the colour noise keeps its input amplitude. Luma is left to
the plain inversion: damping it too costs fidelity and FADE (it counts fine luma contrast as
clarity) for little visible gain. See docs/scattering.md.

numpy + OpenCV, on top of the one definition of the inversion (``odcr_cli.core.scattering``);
the weight costs a grey conversion and a few box filters at full resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from odcr_cli.core.scattering import remove_haze
from odcr_cli.imaging.filters import box
from odcr_cli.imaging.noise import Source, noise_floor

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
    (:func:`odcr_cli.core.scattering.remove_haze`)."""
    t2 = t.reshape(t.shape[0], t.shape[1])
    out = _plain(hazy, t2, airlight)
    if sigma > 0:
        luma = cv2.cvtColor(hazy, cv2.COLOR_RGB2GRAY)
        _damp_chroma(out, hazy, t2, luma, luma - box(luma, CHROMA_RADIUS), sigma)
    return out


def _plain(hazy: np.ndarray, t2: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    return remove_haze(hazy, t2[..., None], np.asarray(airlight, np.float32).reshape(3)).astype(np.float32, copy=False)


def _damp_chroma(out: np.ndarray, hazy: np.ndarray, t2: np.ndarray, luma: np.ndarray, luma_detail: np.ndarray,
                 sigma: float, weight: np.ndarray | None = None) -> None:
    """The chroma rule on ``out`` (the plain inversion), in place; ``luma_detail``: the luma less its
    CHROMA_RADIUS box mean (the box mean is linear, so the luma of the detail is the detail of the luma)."""
    fine = luma - box(luma, FLAT_RADIUS)
    var = box(fine * fine, FLAT_RADIUS)
    # the chroma detail's gain minus the plain gain: -(1/t - 1)(1 - w), with 1 - w = s^2 / (v + s^2)
    w = var / (var + sigma * sigma) if weight is None else weight * var / (var + sigma * sigma)
    cut = (1.0 / t2 - 1.0) * (1.0 - w)
    for c in range(3):
        channel = np.ascontiguousarray(hazy[..., c])
        out[..., c] -= cut * (channel - box(channel, CHROMA_RADIUS) - luma_detail)


# The luma detail's gain is 1 + (1 / t - 1) w, w rising smoothly from 0 where the detail's local
# energy is FLOOR_LOW times the photo's noise floor (odcr_cli.imaging.noise) to 1 from FLOOR_HIGH
# times it: detail at the floor keeps its input amplitude, detail twice the floor's amplitude is
# the plain inversion. Chosen with benchmarks/clean_recovery.py (docs/scattering.md).
FLOOR_LOW = 1.0
FLOOR_HIGH = 4.0
# the fine band is the luma less its (2 FINE_RADIUS + 1)^2 mean: a sensor's grain lives there,
# the scene's faint shapes (a far skyline in smog) mostly above it
FINE_RADIUS = 2


def detail_weight(energy: np.ndarray, floor: float) -> np.ndarray:
    """w in [0, 1] of the detail whose local energy is ``energy`` over a photo whose noise floor
    (a variance) is ``floor``: 0 at or below FLOOR_LOW x floor, 1 from FLOOR_HIGH x floor (smoothstep)."""
    x = np.clip((energy / np.float32(floor) - FLOOR_LOW) / (FLOOR_HIGH - FLOOR_LOW), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def recover(hazy: np.ndarray, t: np.ndarray, airlight: np.ndarray, source: Source | None = Source(),
            sigma: float = FLAT_SIGMA) -> np.ndarray:
    """J of ``hazy`` (H, W, 3) float32 in [0, 1] under ``t`` (H, W), floored, and ``airlight`` (3,),
    amplifying the scene and not the camera: as :func:`remove_haze_flat_aware` (the chroma rule),
    and the luma of the detail D = I - B (B the 65x65 box mean), split into a fine band (I less
    its 5x5 mean: grain) and the rest (blocks, 8-bit steps, the scene's shapes), gets per band
    1 + (1 / t - 1) w, w from the band's local energy over 9x9 pixels against this photo's noise
    floor in that band (:func:`detail_weight`, :func:`odcr_cli.imaging.noise.noise_floor`;
    ``source``: what the file says, None: nothing). Not clipped."""
    t2 = t.reshape(t.shape[0], t.shape[1])
    out = _plain(hazy, t2, airlight)
    luma = cv2.cvtColor(hazy, cv2.COLOR_RGB2GRAY)
    detail = luma - box(luma, CHROMA_RADIUS)
    fine = luma - box(luma, FINE_RADIUS)
    keep = np.zeros_like(luma)  # the detail that keeps its input amplitude: (1 - w) per band
    w = None
    for band in (fine, detail - fine):
        energy = box(band * band, FLAT_RADIUS)
        floor = noise_floor(energy, luma, source)
        w = detail_weight(energy, floor) if floor > 0 else np.ones_like(luma)
        keep += (1.0 - w) * band
    if sigma > 0:  # the chroma is amplified only where the luma's shapes are (w of the coarser band)
        _damp_chroma(out, hazy, t2, luma, detail, sigma, w)
    out -= ((1.0 / t2 - 1.0) * keep)[..., None]
    return out
