"""Reading and writing photos the way users of image tools expect.

* Reading: EXIF orientation applied; ICC profile and EXIF kept (orientation reset to 1);
  alpha split off and passed through; grayscale stays grayscale; palette -> RGB(A);
  CMYK -> RGB (through its ICC profile when there is one); LA -> L + alpha; 16-bit PNG/TIFF
  decoded as uint16 (OpenCV for 16-bit colour, which Pillow cannot hold); Pillow's
  decompression-bomb guard kept (``max_pixels``, 0 = no limit); truncated or non-image files
  raise :class:`ImageReadError` with a one-line message.
* Writing: png | jpg | webp | tif, ``quality`` for JPEG/WebP, metadata unless ``strip``,
  encoded to bytes here; the dehaze task writes them atomically (temporary file + rename). 16-bit stays 16-bit in PNG/TIFF.
"""

from __future__ import annotations

import io
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps

from odcr_cli.errors import ImageReadError, ImageWriteError

DEFAULT_MAX_PIXELS = 2 * int(Image.MAX_IMAGE_PIXELS or 89_478_485)  # Pillow's error threshold
FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif"}
EXT_FORMAT = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "tif": "TIFF", "tiff": "TIFF"}
# what the writer takes, for messages: "jpg, png, webp or tif" (one name per format)
WRITABLE = ", ".join(list(FORMAT_EXT.values())[:-1]) + f" or {list(FORMAT_EXT.values())[-1]}"
ORIENTATION = 0x0112

_PIL_LOCK = threading.Lock()


@dataclass
class ImageData:
    """Pixels plus what is needed to write them back faithfully.

    ``pixels``: HxW (grayscale) or HxWx3 (RGB), uint8 or uint16. ``alpha``: HxW of the same
    dtype or None. ``format``: source format (``JPEG``, ``PNG``...) or None. ``quantization``: a
    JPEG's quantisation tables as Pillow reads them ({table: 64 values}), which say how coarse its
    blocks are (``odcr_cli.haze.noise``); None for other formats."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    format: str | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    source_mode: str = ""
    quantization: dict[int, list[int]] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[1], self.pixels.shape[0]

    def with_pixels(self, pixels: np.ndarray) -> "ImageData":
        return replace(self, pixels=pixels)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------

def _open(data: bytes, name: str, max_pixels: int | None) -> Image.Image:
    # Pillow's own guard is global state; we apply our limit ourselves so that threads that
    # read different files with different limits never race on Image.MAX_IMAGE_PIXELS.
    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
        except Image.UnidentifiedImageError:
            raise ImageReadError(name, "not an image file (or a format Pillow cannot read)") from None
        except Exception as exc:
            raise ImageReadError(name, f"cannot read image header ({exc})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    w, h = im.size
    if limit and w * h > limit:
        raise ImageReadError(name, f"{w}x{h} = {w * h:,} pixels exceeds the decompression-bomb "
                             f"limit of {limit:,}; raise it with --max-pixels N (0 = no limit)")
    return im


def _is_16bit(im: Image.Image) -> bool:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return True
    for tile in getattr(im, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and "16" in raw:
            return True
    return False


def _orient_array(a: np.ndarray, orientation: int) -> np.ndarray:
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: x.swapaxes(0, 1), 6: lambda x: x.swapaxes(0, 1)[:, ::-1],
           7: lambda x: x.swapaxes(0, 1)[::-1, ::-1], 8: lambda x: x.swapaxes(0, 1)[::-1]}
    f = ops.get(orientation)
    return np.ascontiguousarray(f(a)) if f else a


def _exif_bytes(im: Image.Image) -> tuple[bytes | None, int]:
    """EXIF with orientation reset to 1, and the original orientation."""
    try:
        exif = im.getexif()
    except Exception:
        return None, 1
    orientation = int(exif.get(ORIENTATION, 1) or 1)
    if not len(exif):
        return None, orientation
    had = ORIENTATION in exif
    if had:
        exif[ORIENTATION] = 1
    try:
        return exif.tobytes(), orientation
    except Exception:
        return None, orientation
    finally:
        if had:  # getexif() is cached on the image: restore it for exif_transpose
            exif[ORIENTATION] = orientation


def _icc_colour_space(icc: bytes) -> str:
    return icc[16:20].decode("ascii", "replace").strip() if icc and len(icc) >= 20 else ""


def decode_image(data: bytes, name: str = "<image>", max_pixels: int | None = None) -> ImageData:
    """Decode encoded image bytes (see module doc)."""
    im = _open(data, name, max_pixels)
    fmt = im.format
    # before getexif(), which may load the image and clear im.tile
    wide_colour = fmt in ("PNG", "TIFF") and _is_16bit(im) and im.mode not in ("I;16", "I;16B", "I;16L", "I")
    icc = im.info.get("icc_profile") or None
    exif, orientation = _exif_bytes(im)
    source_mode = im.mode
    tables = getattr(im, "quantization", None) if fmt == "JPEG" else None
    quantization = {int(k): [int(v) for v in table] for k, table in tables.items()} if tables else None
    try:
        if wide_colour:
            # 16-bit colour: Pillow would truncate it to 8 bits; OpenCV keeps it.
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if arr is None:
                raise OSError("OpenCV could not decode the 16-bit image")
            arr = _orient_array(arr, orientation)
            alpha = None
            if arr.ndim == 3 and arr.shape[2] == 4:
                alpha = np.ascontiguousarray(arr[..., 3])
                arr = arr[..., :3]
            if arr.ndim == 3:
                arr = np.ascontiguousarray(arr[..., ::-1])
            if arr.dtype != np.uint16:
                arr = arr.astype(np.uint16)
                alpha = alpha.astype(np.uint16) if alpha is not None else None
            return ImageData(arr, alpha, fmt, icc, exif, source_mode)
        im.load()
        im = ImageOps.exif_transpose(im)
    except ImageReadError:
        raise
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(name, f"cannot decode image ({msg})") from None

    mode = im.mode
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        pixels = np.clip(arr.astype(np.int64), 0, 65535).astype(np.uint16)
    elif mode == "F":
        pixels = np.clip(np.rint(np.asarray(im) * (255.0 if np.asarray(im).max() <= 1.0 else 1.0)),
                         0, 255).astype(np.uint8)
    elif mode in ("1", "L"):
        pixels = np.asarray(im.convert("L"))
    elif mode == "LA" or mode == "La":
        la = np.asarray(im.convert("LA"))
        pixels, alpha = la[..., 0].copy(), la[..., 1].copy()
    elif mode == "CMYK":
        converted = None
        if icc and _icc_colour_space(icc) == "CMYK":
            try:
                from PIL import ImageCms
                converted = ImageCms.profileToProfile(
                    im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
                    outputMode="RGB")
            except Exception:
                converted = None
        pixels = np.asarray(converted if converted is not None else im.convert("RGB"))
        icc = None  # a CMYK profile does not describe the RGB output (sRGB assumed)
    else:
        has_alpha = mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info) \
            or (mode in ("L", "RGB") and "transparency" in im.info)
        if has_alpha:
            rgba = np.asarray(im.convert("RGBA"))
            pixels, alpha = rgba[..., :3].copy(), rgba[..., 3].copy()
        else:
            pixels = np.asarray(im.convert("RGB"))
    if icc and _icc_colour_space(icc) not in ("RGB", "GRAY", ""):
        icc = None
    return ImageData(np.ascontiguousarray(pixels), alpha, fmt, icc, exif, source_mode, quantization)


def read_image(source: str | Path | BinaryIO, max_pixels: int | None = None) -> ImageData:
    """Read a path or a binary stream (e.g. ``sys.stdin.buffer``)."""
    if hasattr(source, "read"):
        data, name = source.read(), "<stdin>"
    else:
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageReadError(name, str(exc.strerror or exc)) from None
    if not data:
        raise ImageReadError(name, "empty file")
    return decode_image(data, name, max_pixels)


def read_rgb8(source: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB, for every command that needs its pixels alone (training,
    evaluation, export's checks): read as ``odcr dehaze`` reads it (:func:`read_image`: EXIF
    orientation applied, any mode and depth), grey repeated to three channels, 16 bits rounded to
    8, transparency composited on white. Raises :class:`ImageReadError`."""
    return read_rgb8_tables(source, max_pixels)[0]


def read_rgb8_tables(source: str | Path, max_pixels: int | None = None) -> tuple[np.ndarray, dict | None]:
    """:func:`read_rgb8` and the file's JPEG quantisation tables (None for other formats): what
    ``odcr dehaze`` hands the recovery about the file's own noise, so that a score is of what it runs."""
    img = read_image(source, max_pixels)
    pixels, alpha = img.pixels, img.alpha
    if pixels.dtype == np.uint16:
        pixels = np.round(pixels / 257.0).astype(np.uint8)
        alpha = None if alpha is None else np.round(alpha / 257.0).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if alpha is not None:
        a = alpha.astype(np.float32)[..., None] / 255.0
        pixels = np.round(pixels * a + 255.0 * (1.0 - a)).astype(np.uint8)
    return np.ascontiguousarray(pixels), img.quantization


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def format_for_ext(ext: str) -> str:
    try:
        return EXT_FORMAT[ext.lower().lstrip(".")]
    except KeyError:
        raise ImageWriteError(f"unsupported output extension {ext!r}: use {WRITABLE}") from None


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _png_add_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """Insert iCCP / eXIf chunks after IHDR (for PNGs written by OpenCV)."""
    chunks = b""
    if icc:
        chunks += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        chunks += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    if not chunks:
        return png
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def encode_image(img: ImageData, fmt: str, quality: int | None = None, strip: bool = False) -> tuple[bytes, list[str]]:
    """Encode to bytes. Returns (bytes, warnings)."""
    notes: list[str] = []
    fmt = fmt.upper()
    pixels, alpha = img.pixels, img.alpha
    icc = None if strip else img.icc_profile
    exif = None if strip else img.exif
    if fmt in ("JPEG", "WEBP") and pixels.dtype == np.uint16:
        notes.append(f"{fmt} holds 8 bits per channel: 16-bit output reduced to 8 bits")
        pixels = (pixels.astype(np.uint32) * 255 + 32767) // 65535
        pixels = pixels.astype(np.uint8)
        alpha = None if alpha is None else ((alpha.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if fmt == "JPEG" and alpha is not None:
        notes.append("JPEG has no alpha channel: transparency flattened onto white")
        a = alpha.astype(np.float32) / 255.0
        a = a[..., None] if pixels.ndim == 3 else a
        pixels = np.clip(np.rint(pixels * a + 255.0 * (1 - a)), 0, 255).astype(np.uint8)
        alpha = None
    if pixels.dtype == np.uint16 and (pixels.ndim == 3 or alpha is not None):
        # 16-bit colour (or grey + alpha): OpenCV writes it; Pillow cannot.
        arr = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
        arr = arr[..., ::-1]
        if alpha is not None:
            arr = np.concatenate([arr, alpha[..., None].astype(np.uint16)], axis=2)
        ext = ".png" if fmt == "PNG" else ".tif"
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr))
        if not ok:
            raise ImageWriteError(f"OpenCV could not encode a 16-bit {fmt}")
        data = buf.tobytes()
        if fmt == "PNG":
            data = _png_add_metadata(data, icc, exif)
        elif icc or exif:
            notes.append("16-bit TIFF written without ICC/EXIF metadata")
        return data, notes
    if pixels.dtype == np.uint16:  # grey 16-bit
        im = Image.fromarray(pixels.astype(np.uint16), mode=None)
        if im.mode != "I;16":
            im = Image.fromarray(pixels.astype("<u2")).convert("I;16")
    elif alpha is not None:
        if pixels.ndim == 2:
            im = Image.fromarray(np.stack([pixels, alpha], axis=2), "LA")
        else:
            im = Image.fromarray(np.concatenate([pixels, alpha[..., None]], axis=2), "RGBA")
    else:
        im = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB")
    kwargs: dict = {}
    if icc:
        kwargs["icc_profile"] = icc
    if exif:
        kwargs["exif"] = exif
    if fmt == "JPEG":
        kwargs["quality"] = quality if quality is not None else 95
        if kwargs["quality"] >= 90:
            kwargs["subsampling"] = 0
    elif fmt == "WEBP":
        kwargs["quality"] = quality if quality is not None else 95
    elif fmt == "PNG":
        kwargs["compress_level"] = 6
    elif fmt == "TIFF":
        kwargs["compression"] = "tiff_deflate"
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue(), notes
