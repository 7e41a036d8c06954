"""The transmission's parametrisation in torch, for training and distillation: the same function
as :mod:`odcr_cli.haze.transmission` (numpy, inference), where it is described."""

from __future__ import annotations

import torch
from torch import Tensor

from odcr_cli.haze.constants import PRIOR_CLAMP


def transmission_from_logit(logit: Tensor, t_min: float) -> Tensor:
    """t = t_min + (1 - t_min) sigmoid(logit): any real logit -> t in (t_min, 1)."""
    return t_min + (1.0 - t_min) * torch.sigmoid(logit)


def prior_logit(t: Tensor, t_min: float) -> Tensor:
    """Inverse of :func:`transmission_from_logit` for a prior transmission t, clamped so that a
    zero residual reproduces t wherever t_min + 1% <= t <= 99%."""
    u = ((t - t_min) / (1.0 - t_min)).clamp(PRIOR_CLAMP, 1.0 - PRIOR_CLAMP)
    return torch.log(u) - torch.log1p(-u)


def transmission_from_residual(residual: Tensor, t_prior: Tensor, t_min: float) -> Tensor:
    """The network's logit ``residual`` on the prior's ``t_prior`` (both (B, 1, H, W)) -> t."""
    return transmission_from_logit(residual + prior_logit(t_prior, t_min), t_min)
