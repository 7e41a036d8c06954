"""Measure the readout's options on the dev pairs and the real hazy photos, the network run once
per image and option set (weights/MODEL_CARD.md, "Inversion and borders"):

    python benchmarks/readout_arms.py [--weights W | --onnx M] [--pad 0 16] [--sigma 0 0.01 0.015]
        [--depth 1 1.2] [--real OUT_DIR [--fade]] [--clear] [--latency]

* ``--depth``: scales the optical depth -ln t of the network's t (t -> t ** depth; 1: as shipped);
* ``--sigma``: the flat-region noise level of ``odcr_cli.haze.inversion`` (0: the plain
  inversion J = (I - A) / t + A);
* ``--pad``: the margin of mirrored context around the network's input, cropped off its outputs
  (``odcr_cli.haze.constants.MARGIN``, 32, is what ``odcr dehaze`` uses; 0: none).

Prints PSNR / SSIM per subset of the dev pairs (as ``odcr evaluate``: RGB uint8, full resolution)
and, with ``--real``, writes the outputs for ``dev/real_hazy`` as JPEG (what ``odcr dehaze``
writes) under OUT_DIR and prints the last line of ``shared/tools/real_artifacts.py`` on them, and
with ``--fade`` their mean FADE. ``--clear``: the ground truths dehazed as if they were hazy, scored
against themselves (a dehazer should leave a haze-free photo nearly as it is). ``--latency``: the median time of the network alone on a
512x384 input (5 runs after a warm-up), for comparing an fp32 and an int8 export.
Measuring only: the dev data are never used for training.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np

from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.files.folders import list_images
from odcr_cli.haze import pipeline
from odcr_cli.haze.constants import MARGIN
from odcr_cli.imaging.metrics import psnr, ssim_uint8
from odcr_cli.files.imageio import read_rgb8, read_rgb8_tables
from odcr_cli.haze.noise import source_for
from odcr_cli.tasks.evaluate.pairing import match_gt, pairs_from_dir
from _paths import ARTIFACT_TOOL, DEV_PAIRS, REAL_HAZY  # noqa: E402


def _dehaze(dz: Dehazer, rgb8: np.ndarray, cache: dict, key: tuple, sigma: float,
            depth: float = 1.0, tables: dict | None = None) -> np.ndarray:
    """``key``: (image, margin, side); ``depth`` scales the optical depth -ln t (t -> t ** depth);
    ``tables``: the file's JPEG tables, as odcr dehaze hands them to the recovery. The method's
    pipeline, the network's outputs cached per key."""
    rgb = rgb8.astype(np.float32) / 255.0

    def run_network(x: np.ndarray) -> dict:
        if key not in cache:
            cache[key] = dz.backend.run_outputs(x)
        return cache[key]

    readout = dataclasses.replace(dz.readout, flat_sigma=sigma)
    haze = pipeline.estimate(rgb, run_network, readout, key[2], margin=key[1])
    if depth != 1.0:
        haze = pipeline.Haze(haze.t_small ** np.float32(depth), haze.airlight)
    out = pipeline.render(rgb, haze, readout, source_for(np.uint8, tables))[0]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="a scattering generator (default: the bundled default)")
    ap.add_argument("--onnx", help="an exported scattering model instead (e.g. an int8 one), on ONNX Runtime")
    ap.add_argument("--pad", type=int, nargs="+", default=[MARGIN])
    ap.add_argument("--side", type=int, nargs="+",
                    help="the network's longer side (default: the model's own, odcr_cli.haze.readout.model_side)")
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.015])
    ap.add_argument("--depth", type=float, nargs="+", default=[1.0],
                    help="scale the optical depth -ln t of the network's t by these factors (t -> t ** depth)")
    ap.add_argument("--pairs", default=str(DEV_PAIRS))
    ap.add_argument("--real", help="also dehaze dev/real_hazy into this folder and measure its artefacts")
    ap.add_argument("--fade", action="store_true", help="with --real: also the mean FADE of those outputs")
    ap.add_argument("--clear", action="store_true",
                    help="also dehaze the ground truths themselves: PSNR / SSIM of the output against its haze-free "
                         "input, per subset (how far a clear photo is left alone; higher is better)")
    ap.add_argument("--latency", action="store_true", help="time the network alone at 512x384 first")
    args = ap.parse_args()
    if args.onnx:
        dz = Dehazer(onnx_path=args.onnx, backend="onnx", device="cpu")
    elif args.weights:
        dz = Dehazer(weights=args.weights, backend="torch", device="cpu")
    else:
        dz = Dehazer(device="cpu")
    if args.latency:
        print(f"network at 512x384: {_latency_ms(dz):.0f} ms (median of 5, {dz.backend_name})", flush=True)
    pairing = pairs_from_dir(args.pairs)
    cache: dict = {}
    for side, pad, sigma, depth in ((a, b, c, d) for a in args.side or [dz.max_side] for b in args.pad for c in args.sigma
                                    for d in args.depth):
        scores: dict[str, list[tuple[float, float]]] = {}
        left_alone: dict[str, list[tuple[float, float]]] = {}
        for p in pairing.pairs:
            hazy, tables = read_rgb8_tables(p.hazy)
            gt, _ = match_gt(hazy, read_rgb8(p.gt))
            out = _dehaze(dz, hazy, cache, (p.stem, pad, side), sigma, depth, tables)
            scores.setdefault(p.subset or "all", []).append((psnr(out, gt, peak=255.0, cap=100.0), ssim_uint8(out, gt)))
            if args.clear:
                again = _dehaze(dz, gt, cache, (f"gt/{p.stem}", pad, side), sigma, depth)
                left_alone.setdefault(p.subset or "all", []).append(
                    (psnr(again, gt, peak=255.0, cap=100.0), ssim_uint8(again, gt)))

        def mean(v: list[tuple[float, float]]) -> str:
            return f"{np.mean([a for a, _ in v]):.2f} / {np.mean([b for _, b in v]):.3f}"

        def by_subset(table: dict[str, list[tuple[float, float]]]) -> str:
            every = [s for v in table.values() for s in v]
            return f"all {mean(every)}  " + "  ".join(f"{k} {mean(v)}" for k, v in sorted(table.items()))

        line = f"side {side} pad {pad:2d} sigma {sigma:.3f} depth {depth:g}: {by_subset(scores)}"
        if args.clear:
            line += f"\n    clear photos left alone: {by_subset(left_alone)}"
        if args.real:
            line += "\n    real: " + _real(dz, cache, (pad, side), sigma, Path(args.real), args.fade, depth)
        print(line, flush=True)


def _latency_ms(dz: Dehazer) -> float:
    import time

    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 384, 512)).astype(np.float32)
    dz.backend.run_outputs(x)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        dz.backend.run_outputs(x)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def _real(dz: Dehazer, cache: dict, arm: tuple[int, int], sigma: float, root: Path, fade: bool = False,
          depth: float = 1.0) -> str:
    from PIL import Image

    from odcr_cli.imaging.fade import fade as fade_of

    pad, side = arm
    out_dir = root / f"side{side}_pad{pad}_sigma{sigma:g}" / f"depth{depth:g}"
    out_dir.mkdir(parents=True, exist_ok=True)
    fades = []
    for f in list_images(REAL_HAZY):
        rgb8, tables = read_rgb8_tables(f)
        out = _dehaze(dz, rgb8, cache, (f"real/{f.name}", pad, side), sigma, depth, tables)
        Image.fromarray(out).save(out_dir / f"{f.stem}.jpg", quality=95, subsampling=0)
        if fade:
            fades.append(fade_of(out))
    done = subprocess.run([sys.executable, str(ARTIFACT_TOOL), str(REAL_HAZY), str(out_dir)], capture_output=True, text=True)
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-200:]
    return line + (f"; FADE mean {np.mean(fades):.3f}" if fade else "")


if __name__ == "__main__":
    main()
