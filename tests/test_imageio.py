import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from conftest import make_photo
from odcr_cli.errors import ImageReadError
from odcr_cli.files.imageio import decode_image, encode_image, format_for_ext, read_image


def write_image(path, img, fmt=None, quality=None, strip=False):
    """Encode and write as odcr dehaze does (the bytes of encode_image); returns its notes."""
    data, notes = encode_image(img, fmt or format_for_ext(Path(path).suffix), quality, strip)
    Path(path).write_bytes(data)
    return notes


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_applied_and_metadata_kept(tmp_path):
    arr = make_photo(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    exif[0x010F] = "odcr-test-camera"
    data = _save(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), icc_profile=_srgb_icc(), quality=95)
    img = decode_image(data, "x.jpg")
    assert img.pixels.shape == (40, 20, 3)  # transposed
    assert img.icc_profile == _srgb_icc()
    out = tmp_path / "o.jpg"
    write_image(out, img)
    back = Image.open(out)
    assert back.size == (20, 40)
    assert back.getexif().get(0x0112) == 1
    assert back.getexif().get(0x010F) == "odcr-test-camera"
    assert back.info.get("icc_profile") == _srgb_icc()
    # --strip-metadata
    write_image(tmp_path / "s.jpg", img, strip=True)
    stripped = Image.open(tmp_path / "s.jpg")
    assert not stripped.info.get("icc_profile") and len(stripped.getexif()) == 0


def test_alpha_split_and_passed_through(tmp_path):
    rgba = np.dstack([make_photo(16, 24), np.arange(16 * 24, dtype=np.uint8).reshape(16, 24)])
    img = decode_image(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert img.pixels.shape == (16, 24, 3) and np.array_equal(img.alpha, rgba[..., 3])
    write_image(tmp_path / "a.png", img)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), rgba)
    # JPEG has no alpha: flattened with a warning, not an error
    _, notes = encode_image(img, "JPEG")
    assert any("alpha" in n for n in notes)


def test_grayscale_palette_cmyk_la():
    grey = make_photo(12, 10)[..., 0]
    img = decode_image(_save(Image.fromarray(grey, "L"), "PNG"))
    assert img.pixels.shape == (12, 10) and img.pixels.dtype == np.uint8
    data, _ = encode_image(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "L"

    pal = Image.fromarray(make_photo(12, 10)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert decode_image(_save(pal, "PNG")).pixels.shape == (12, 10, 3)
    pal.info["transparency"] = 0
    pimg = decode_image(_save(pal, "PNG", transparency=0))
    assert pimg.alpha is not None

    cmyk = Image.fromarray(make_photo(12, 10)).convert("CMYK")
    cimg = decode_image(_save(cmyk, "JPEG"))
    assert cimg.pixels.shape == (12, 10, 3) and cimg.icc_profile is None

    la = Image.fromarray(np.dstack([grey, np.full_like(grey, 128)]), "LA")
    limg = decode_image(_save(la, "PNG"))
    assert limg.pixels.shape == (12, 10) and (limg.alpha == 128).all()


def test_16bit_grey_and_colour_round_trip(tmp_path):
    g16 = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 97 % 65536).astype(np.uint16)
    img = decode_image(cv2.imencode(".png", g16)[1].tobytes())
    assert img.pixels.dtype == np.uint16 and np.array_equal(img.pixels, g16)
    write_image(tmp_path / "g.png", img)
    assert np.array_equal(cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED), g16)

    rgb16 = np.dstack([g16, g16[::-1], 65535 - g16])
    for ext in (".png", ".tif"):
        img = decode_image(cv2.imencode(ext, rgb16[..., ::-1])[1].tobytes())
        assert img.pixels.dtype == np.uint16 and np.array_equal(img.pixels, rgb16), ext
        out = tmp_path / f"c{ext}"
        write_image(out, img)
        back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1]
        assert back.dtype == np.uint16 and np.array_equal(back, rgb16)
    # ICC survives a 16-bit colour PNG written by OpenCV
    img.icc_profile = _srgb_icc()
    data, _ = encode_image(img, "PNG")
    assert Image.open(io.BytesIO(data)).info.get("icc_profile") == _srgb_icc()


def test_bad_files_are_clean_errors(tmp_path):
    good = _save(Image.fromarray(make_photo(64, 64)), "JPEG")
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("trunc.jpg", "text.jpg", "empty.png", "missing.png"):
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)


def test_decompression_bomb_guard():
    data = _save(Image.fromarray(make_photo(40, 50)), "PNG")
    with pytest.raises(ImageReadError, match="--max-pixels"):
        decode_image(data, max_pixels=1000)
    assert decode_image(data, max_pixels=0).size == (50, 40)


def test_formats_quality_and_atomic_write(tmp_path):
    img = decode_image(_save(Image.fromarray(make_photo(64, 64)), "PNG"))
    for fmt, name in (("JPEG", "a.jpg"), ("WEBP", "a.webp"), ("TIFF", "a.tif"), ("PNG", "a.png")):
        write_image(tmp_path / name, img)
        assert Image.open(tmp_path / name).format == fmt
    small, _ = encode_image(img, "JPEG", quality=20)
    big, _ = encode_image(img, "JPEG", quality=98)
    assert len(small) < len(big)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.png", "a.tif", "a.webp"]
