"""The noise-aware recovery (``odcr_cli.haze.inversion.recover``) against today's inversion
(``remove_haze_flat_aware``: the chroma rule alone), the network run once per image:

    python benchmarks/clean_recovery.py [--inputs clean q70 q50 noise2] [--real OUT_DIR]
        [--strength 1 1.5] [--arms today new] [--speed]

* the dev pairs (PSNR / SSIM as ``odcr evaluate``) with the hazy input as it is (``clean``),
  saved by Pillow as JPEG quality 70 / 50 (``q70``, ``q50``: ``convert("RGB").save(p, quality=Q)``,
  the file's quantisation tables read back as ``odcr dehaze`` reads them), or with Gaussian noise
  of sigma 2/255 added and rounded to 8 bits (``noise2``, one fixed seed);
* with ``--real``: ``dev/real_hazy`` dehazed into OUT_DIR/<arm>_s<strength> as PNG, the last line
  of ``shared/tools/real_artifacts.py`` on them (flat-region luma / chroma / JPEG-block gains), and
  a banding measure: in smooth input regions (local std of green under 1 level, not clipped),
  the output's mean green step where the input steps by exactly 1 level, less its mean step where
  the input is level (in output levels; a recovery that stretches the 8-bit steps of a sky into
  contour rings gives about 1 / t, one that keeps them gives about 1); printed per photo
  (``-v``), as the median and worst, and the share of photos above BANDING_FLAG.
* ``--speed``: the inversion alone (the readout's ``invert``, t given) of each arm on a real hazy
  photo resized to 640x480, 1280x720 and 4000x3000: the fastest of 15 runs (5 at 12 MP), so that
  other processes on a shared CPU count as little as possible.
Measuring only: the dev data are never used for training.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.haze import pipeline
from odcr_cli.files.folders import list_images
from odcr_cli.files.imageio import decode_image, read_rgb8, read_rgb8_tables
from odcr_cli.haze.network_input import shrink_to
from odcr_cli.imaging.metrics import psnr, ssim_uint8
from odcr_cli.haze.noise import source_for
from odcr_cli.tasks.evaluate.pairing import match_gt, pairs_from_dir
from _paths import ARTIFACT_TOOL, DEV_PAIRS, REAL_HAZY  # noqa: E402

BANDING_FLAG = 2.0  # output levels per 1-level input step: above this a smooth sky shows contour rings


def degrade(rgb8: np.ndarray, kind: str) -> tuple[np.ndarray, dict | None]:
    """The hazy input as a user might have it: (uint8 pixels, JPEG tables or None)."""
    if kind.startswith("q"):
        buf = io.BytesIO()
        Image.fromarray(rgb8).convert("RGB").save(buf, format="JPEG", quality=int(kind[1:]))
        img = decode_image(buf.getvalue())
        return img.pixels, getattr(img, "quantization", None) or Image.open(io.BytesIO(buf.getvalue())).quantization
    if kind.startswith("noise"):
        rng = np.random.default_rng(0)
        noisy = rgb8.astype(np.float32) + rng.normal(0.0, float(kind[5:]), rgb8.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), None
    return rgb8, None


def dehaze(dz: Dehazer, rgb8: np.ndarray, tables: dict | None, cache: dict, key: str, arm: str,
           strength: float = 1.0) -> np.ndarray:
    """As ``odcr dehaze`` (the network on the model's side, framed), with ``arm`` today | new."""
    rgb = rgb8.astype(np.float32) / 255.0
    small = shrink_to(rgb, dz.network_side(*rgb.shape[:2]))
    if key not in cache:  # the network's outputs, shared by the arms and strengths
        cache[key] = pipeline.network_outputs(dz.backend.run_outputs, small)
    readout = dataclasses.replace(dz.readout, noise_aware=arm == "new")
    haze = pipeline.Haze(*readout.estimate(small, cache[key], strength))
    out, _ = pipeline.render(rgb, haze, readout, source_for(np.uint8, tables))
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def banding(inp: np.ndarray, out: np.ndarray) -> float:
    """The excess output step at the input's 1-level steps in smooth regions (see module doc)."""
    gi, go = inp[..., 1].astype(np.float32), out[..., 1].astype(np.float32)
    m = cv2.blur(gi, (9, 9))
    sd = np.sqrt(np.maximum(cv2.blur(gi * gi, (9, 9)) - m * m, 0))
    smooth = (sd < 1.0) & (gi > 5) & (gi < 250)
    at_step, level = [], []
    for axis in (0, 1):
        di, do = np.abs(np.diff(gi, axis=axis)), np.abs(np.diff(go, axis=axis))
        both = smooth[:-1, :] & smooth[1:, :] if axis == 0 else smooth[:, :-1] & smooth[:, 1:]
        at_step.append(do[both & (di == 1)])
        level.append(do[both & (di == 0)])
    a, b = np.concatenate(at_step), np.concatenate(level)
    return float(a.mean() - b.mean()) if a.size > 200 and b.size > 200 else float("nan")


def pairs(dz: Dehazer, kinds: list[str], arms: list[str], cache: dict) -> None:
    pairing = pairs_from_dir(str(DEV_PAIRS))
    for kind in kinds:
        scores: dict[str, list[tuple[float, float]]] = {a: [] for a in arms + ["input"]}
        for p in pairing.pairs:
            rgb8, own = read_rgb8_tables(p.hazy)
            hazy, tables = degrade(rgb8, kind)
            tables = own if kind == "clean" else tables  # the file as it is: its own tables, as odcr dehaze reads them
            gt, _ = match_gt(hazy, read_rgb8(p.gt))
            scores["input"].append((psnr(hazy, gt, peak=255.0, cap=100.0), ssim_uint8(hazy, gt)))
            for arm in arms:
                out = dehaze(dz, hazy, tables, cache, f"{kind}/{p.stem}", arm)
                scores[arm].append((psnr(out, gt, peak=255.0, cap=100.0), ssim_uint8(out, gt)))
        line = "  ".join(f"{a} {np.mean([x for x, _ in v]):.2f} / {np.mean([y for _, y in v]):.3f}"
                         for a, v in scores.items())
        print(f"dev pairs {kind:6s}: {line}", flush=True)


def real(dz: Dehazer, arms: list[str], strengths: list[float], root: Path, cache: dict, verbose: bool) -> None:
    for strength in strengths:
        for arm in arms:
            out_dir = root / f"{arm}_s{strength:g}"
            out_dir.mkdir(parents=True, exist_ok=True)
            bands = {}
            for f in list_images(REAL_HAZY):
                img = decode_image(f.read_bytes(), str(f))
                rgb8 = read_rgb8(f)
                tables = getattr(img, "quantization", None)
                if tables is None and img.format == "JPEG":
                    tables = Image.open(f).quantization
                out = dehaze(dz, rgb8, tables, cache, f"real/{f.name}", arm, strength)
                Image.fromarray(out).save(out_dir / f"{f.stem}.png")
                bands[f.stem] = banding(rgb8, out)
            done = subprocess.run([sys.executable, str(ARTIFACT_TOOL), str(REAL_HAZY), str(out_dir)], capture_output=True, text=True)
            lines = done.stdout.strip().splitlines()
            if verbose:
                print("\n".join(lines[:-1]))
                print("  banding: " + ", ".join(f"{k[:20]} {v:.2f}" for k, v in bands.items()))
            b = np.array([v for v in bands.values()], float)
            flagged = int(np.sum(b > BANDING_FLAG))
            print(f"real {arm} strength {strength:g}: {lines[-1] if lines else done.stderr[-200:]}\n"
                  f"    banding median {np.nanmedian(b):.2f} worst {np.nanmax(b):.2f}, "
                  f"{flagged}/{np.sum(np.isfinite(b))} photos above {BANDING_FLAG:g}", flush=True)


def speed(dz: Dehazer, arms: list[str]) -> None:
    import time

    photo = read_rgb8(REAL_HAZY / "utk_lilyhazy.jpg")
    for w, h in ((640, 480), (1280, 720), (4000, 3000)):
        rgb = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        t = np.clip(cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (w, h)), 0.1, 1.0)
        airlight = np.array([0.9, 0.9, 0.9], np.float32)
        line = []
        for arm in arms:
            readout = dataclasses.replace(dz.readout, noise_aware=arm == "new")
            times = []
            for _ in range(5 if w * h > 4e6 else 15):
                start = time.perf_counter()
                readout.invert(rgb, t, airlight, source_for(np.uint8))
                times.append(time.perf_counter() - start)
            line.append(f"{arm} {1000 * min(times):.1f} ms")
        print(f"inversion at {w}x{h}: " + ", ".join(line), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", nargs="*", default=["clean", "q70", "q50", "noise2"])
    ap.add_argument("--arms", nargs="+", default=["today", "new"])
    ap.add_argument("--real", help="also dehaze dev/real_hazy into this folder and measure its artefacts")
    ap.add_argument("--strength", type=float, nargs="+", default=[1.0])
    ap.add_argument("--speed", action="store_true", help="time the inversion of each arm alone")
    ap.add_argument("-v", action="store_true", help="per-photo lines of the artefact tool and the banding measure")
    args = ap.parse_args()
    dz = Dehazer(device="cpu")
    cache: dict = {}
    if args.speed:
        speed(dz, args.arms)
    if args.inputs:
        pairs(dz, args.inputs, args.arms, cache)
    if args.real:
        real(dz, args.arms, args.strength, Path(args.real), cache, args.v)


if __name__ == "__main__":
    main()
