"""``--keep-exposure``: give a dehazed photo back the overall brightness of its input.

Removing a bright veil darkens a photo by physics (a foggy street's mean luma 197 -> 136), which
is faithful but not always what a user wants. The curve here is a power x -> x ** g of each
channel, with one g per photo chosen so that the output's mean luma equals the input's: it fixes
0 and 1, so nothing clips and the darkest and brightest pixels stay where they were; it is
monotone, so no contrast is inverted; and one exponent for the three channels keeps neutral greys
neutral. numpy only: g by bisection on a subsample, a few ms.
"""

from __future__ import annotations

import numpy as np

from odcr_cli.haze.constants import LUMA as _LUMA

LUMA = np.asarray(_LUMA, np.float32)  # BT.601, as the artefact measures and cv2's grey
# g is searched in [1 / GAMMA_RANGE, GAMMA_RANGE] (a mean brought from 0.25 to 0.75 needs g ~ 0.2)
GAMMA_RANGE = 8.0
STEPS = 24  # bisection steps on log g: (2 ln 8) / 2^24, far below one 16-bit level
STRIDE = 4  # the means are read on every STRIDE-th pixel of each row and column


def exposure_gamma(out: np.ndarray, reference: np.ndarray) -> float:
    """g such that the mean luma of ``out ** g`` is that of ``reference`` (both (H, W, 3) in [0, 1]),
    within [1 / GAMMA_RANGE, GAMMA_RANGE]."""
    sample = np.clip(out[::STRIDE, ::STRIDE].astype(np.float32), 0.0, 1.0)
    goal = float((reference[::STRIDE, ::STRIDE] @ LUMA).mean())
    lo, hi = -np.log(GAMMA_RANGE), np.log(GAMMA_RANGE)
    for _ in range(STEPS):  # the mean of x ** g falls as g grows
        mid = 0.5 * (lo + hi)
        if float((sample ** np.float32(np.exp(mid)) @ LUMA).mean()) > goal:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def keep_exposure(out: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``out`` (H, W, 3) in [0, 1] through the power curve that restores ``reference``'s mean luma."""
    g = exposure_gamma(out, reference)
    return np.power(np.clip(out, 0.0, 1.0), np.float32(g)).astype(np.float32)
