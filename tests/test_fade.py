"""FADE (odcr_cli.imaging.fade): published values, the MATLAB-aligned reference, monotonicity in haze, parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odcr_cli.imaging import fade_reference
from odcr_cli.errors import FadeError
from odcr_cli.imaging.fade import _distance, _entropy, _models, fade, fade_features, fade_with_map

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def _grid16() -> np.ndarray:
    """The 16x16 regression image of fade-python's test suite (built from a formula, no file)."""
    rows, cols = np.indices((16, 16))
    img = np.empty((16, 16, 3), dtype=np.uint8)
    img[:, :, 0] = (rows * 17 + cols * 11) % 256
    img[:, :, 1] = (rows * 7 + cols * 19 + 23) % 256
    img[:, :, 2] = (rows * 29 + cols * 3 + 101) % 256
    return img


def _haze(clear: np.ndarray, beta: float, airlight: float = 0.9) -> np.ndarray:
    """I = J t + A (1 - t), t = exp(-beta d), the scene receding towards the top (d 1 -> 0.2)."""
    d = np.linspace(1.0, 0.2, clear.shape[0])[:, None, None]
    t = np.exp(-beta * d)
    return np.clip(np.rint((clear / 255.0 * t + airlight * (1 - t)) * 255), 0, 255).astype(np.uint8)


def test_reproduces_the_published_regression_value():
    # fade-python 1.0.0 (MATLAB-aligned, tested against the MATLAB release to 1e-12) publishes
    # 0.1813003412312952 and this 2x2 map for _grid16 in its test suite.
    score, density = fade_with_map(_grid16())
    assert score == pytest.approx(0.1813003412312952, abs=1e-9)
    np.testing.assert_allclose(density, [[0.215179855687064, 0.171280844331513],
                                         [0.222215457146475, 0.134828067185145]], atol=1e-9)


# (sample_dehazed.jpg changes with the bundled model, so only the hazy photo is pinned here)
@pytest.mark.parametrize("name, expected", [("sample_hazy.jpg", 0.3254465645931456)])
def test_matches_the_matlab_aligned_package_on_real_photos(name, expected):
    # Values computed with fade-python 1.0.0 (pyfade.fade_array on the Pillow-decoded RGB array).
    img = np.asarray(Image.open(DOCS / name).convert("RGB"))
    assert fade(img) == pytest.approx(expected, rel=1e-6)


def test_more_haze_raises_fade():
    clear = np.asarray(Image.open(DOCS / "sample_dehazed.jpg").convert("RGB")).astype(np.float64)
    scores = [fade(clear.astype(np.uint8))] + [fade(_haze(clear, beta)) for beta in (0.5, 1.0, 2.0, 3.0)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert scores[-1] > 5 * scores[0]


def test_dehazing_lowers_fade():
    from odcr_cli.haze.dcp import dehaze_dcp

    hazy = np.asarray(Image.open(DOCS / "sample_hazy.jpg").convert("RGB"))
    out = np.clip(np.rint(dehaze_dcp(hazy / 255.0) * 255), 0, 255).astype(np.uint8)
    assert fade(out) < 0.8 * fade(hazy)


def test_distance_is_the_release_formula():
    # sqrt(m^T ((C + v 11^T) / 2)^-1 m) with the patch's own feature variance v, per patch.
    rng = np.random.default_rng(0)
    feat = rng.normal(0.5, 0.4, size=(5, 7, 12))
    for model, (mu, cov) in zip(_models(), ((fade_reference.FOGFREE_MU, fade_reference.FOGFREE_COV),
                                             (fade_reference.FOGGY_MU, fade_reference.FOGGY_COV))):
        got = _distance(feat, model)
        for idx in np.ndindex(feat.shape[:2]):
            f = feat[idx]
            sigma = (np.asarray(cov) + np.var(f, ddof=1) * np.ones((12, 12))) / 2
            m = np.asarray(mu) - f
            assert got[idx] == pytest.approx(np.sqrt(m @ np.linalg.solve(sigma, m)), rel=1e-9)


def test_entropy_is_the_256_bin_histogram_entropy():
    rng = np.random.default_rng(1)
    blocks = np.concatenate([rng.integers(0, 256, (3, 4, 64)), rng.integers(0, 3, (3, 4, 64)),
                             np.full((3, 4, 64), 7)], axis=0).astype(np.uint8)
    got = _entropy(blocks)
    for idx in np.ndindex(blocks.shape[:2]):
        p = np.bincount(blocks[idx], minlength=256) / 64.0
        p = p[p > 0]
        assert got[idx] == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-12)


def test_reference_statistics_are_gaussians_over_12_features():
    for mu, cov in ((fade_reference.FOGFREE_MU, fade_reference.FOGFREE_COV),
                    (fade_reference.FOGGY_MU, fade_reference.FOGGY_COV)):
        c = np.asarray(cov)
        assert len(mu) == 12 and c.shape == (12, 12)
        assert np.array_equal(c, c.T) and np.linalg.eigvalsh(c).min() > 0
    # the fog-free corpus has more local contrast (mean sigma, feature 4) and less dark-channel
    # brightness (feature 10) than the foggy one
    assert fade_reference.FOGFREE_MU[3] > fade_reference.FOGGY_MU[3]
    assert fade_reference.FOGFREE_MU[9] < fade_reference.FOGGY_MU[9]


def test_inputs():
    img = _grid16()
    rgba = np.concatenate([img, np.full((16, 16, 1), 255, np.uint8)], axis=2)
    assert fade(rgba) == fade(img)
    grey = img[:, :, 1]
    assert fade(grey) == fade(np.repeat(grey[:, :, None], 3, axis=2))
    bigger = np.pad(img, ((0, 7), (0, 5), (0, 0)), mode="edge")   # trimmed to whole 8x8 patches
    assert fade(bigger) == fade(img)
    assert fade_features(np.zeros((40, 24, 3), np.uint8)).shape == (5, 3, 12)
    with pytest.raises(FadeError, match="at least 16x16"):
        fade(np.zeros((15, 40, 3), np.uint8))
    with pytest.raises(FadeError, match="8-bit"):
        fade(img.astype(np.float32))
    with pytest.raises(FadeError, match="RGB"):
        fade(np.zeros((16, 16, 2), np.uint8))


def test_flat_images_have_no_scorable_patch():
    # As in the MATLAB release: a constant image (every 7x7 neighbourhood flat) leaves every
    # patch's feature vector undefined, so FADE is NaN (odcr evaluate reports it as missing).
    for v in (0, 128, 255):
        assert np.isnan(fade(np.full((32, 32, 3), v, np.uint8)))
