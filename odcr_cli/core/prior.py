"""The dark channel prior's settings and window rules, written once for its two implementations:
numpy + OpenCV at inference (:mod:`odcr_cli.imaging.dcp`) and torch in training
(:mod:`odcr_cli.core.haze`). A network learns a residual on the torch prior and is applied to the
numpy one, so the two must be one function: same windows, same clamps, same floors and the same
border rule (reflect without repeating the edge pixel, OpenCV's ``BORDER_REFLECT_101``, torch's
``reflect``). ``tests/test_dcp.py`` pins them together. See docs/scattering.md. No imports."""

from __future__ import annotations

PATCH = 15           # dark-channel window (He et al.)
OMEGA = 0.95         # fraction of the haze the prior removes
TOP = 0.001          # airlight: mean colour of this fraction of the brightest dark-channel pixels
EPS = 1e-3           # guided-filter regularisation of t
AIRLIGHT_FLOOR = 0.05  # a black photo must not divide by ~0


def patch_for(h: int, w: int, patch: int = PATCH) -> int:
    """The dark-channel window for an h x w image: odd, and no larger than the image allows."""
    return max(1, min(patch, 2 * (min(h, w) // 2) + 1))


def radius_for(h: int, w: int, radius: int | None = None) -> int:
    """The guided filter's radius of the transmission: 60 px for a 600-px image, scaled with the
    shorter side (at least 4), and always below the shorter side (a reflected border needs it)."""
    if radius is None:
        radius = max(4, round(60 * min(h, w) / 600))
    return max(1, min(radius, min(h, w) - 1))
