import cv2
import numpy as np
import pytest

from odcr_cli.haze.dcp import dehaze_dcp
from odcr_cli.haze.filters import guided_filter
from odcr_cli.haze.prior import dark_channel, dcp_transmission
from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.imaging.metrics import psnr


def _scene(h=120, w=160, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    J = np.stack([0.45 + 0.4 * np.sin(xx / (7 + 3 * c) + c) * np.cos(yy / 11.0) for c in range(3)], axis=2)
    J[:, :, rng.integers(0, 3)] *= 0.03  # one weak channel everywhere: dark-channel prior holds
    return np.clip(J, 0, 1).astype(np.float32)


def test_dcp_removes_synthetic_haze():
    J = _scene()
    A, t = np.array([0.9, 0.92, 0.95], np.float32), 0.55
    hazy = J * t + A * (1 - t)
    out = dehaze_dcp(hazy)
    assert out.shape == J.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert psnr(out, J, peak=1.0) > psnr(hazy, J, peak=1.0) + 1.5


def test_dark_channel_and_guided_filter_basics():
    img = np.full((30, 40, 3), 0.5, np.float32)
    img[..., 2] = 0.1
    assert np.allclose(dark_channel(img, 15), 0.1)
    flat = np.full((30, 40), 0.3, np.float32)
    assert np.allclose(guided_filter(flat, flat, 4, 1e-3), 0.3, atol=1e-5)


def test_dcp_edge_cases_and_dehazer_without_weights():
    for shape in ((1, 1, 3), (3, 5, 3), (2, 300, 3)):
        out = dehaze_dcp(np.full(shape, 0.7, np.float32))
        assert out.shape == shape and np.isfinite(out).all()
    d = Dehazer(method="dcp")
    img = (np.random.default_rng(0).random((33, 47, 3)) * 255).astype(np.uint8)
    out = d.dehaze(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert d.describe()["weights"] is None and d.describe()["method"] == "dcp"


@pytest.mark.parametrize("h,w", [(16, 16), (23, 61), (96, 128), (250, 180)])
def test_numpy_and_torch_priors_are_one_function(h, w):
    """Inference (numpy + OpenCV) computes the prior the network was trained against (torch):
    same airlight and transmission, borders included, on images of several sizes."""
    import torch

    from odcr_cli.haze import prior_torch as haze

    rng = np.random.default_rng(h * w)
    smooth = cv2.resize(rng.random((4, 4, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    rgb = np.clip(0.3 + 0.6 * smooth + 0.1 * rng.random((h, w, 3)), 0, 1).astype(np.float32)
    t_np, a_np = dcp_transmission(rgb)
    x = torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy()).double()
    a_t = haze.estimate_airlight(x)
    t_t = haze.dcp_transmission(x, a_t)[0, 0].numpy()
    np.testing.assert_allclose(a_np, a_t[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(np.clip(t_np, 0, 1), t_t, atol=1e-4)
    # the border rows and columns, where the two used to differ
    assert np.abs(np.clip(t_np, 0, 1) - t_t)[[0, -1]].max() < 1e-4
