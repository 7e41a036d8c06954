"""The dark channel prior in torch, for training: the dark channel, the atmospheric-light rule and
the prior's transmission with guided-filter refinement (He, Sun, Tang 2009, 2010). Pure functions
of batched tensors (B, C, H, W) in [0, 1], the same functions as the numpy ones of
:mod:`odcr_cli.haze.prior` (same windows, same reflect borders, same top fraction), so that a
model's training (here) and its inference (numpy) estimate the same airlight and prior.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from odcr_cli.haze import guided
from odcr_cli.haze.constants import AIRLIGHT_FLOOR, EPS, LUMA, OMEGA, PATCH, TOP
from odcr_cli.haze.prior import patch_for, radius_for


def _reflect_pad(x: Tensor, r: int) -> Tensor:
    # reflect needs r < size; fall back to replicate on tiny inputs
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    return F.pad(x, (r, r, r, r), mode=mode)


def min_filter(x: Tensor, patch: int) -> Tensor:
    """Minimum over patch x patch windows (patch odd), borders reflected: (B, C, H, W) -> same."""
    r = patch // 2
    return -F.max_pool2d(_reflect_pad(-x, r), patch, stride=1)


def dark_channel(rgb: Tensor, patch: int) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): minimum over colour, then over a patch x patch window."""
    return min_filter(rgb.amin(dim=1, keepdim=True), patch)


def brightest(values: Tensor, n: int) -> Tensor:
    """(B, N) -> (B, n) indices of the n largest values of each row; ties go to the lowest index
    (as :func:`odcr_cli.haze.prior.atmospheric_light`), so the two agree on plateaus."""
    threshold = values.topk(n, dim=1).values[:, -1:]  # (B, 1) the n-th largest
    position = torch.arange(values.shape[1], device=values.device).expand_as(values)
    # above the threshold first, then the tied ones by position: one key that sorts both
    key = torch.where(values > threshold, -1, torch.where(values == threshold, position, values.shape[1]))
    return key.topk(n, dim=1, largest=False, sorted=False).indices


def estimate_airlight(rgb: Tensor, patch: int = PATCH, top: float = TOP) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3): mean colour at the ``top`` fraction of the brightest
    dark-channel pixels of each image, floored. No gradient (a rule, not a model)."""
    with torch.no_grad():
        b, _, h, w = rgb.shape
        dark = dark_channel(rgb, patch_for(h, w, patch)).reshape(b, -1)
        n = max(1, int(h * w * top))
        idx = brightest(dark, n)  # (B, n)
        colours = torch.gather(rgb.reshape(b, 3, -1), 2, idx[:, None, :].expand(b, 3, n))
        return colours.mean(dim=2).clamp_min(AIRLIGHT_FLOOR)


def box_filter(x: Tensor, r: int) -> Tensor:
    """Mean over (2r+1)^2 windows, borders reflected: (B, C, H, W) -> same."""
    return F.avg_pool2d(_reflect_pad(x, r), 2 * r + 1, stride=1)


def guided_filter(guide: Tensor, src: Tensor, r: int, eps: float) -> Tensor:
    """Grey-guide guided filter: guide and src (B, 1, H, W) -> (B, 1, H, W)."""
    return guided.guided_filter(box_filter, guide, src, r, eps)


def grey(rgb: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma (OpenCV's RGB2GRAY weights)."""
    w = rgb.new_tensor(LUMA).view(1, 3, 1, 1)
    return (rgb * w).sum(dim=1, keepdim=True)


def dcp_transmission(rgb: Tensor, airlight: Tensor, patch: int = PATCH, omega: float = OMEGA,
                     radius: int | None = None, eps: float = EPS) -> Tensor:
    """Dark-channel-prior transmission, guided-filter refined, as :func:`odcr_cli.haze.prior.dcp_transmission`:
    rgb (B, 3, H, W) in [0, 1], airlight (B, 3) -> t (B, 1, H, W), clamped to [0, 1].
    No gradient: a target for the warm start, not part of the model."""
    with torch.no_grad():
        h, w = rgb.shape[-2:]
        radius, patch = radius_for(h, w, radius), patch_for(h, w, patch)
        t = 1.0 - omega * dark_channel(rgb / airlight[:, :, None, None], patch)
        return guided_filter(grey(rgb), t, radius, eps).clamp(0.0, 1.0)
