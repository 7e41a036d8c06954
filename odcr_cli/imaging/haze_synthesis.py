"""Synthetic haze on clear photos by the atmospheric scattering model.

    I(x) = J(x) t(x) + A (1 - t(x)),    t(x) = exp(-beta d(x))

J is the clear photo, A the airlight colour, beta the scattering coefficient and d a relative
scene depth in [0, 1]. Clear photos carry no depth, so ``plausible_depth`` builds one from
cues that hold for most outdoor photos: a ground plane receding towards a horizon (distance
grows like 1 / (row - horizon)), everything above the horizon far away, bright desaturated
regions (sky) far, a little low-frequency variation, and edges snapped to the photo's own
edges by a guided filter so that objects get one depth. This is the recipe the RESIDE
family of benchmarks follows with measured depth; the depth here is only plausible.

Everything here is a pure function of its inputs and a ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from odcr_cli.errors import SynthesisError
from odcr_cli.haze.constants import PATCH
from odcr_cli.haze.filters import guided_filter
from odcr_cli.haze.prior import dark_channel


@dataclass(frozen=True)
class SynthConfig:
    """Ranges the haze parameters are drawn from (uniformly)."""

    beta: tuple[float, float] = (0.5, 3.0)        # t at the far end: exp(-beta), 0.61 .. 0.05
    airlight: tuple[float, float] = (0.7, 1.0)    # grey level of A
    tint: float = 0.03                            # per-channel deviation of A from grey
    horizon: tuple[float, float] = (0.25, 0.6)    # horizon row as a fraction of the height
    near_depth: tuple[float, float] = (0.05, 0.3) # depth of the bottom row
    variation: float = 0.1                        # amplitude of the low-frequency depth field

    def __post_init__(self) -> None:
        for name in ("beta", "airlight", "horizon", "near_depth"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
                raise SynthesisError(f"{name}: expected 0 <= low <= high, got {lo}:{hi}")
        if self.airlight[1] > 1.0:
            raise SynthesisError(f"airlight: values above 1 are not images, got {self.airlight[1]}")
        if not 0 <= self.horizon[0] <= self.horizon[1] < 1:
            raise SynthesisError(f"horizon: expected fractions below 1, got {self.horizon}")
        if not 0 <= self.near_depth[1] <= 1:
            raise SynthesisError(f"near_depth: expected fractions in [0, 1], got {self.near_depth}")


@dataclass(frozen=True)
class HazeParams:
    """The parameters one synthetic image was made with (recorded in the manifest)."""

    beta: float
    airlight: tuple[float, float, float]
    horizon: float
    near_depth: float


def sample_params(rng: np.random.Generator, cfg: SynthConfig = SynthConfig()) -> HazeParams:
    grey = rng.uniform(*cfg.airlight)
    airlight = np.clip(grey + rng.uniform(-cfg.tint, cfg.tint, size=3), 0.0, 1.0)
    return HazeParams(beta=float(rng.uniform(*cfg.beta)), airlight=tuple(float(a) for a in airlight),
                      horizon=float(rng.uniform(*cfg.horizon)), near_depth=float(rng.uniform(*cfg.near_depth)))


def scatter(clear: np.ndarray, depth: np.ndarray, beta: float,
            airlight: tuple[float, float, float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scattering model. clear: (H, W, 3) float in [0, 1]; depth: (H, W) >= 0.

    Returns (hazy (H, W, 3) float32 in [0, 1], transmission (H, W) float32)."""
    if clear.ndim != 3 or clear.shape[2] != 3 or depth.shape != clear.shape[:2]:
        raise ValueError(f"expected clear (H, W, 3) and depth (H, W), got {clear.shape} and {depth.shape}")
    t = np.exp(-float(beta) * depth.astype(np.float32))
    a = np.asarray(airlight, np.float32).reshape(1, 1, 3)
    hazy = clear.astype(np.float32) * t[..., None] + a * (1.0 - t[..., None])
    return np.clip(hazy, 0.0, 1.0), t


def plausible_depth(clear: np.ndarray, params: HazeParams, rng: np.random.Generator,
                    variation: float = 0.1) -> np.ndarray:
    """A relative depth map in [0, 1] for an outdoor photo (see the module docstring).

    clear: (H, W, 3) float in [0, 1] -> (H, W) float32; 1 is far (horizon and sky)."""
    h, w, _ = clear.shape
    rows = (np.arange(h, dtype=np.float32) + 0.5) / h
    below = np.maximum(rows - params.horizon, 0.0)
    # perspective of a ground plane: distance ~ 1 / (row - horizon), scaled so the bottom row
    # sits at near_depth and the horizon at 1
    span = max(1.0 - params.horizon, 1e-3)
    c = params.near_depth * span / max(1.0 - params.near_depth, 1e-3)
    column = np.where(rows <= params.horizon, 1.0, c / (below + c)).astype(np.float32)
    depth = np.repeat(column[:, None], w, axis=1)

    # bright, desaturated regions (sky, distant haze-free bright) are far: the dark channel
    dark = dark_channel(clear.astype(np.float32), PATCH)
    depth = np.maximum(depth, np.clip((dark - 0.6) / 0.3, 0.0, 1.0))

    if variation > 0:
        coarse = rng.normal(0.0, variation, size=(4, 4)).astype(np.float32)
        depth = depth + cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)

    grey = cv2.cvtColor(clear.astype(np.float32), cv2.COLOR_RGB2GRAY)
    depth = guided_filter(grey, np.clip(depth, 0.0, 1.0).astype(np.float32), max(2, round(max(h, w) / 40)), 1e-2)
    return np.clip(depth, 0.0, 1.0).astype(np.float32)


def synthesize(clear: np.ndarray, rng: np.random.Generator,
               cfg: SynthConfig = SynthConfig()) -> tuple[np.ndarray, np.ndarray, HazeParams]:
    """Hazy version of a clear photo. clear: (H, W, 3) float in [0, 1].

    Returns (hazy (H, W, 3) float32, transmission (H, W) float32, the parameters drawn)."""
    params = sample_params(rng, cfg)
    depth = plausible_depth(clear, params, rng, cfg.variation)
    hazy, t = scatter(clear, depth, params.beta, params.airlight)
    return hazy, t, params
