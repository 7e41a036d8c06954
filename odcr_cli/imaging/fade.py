"""FADE, the referenceless perceptual fog density of Choi, You and Bovik (IEEE TIP 24(11), 2015).

Lower is less fog. An 8-bit RGB photo is cut into 8x8 patches (the image is first trimmed to a
multiple of 8 on each side); each patch gets 12 "fog-aware" features (MSCN variance, variance of
the positive and negative vertical MSCN pair products, mean local sigma, mean coefficient of
variation, contrast energy of grey / yellow-blue / red-green, entropy, dark channel, saturation,
colourfulness), log(1 + f). Each patch's features are compared with multivariate Gaussians fitted
to a fog-free and a foggy corpus (``fade_reference``) by a Mahalanobis-like distance whose
covariance is the corpus covariance plus the patch's own feature variance, averaged:
``D_f`` (distance to fog-free) and ``D_ff`` (to foggy); FADE = D_f / (D_ff + 1).

This is our own numpy implementation of the paper, following the operators of the authors' MATLAB
release (FADE_release.zip, 2015) where the paper leaves details open:

* grey: MATLAB ``rgb2gray`` on uint8 (the inverse-YIQ luma weights, rounded to uint8); the
  contrast energy uses the unrounded 0.299/0.587/0.114 grey of its own code;
* local mean and sigma: 7x7 Gaussian (sigma 7/6) with replicated borders;
  sigma = sqrt(|E[I^2] - mu^2|), MSCN = (I - mu) / (sigma + 1), cv = sigma / mu;
* vertical pairs: MSCN times MSCN shifted down one row with wrap-around (``circshift``);
* variances are sample variances (N - 1) that skip NaN, and 0 for a single value (``nanvar``);
* contrast energy: a 20-tap second-derivative-of-Gaussian filter (sigma 3.25 px, taps
  -9.75..9.25), the image padded by copying 10 edge rows/columns, semisaturation 0.1 and the
  release's noise thresholds;
* entropy of the patch's uint8 grey values (256-bin histogram, log2);
* a patch with an undefined feature (cv = 0/0 where the 7x7 neighbourhood is black) is left out
  of the means, as the release's ``nanmean`` does.

Constant 7x7 neighbourhoods (saturated sky, clipped shadows, flat walls) need care: there the
exact MSCN is 0, but the release computes it in floating point, where the filter's rounding
leaves mu a few ulps away from I. For 217 of the 256 grey levels that residue is not zero in
MATLAB (216 of them mu > I; fade-python measured them), so the vertical pair products of a flat
region, two residues of one sign, are tiny *positive* numbers: they join the ">= 0" set only, and
an 8x8 patch that is flat throughout has an empty "<= 0" set, an undefined feature, and is left
out of the means. That exclusion changes FADE by up to 75 % on photos with clipped regions, so we
reproduce it on purpose: flat neighbourhoods get mu = I, sigma = 0 and MSCN = -1e-100 (a residue
of the usual sign, too small to change any variance). The 39 grey levels at which MATLAB's
rounding happens to be exact are not singled out (their flat patches are left out here and kept
by MATLAB). Against fade-python (MATLAB-aligned to 1e-12) this gives, on the 18 real hazy dev
photos, the same FADE to 1e-7 on the median photo, 6.6 % lower on the worst (a clipped sky) and
1.3 % lower on the mean; 2 % at most on 24 HazeRD hazy/GT images.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from odcr_cli.errors import FadeError

PATCH = 8
MIN_SIDE = 16   # after trimming to whole patches the contrast-energy padding copies 10 rows/cols
_CE_BORDER = 10
_FLAT_RESIDUE = 1e-100


@lru_cache(maxsize=1)
def _models() -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    """(mu, inverse of cov/2, its row sums) for the fog-free and the foggy corpus."""
    from odcr_cli.imaging import fade_reference as ref

    out = []
    for mu, cov in ((ref.FOGFREE_MU, ref.FOGFREE_COV), (ref.FOGGY_MU, ref.FOGGY_COV)):
        inv_half = np.linalg.inv(np.asarray(cov, dtype=np.float64) / 2.0)
        inv_half = (inv_half + inv_half.T) / 2.0   # exactly symmetric, so m @ A^-1 is A^-1 m
        out.append((np.asarray(mu, dtype=np.float64), inv_half, inv_half.sum(axis=1)))
    return tuple(out)


def _gauss_1d() -> np.ndarray:
    # fspecial('gaussian', 7, 7/6) is the outer product of this normalised 1-D kernel.
    x = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(x * x) / (2.0 * (7.0 / 6.0) ** 2))
    return g / g.sum()


def _filter_replicate(a: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation with a symmetric kernel, borders replicated (imfilter 'replicate')."""
    import cv2

    return cv2.sepFilter2D(a, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_REPLICATE)


def _constant_7x7(gray: np.ndarray) -> np.ndarray:
    """True where the replicate-padded 7x7 neighbourhood holds one value."""
    import cv2

    k = np.ones((7, 7), np.uint8)
    return (cv2.erode(gray, k, borderType=cv2.BORDER_REPLICATE)
            == cv2.dilate(gray, k, borderType=cv2.BORDER_REPLICATE))


def _blocks(a: np.ndarray) -> np.ndarray:
    """(H, W) -> (H/8, W/8, 64): the values of each 8x8 patch."""
    h, w = a.shape
    return a.reshape(h // PATCH, PATCH, w // PATCH, PATCH).swapaxes(1, 2).reshape(h // PATCH, w // PATCH, -1)


def _nanvar(x: np.ndarray) -> np.ndarray:
    """Sample variance over the last axis skipping NaN; 0 for one value, NaN for none (MATLAB nanvar)."""
    valid = ~np.isnan(x)
    n = valid.sum(axis=-1)
    mean = np.where(valid, x, 0.0).sum(axis=-1) / np.maximum(n, 1)
    ss = (np.where(valid, x - mean[..., None], 0.0) ** 2).sum(axis=-1)
    var = ss / np.maximum(n - 1, 1)
    var[n == 0] = np.nan
    return var


def _entropy(blocks: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each patch's uint8 values, without a per-patch 256-bin histogram:
    sum(p log2 p) = sum over pixels of log2(count of its value) / n - log2(n)."""
    s = np.sort(blocks.reshape(-1, blocks.shape[-1]), axis=1)
    n = s.shape[1]
    starts = np.ones_like(s, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    run = np.cumsum(starts.ravel()) - 1
    counts = np.bincount(run)
    per_pixel = np.log2(counts[run]).reshape(s.shape)
    return (np.log2(n) - per_pixel.sum(axis=1) / n).reshape(blocks.shape[:-1])


@lru_cache(maxsize=1)
def _ce_taps() -> np.ndarray:
    sigma = 3.25
    x = -3.0 * sigma + np.arange(20, dtype=np.float64)     # MATLAB -9.75:1:9.75 stops at 9.25
    g = np.exp(-(x * x) / (2.0 * sigma * sigma)) / (np.sqrt(2.0 * np.pi) * sigma)
    g /= g.sum()
    gx = (x * x / sigma ** 4 - 1.0 / sigma ** 2) * g
    gx -= gx.sum() / x.size
    return gx / np.sum(0.5 * x * x * gx)


def _conv_same_padded(a: np.ndarray, axis: int) -> np.ndarray:
    """conv2(border_in(a, 20), taps, 'same') trimmed back to a's size, along one axis.

    Only the copied 10-pixel border along ``axis`` reaches the kept region, so padding that axis
    alone gives the same values as the release's padding of both. With p the padded array,
    out[m] = sum_k taps[k] p[m + 20 - k] (a true convolution of the asymmetric 20-tap kernel),
    i.e. a correlation with the reversed taps read from p[m + 1]."""
    import cv2

    b = _CE_BORDER
    flipped = np.ascontiguousarray(_ce_taps()[::-1])
    if axis == 0:
        p = np.concatenate([a[:b], a, a[-b:]], axis=0)
        out = cv2.filter2D(p, cv2.CV_64F, flipped[:, None], anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
        return out[1:a.shape[0] + 1]
    p = np.concatenate([a[:, :b], a, a[:, -b:]], axis=1)
    out = cv2.filter2D(p, cv2.CV_64F, flipped[None, :], anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    return out[:, 1:a.shape[1] + 1]


def _contrast_energy(channel: np.ndarray, threshold: float) -> np.ndarray:
    c = np.sqrt(_conv_same_padded(channel, 1) ** 2 + _conv_same_padded(channel, 0) ** 2)
    cmax = float(c.max())
    if cmax <= 0.0:
        return np.zeros_like(c)
    r = c * cmax / (c + cmax * 0.1) - threshold
    return np.where(r > 1e-7, r, 0.0)


def _as_rgb8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise FadeError(f"FADE scores 8-bit images; got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise FadeError(f"FADE needs an HxWx3 RGB image; got shape {a.shape}")
    h, w = (a.shape[0] // PATCH) * PATCH, (a.shape[1] // PATCH) * PATCH
    if min(h, w) < MIN_SIDE:
        raise FadeError(f"FADE needs at least {MIN_SIDE}x{MIN_SIDE} pixels; got {a.shape[1]}x{a.shape[0]}")
    return a[:h, :w, :3]


def fade_features(image: np.ndarray) -> np.ndarray:
    """The 12 log(1 + f) features of every 8x8 patch: (H/8, W/8, 12) float64."""
    img = _as_rgb8(image)
    rgb = img.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # MATLAB rgb2gray on uint8: first row of inv(YIQ), rounded back to uint8.
    luma = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
    gray = np.floor(luma[0] * r + luma[1] * g + luma[2] * b + 0.5)

    taps = _gauss_1d()
    mu = _filter_replicate(gray, taps)
    m2 = _filter_replicate(gray * gray, taps)
    flat = _constant_7x7(gray)
    mu = np.where(flat, gray, mu)
    sigma = np.where(flat, 0.0, np.sqrt(np.abs(m2 - mu * mu)))
    del m2
    mscn = (gray - mu) / (sigma + 1.0)
    mscn[flat] = -_FLAT_RESIDUE   # the sign of the release's rounding residue (module docstring)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = sigma / mu

    pair = mscn * np.roll(mscn, 1, axis=0)
    pair_b = _blocks(pair)
    neg_var = _nanvar(np.where(pair_b > 0, np.nan, pair_b))   # products <= 0
    pos_var = _nanvar(np.where(pair_b < 0, np.nan, pair_b))   # products >= 0
    del pair, pair_b

    rg = r - g
    by = 0.5 * (r + g) - b
    rg_b, by_b = _blocks(rg), _blocks(by)
    colourfulness = (np.sqrt(rg_b.std(axis=-1, ddof=1) ** 2 + by_b.std(axis=-1, ddof=1) ** 2)
                     + 0.3 * np.sqrt(rg_b.mean(axis=-1) ** 2 + by_b.mean(axis=-1) ** 2))
    maxc = rgb.max(axis=2)
    minc = rgb.min(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        saturation = np.where(maxc > 0, (maxc - minc) / maxc, 0.0)

    ce_gray = _contrast_energy(0.299 * r + 0.587 * g + 0.114 * b, 9.225496406318721e-4 * 255.0)
    ce_by = _contrast_energy(0.5 * r + 0.5 * g - b, 8.969246659629488e-4 * 255.0)
    ce_rg = _contrast_energy(r - g, 2.069284034165411e-4 * 255.0)

    def mean(a: np.ndarray) -> np.ndarray:
        return _blocks(a).mean(axis=-1)

    feats = [_nanvar(_blocks(mscn)), pos_var, neg_var, mean(sigma), mean(cv),
             mean(ce_gray), mean(ce_by), mean(ce_rg), _entropy(_blocks(gray.astype(np.uint8))),
             mean(minc / 255.0), mean(saturation), colourfulness]
    return np.log1p(np.stack(feats, axis=-1))


def _distance(feat: np.ndarray, model: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """sqrt(m^T S^-1 m) per patch, m = mu - f, S = (C + v 1 1^T) / 2 with v the patch's own
    feature variance (the release adds it to every entry); S^-1 by Sherman-Morrison, so no
    12x12 matrix per patch is formed."""
    mu, inv_half, inv_ones = model
    m = mu - feat
    alpha = _nanvar(feat) / 2.0
    quad = np.einsum("...i,ij,...j->...", m, inv_half, m)
    proj = m @ inv_ones
    d2 = quad - alpha * proj * proj / (1.0 + alpha * inv_ones.sum())
    return np.sqrt(np.maximum(d2, 0.0))


def fade(image: np.ndarray) -> float:
    """FADE of an 8-bit RGB image (HxWx3 uint8; grey and RGBA accepted); NaN if no patch is scorable."""
    return fade_with_map(image)[0]


def fade_with_map(image: np.ndarray) -> tuple[float, np.ndarray]:
    """FADE and the per-patch density map (H/8, W/8)."""
    feat = fade_features(image)
    free, foggy = _models()
    d_free, d_foggy = _distance(feat, free), _distance(feat, foggy)
    density_map = d_free / (d_foggy + 1.0)
    ok_free, ok_foggy = np.isfinite(d_free), np.isfinite(d_foggy)
    if not ok_free.any() or not ok_foggy.any():
        return float("nan"), density_map
    return float(d_free[ok_free].mean() / (d_foggy[ok_foggy].mean() + 1.0)), density_map
