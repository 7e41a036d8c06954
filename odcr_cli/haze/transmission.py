"""The transmission t, in numpy (its torch twin is :mod:`odcr_cli.haze.transmission_torch`).

A scattering network on the dark channel prior writes a logit residual r, and
t = t_min + (1 - t_min) sigmoid(r + logit(t_prior)), the prior's t clamped to
[PRIOR_CLAMP, 1 - PRIOR_CLAMP] of (t_min, 1) before its logit is taken: a zero residual
reproduces the prior, any residual gives t in (t_min, 1). ``--strength`` s removes that fraction
of the haze, t -> 1 - s (1 - t), up to 1, and reads the haze as s times as thick above it,
t -> t ** s. See docs/scattering.md."""

from __future__ import annotations

import numpy as np

from odcr_cli.haze.constants import PRIOR_CLAMP


def transmission_from_residual(residual: np.ndarray, t_prior: np.ndarray, t_min: float) -> np.ndarray:
    """The network's logit ``residual`` (hxw) on the prior's ``t_prior`` (hxw) -> t (hxw float32)."""
    u = np.clip((np.clip(t_prior, 0.0, 1.0) - t_min) / (1.0 - t_min), PRIOR_CLAMP, 1.0 - PRIOR_CLAMP)
    logit = residual + np.log(u) - np.log1p(-u)
    return (t_min + (1.0 - t_min) / (1.0 + np.exp(-logit))).astype(np.float32)


def with_strength(t: np.ndarray, strength: float) -> np.ndarray:
    """t with ``strength`` s of the haze removed, float32: up to 1, that fraction of the haze,
    1 - s (1 - t) (0: the input, 1: t); above 1, the haze read as s times as thick, t ** s (its
    optical depth -ln t times s). The two agree at 1. Above 1 the linear rule would reach the floor
    wherever t < 1 - 1 / s (in dense fog most of the photo: black, crushed skies at 2), where
    thicker haze keeps the order of the photo's depths (docs/scattering.md, "Strength")."""
    if strength == 1.0:
        return t
    if strength < 1.0:
        return (1.0 - strength * (1.0 - t)).astype(np.float32)
    return np.power(np.maximum(t, 0.0), np.float32(strength)).astype(np.float32)
