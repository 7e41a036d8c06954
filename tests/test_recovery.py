"""The noise-aware recovery (odcr_cli.haze.inversion.recover, odcr_cli.haze.noise): in dense
fog it amplifies the scene, not the camera. A JPEG sky keeps its blocks at their input amplitude,
a clean texture is still amplified by 1 / t, and the 8-bit steps of a smooth gradient do not
become contour rings."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from odcr_cli.haze.scattering import remove_haze
from odcr_cli.files.imageio import decode_image
from odcr_cli.haze.inversion import recover
from odcr_cli.haze.noise import Source, source_for

A = np.array([0.92, 0.93, 0.95], np.float32)
T_FOG = 0.2  # dense fog: a gain of 5


def _sky(h: int = 192, w: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth hazy sky, brighter towards the top right, with faint grain (float RGB in [0, 1])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    luma = 0.78 + 0.05 * (xx / w) - 0.04 * (yy / h) + 0.01 * np.sin(xx / 40.0) * np.cos(yy / 55.0)
    rgb = luma[..., None] * np.array([0.98, 1.0, 1.03], np.float32) + rng.normal(0, 0.004, (h, w, 3))
    return np.clip(rgb, 0, 1).astype(np.float32)


def _as_jpeg(rgb: np.ndarray, quality: int) -> tuple[np.ndarray, dict]:
    buf = io.BytesIO()
    Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).convert("RGB").save(buf, format="JPEG", quality=quality)
    img = decode_image(buf.getvalue())
    return img.pixels.astype(np.float32) / 255.0, img.quantization


def _detail(rgb: np.ndarray) -> float:
    """The std of the luma less its 9x9 mean, away from the borders (what the fog hides and 1 / t shows)."""
    y = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return float(np.std((y - cv2.blur(y, (9, 9)))[16:-16, 16:-16]))


def _block_steps(rgb: np.ndarray) -> float:
    """The mean luma step across the 8-px grid less the mean step inside the blocks."""
    y = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY)[16:-16, 16:-16]
    dx = np.abs(np.diff(y, axis=1))
    on_grid = (np.arange(dx.shape[1]) + 16) % 8 == 7
    return float(dx[:, on_grid].mean() - dx[:, ~on_grid].mean())


def test_the_reader_keeps_a_jpegs_tables_and_the_source_says_its_block_step() -> None:
    pixels, tables = _as_jpeg(_sky(64, 64), 50)
    assert tables is not None and len(tables[0]) == 64 and tables[0][0] == 16  # libjpeg's q50 luma DC
    assert source_for(np.uint8, tables).block_step == 16 / 8 / 255  # block means in steps of 2 levels
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    assert decode_image(buf.getvalue()).quantization is None
    assert source_for(np.uint16) == Source(step=0.0, block_step=0.0)


def test_a_q50_jpeg_sky_keeps_about_its_input_detail_in_dense_fog() -> None:
    hazy, tables = _as_jpeg(_sky(), 50)
    t = np.full(hazy.shape[:2], T_FOG, np.float32)
    plain = remove_haze(hazy, t[..., None], A)
    out = recover(hazy, t, A, source_for(np.uint8, tables))
    assert _detail(plain) > 4.0 * _detail(hazy)  # the plain inversion: blocks and grain times 5
    assert _detail(out) < 1.5 * _detail(hazy)
    assert _block_steps(hazy) > 0  # the JPEG's grid shows
    assert _block_steps(out) < 1.5 * _block_steps(hazy) < 0.4 * _block_steps(plain)
    # the haze is still removed: the sky's large-scale gradient is stretched as by the plain inversion
    big = lambda a: cv2.blur(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), (33, 33))[40:-40, 40:-40]  # noqa: E731
    np.testing.assert_allclose(big(out), big(plain), atol=0.02)  # of a stretch of 0.1 across


def test_the_tables_alone_say_a_jpeg_is_coarse_where_the_pixels_cannot() -> None:
    """A JPEG sky with no flat region to measure the floor in still keeps its blocks: its file
    says how coarse they are."""
    hazy, tables = _as_jpeg(_sky(), 30)
    t = np.full(hazy.shape[:2], T_FOG, np.float32)
    told = recover(hazy, t, A, source_for(np.uint8, tables))
    untold = recover(hazy, t, A, source_for(np.uint8, None))
    assert _block_steps(told) <= _block_steps(untold) + 1e-4


def test_a_clean_texture_is_still_amplified_by_one_over_t() -> None:
    """A clean 8-bit photo (a flat sky over textured ground) is the plain inversion where it has texture."""
    rng = np.random.default_rng(1)
    h, w, t_ground = 192, 256, 0.5
    rgb = np.tile(_sky(h, w, seed=2)[:, :1] * 0 + 0.8, (1, w, 1)).astype(np.float32)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (h // 2, w)).astype(np.float32), (0, 0), 1.2)
    rgb[h // 2:] = 0.55 + 0.04 * texture[..., None] / texture.std()  # ground: detail of ~10 levels
    rgb = np.rint(np.clip(rgb, 0, 1) * 255) / 255.0
    t = np.full((h, w), t_ground, np.float32)
    out = recover(rgb.astype(np.float32), t, A, Source())
    ground = slice(h // 2 + 40, h - 16)
    gain = _detail(out[ground]) / _detail(rgb[ground])
    assert abs(gain - 1 / t_ground) < 0.15 * (1 / t_ground)
    plain = remove_haze(rgb, t[..., None], A)
    assert np.abs(out[ground] - plain[ground]).max() < 0.02


def test_a_smooth_8bit_gradient_comes_out_without_steps() -> None:
    """An 8-bit sky brightening by 6 levels over 256 px: each 1-level step of the input would be a
    5-level contour ring after the plain inversion at t = 0.2; the recovery keeps steps of 1 or 2."""
    h, w = 96, 256
    xx = np.mgrid[0:h, 0:w][1].astype(np.float32)
    grey = np.rint(200.0 + 6.0 * xx / w) / 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    t = np.full((h, w), T_FOG, np.float32)
    plain = np.rint(np.clip(remove_haze(rgb, t[..., None], A), 0, 1) * 255)
    out = np.rint(np.clip(recover(rgb, t, A, source_for(np.uint8)), 0, 1) * 255)
    steps = lambda a: np.abs(np.diff(a[20:-20, 40:-40, 1], axis=1)).max()  # noqa: E731
    assert steps(plain) >= 4
    assert steps(out) <= 2
    # and the haze is removed all the same: the gradient is stretched by about 1 / t
    rise = out[48, w - 40, 1] - out[48, 40, 1]
    assert 0.6 * (1 / T_FOG) * 6 * (w - 80) / w < rise < 1.4 * (1 / T_FOG) * 6 * (w - 80) / w


def test_keep_exposure_restores_the_inputs_mean_luma_without_clipping(tmp_path) -> None:
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app
    from tests.conftest import make_photo

    src = tmp_path / "fog.png"
    Image.fromarray(make_photo(96, 128, seed=4)).save(src)
    outs = {}
    for name, flags in (("plain", []), ("kept", ["--keep-exposure"])):
        r = CliRunner().invoke(app, ["dehaze", str(src), "-o", str(tmp_path / f"{name}.png"), "--method", "dcp", *flags])
        assert r.exit_code == 0, r.output
        outs[name] = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB")).astype(np.float32)
    hazy = np.asarray(Image.open(src).convert("RGB")).astype(np.float32)
    luma = lambda a: float((a @ np.array([0.299, 0.587, 0.114], np.float32)).mean())  # noqa: E731
    assert luma(outs["plain"]) < luma(hazy) - 20  # removing the veil darkens the photo
    assert abs(luma(outs["kept"]) - luma(hazy)) < 1.0
    # a power curve: nothing clips that was not at the end already, the order of the pixels kept
    assert not np.any((outs["plain"] < 250) & (outs["kept"] >= 255))
    assert not np.any((outs["plain"] > 0) & (outs["kept"] <= 0))
    from odcr_cli.imaging.tone import keep_exposure

    ramp = np.repeat(np.linspace(0, 1, 256, dtype=np.float32)[None, :, None], 3, axis=2)
    curve = keep_exposure(ramp, np.full_like(ramp, 0.7))[0, :, 0]
    assert curve[0] == 0 and curve[-1] == 1 and np.all(np.diff(curve) > 0)


def test_a_16bit_gradient_stays_smooth() -> None:
    """16-bit input has no visible steps and no 8-bit floor: the stretched gradient is smooth."""
    h, w = 96, 256
    xx = np.mgrid[0:h, 0:w][1].astype(np.float32)
    grey = np.rint((200.0 + 6.0 * xx / w) / 255.0 * 65535.0) / 65535.0
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    t = np.full((h, w), T_FOG, np.float32)
    out = np.clip(recover(rgb, t, A, source_for(np.uint16)), 0, 1)[20:-20, 40:-40, 1] * 65535.0
    steps = np.diff(out, axis=1)
    slope = (1 / T_FOG) * 6.0 / 255.0 / w * 65535.0  # the stretched gradient, 16-bit levels per pixel
    assert np.all(np.abs(steps - slope) < 0.2 * slope)
