"""The transmission t, in numpy (its torch twin is :mod:`odcr_cli.haze.transmission_torch`).

A scattering network on the dark channel prior writes a logit residual r, and
t = t_min + (1 - t_min) sigmoid(r + logit(t_prior)), the prior's t clamped to
[PRIOR_CLAMP, 1 - PRIOR_CLAMP] of (t_min, 1) before its logit is taken: a zero residual
reproduces the prior, any residual gives t in (t_min, 1). ``--strength`` s removes that fraction
of the haze: t -> 1 - s (1 - t). See docs/scattering.md."""

from __future__ import annotations

import numpy as np

from odcr_cli.haze.constants import PRIOR_CLAMP


def transmission_from_residual(residual: np.ndarray, t_prior: np.ndarray, t_min: float) -> np.ndarray:
    """The network's logit ``residual`` (hxw) on the prior's ``t_prior`` (hxw) -> t (hxw float32)."""
    u = np.clip((np.clip(t_prior, 0.0, 1.0) - t_min) / (1.0 - t_min), PRIOR_CLAMP, 1.0 - PRIOR_CLAMP)
    logit = residual + np.log(u) - np.log1p(-u)
    return (t_min + (1.0 - t_min) / (1.0 + np.exp(-logit))).astype(np.float32)


def with_strength(t: np.ndarray, strength: float) -> np.ndarray:
    """t with ``strength`` s of the haze removed: 1 - s (1 - t), float32 (0: the input, 1: t)."""
    return t if strength == 1.0 else (1.0 - strength * (1.0 - t)).astype(np.float32)
