"""Benchmarks for `odcr dehaze` (issue 3). Run: python benchmarks/dehaze.py [--weights W] [--count 50]

(a) tiled (256-px tiles) vs whole-image output, PSNR, on a 1024x768 real photo;
(b) fast mode: seconds for a 12-MP photo and PSNR vs full-resolution inference on >= 2-MP photos;
(c) a folder of JPEGs at 640x480: whole `run_dehaze` time / network time alone.

Without --weights it uses a randomly initialised full-size generator (ngf 64, 9 blocks, PyTorch's
default init, seed 0). The 12-MP photo is a real 2048x1536 photo upscaled (bicubic) to 4000x3000;
the 640x480 JPEGs are the real photos of the dev set resized (cycled to reach --count).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
from PIL import Image

from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.files.folders import list_images
from odcr_cli.imaging.metrics import psnr
from odcr_cli.tasks.dehaze.dehazing import run_dehaze
from odcr_cli.tasks.dehaze.options import DehazeOptions
from _paths import REAL_HAZY  # noqa: E402


def load(name: str) -> np.ndarray:
    return np.asarray(Image.open(REAL_HAZY / name).convert("RGB"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights")
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--parts", default="abc")
    ap.add_argument("--sides", type=int, nargs="+", default=[1600, 1280, 1024],
                    help="fast-mode max-side values for (b); the 12-MP timing uses the CPU default")
    args = ap.parse_args()
    weights = args.weights
    if weights is None:
        import torch

        from odcr_cli.core.configs import GeneratorConfig
        from odcr_cli.core.networks import ResnetGenerator
        from odcr_cli.files.weights_io import save_generator
        torch.manual_seed(0)
        weights = os.path.join(tempfile.mkdtemp(), "random_full.safetensors")
        save_generator(weights, ResnetGenerator(GeneratorConfig(ngf=64, n_blocks=9)))
        print("weights: random-init full-size generator (ngf 64, 9 blocks, seed 0)")
    else:
        print(f"weights: {weights}")
    import torch
    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}", flush=True)

    if "a" in args.parts:
        img = load("utk_meadows_foggy_smokey_sunbeams.jpg")  # 1024x768
        whole_d = Dehazer(weights, device="cpu", max_side=0)
        t = time.perf_counter(); whole = whole_d.dehaze(img.astype(np.float32) / 255); tw = time.perf_counter() - t
        tiled_d = Dehazer(weights, device="cpu", max_side=0, tile=256)
        t = time.perf_counter(); tiled = tiled_d.dehaze(img.astype(np.float32) / 255); tt = time.perf_counter() - t
        print(f"(a) 1024x768, 256-px tiles, halo 64, whole-image stats: PSNR tiled vs whole = "
              f"{psnr(whole, tiled, peak=1.0):.2f} dB (whole {tw:.1f} s, tiled {tt:.1f} s)", flush=True)

    if "b" in args.parts:
        fast = Dehazer(weights, device="cpu", max_side="auto")
        big = cv2.resize(load("utk_foggyhouse.jpg"), (4000, 3000), interpolation=cv2.INTER_CUBIC)
        t = time.perf_counter(); fast.dehaze(big); t12 = time.perf_counter() - t
        print(f"(b) fast mode max-side {fast.max_side} (CPU default), 4000x3000 (12 MP, upscaled real photo): "
              f"{t12:.1f} s", flush=True)
        full = Dehazer(weights, device="cpu", max_side=0, memory_budget_gb=16)
        for name in ("ridcp_campus.jpg", "utk_foggyhouse.jpg"):
            im = load(name)
            t = time.perf_counter(); ref = full.dehaze(im); tf = time.perf_counter() - t
            for ms in args.sides:
                d = Dehazer(weights, device="cpu", max_side=ms)
                t = time.perf_counter(); out = d.dehaze(im); tq = time.perf_counter() - t
                print(f"(b) {name} {im.shape[1]}x{im.shape[0]} ({im.shape[0]*im.shape[1]/1e6:.1f} MP): "
                      f"max-side {ms}: PSNR vs full-res {psnr(ref, out, 255):.2f} dB, {tq:.1f} s (full-res {tf:.1f} s)",
                      flush=True)

    if "c" in args.parts:
        srcs = [str(p) for p in list_images(REAL_HAZY)]
        folder = tempfile.mkdtemp()
        arrays = []
        for k in range(args.count):
            a = cv2.resize(np.asarray(Image.open(srcs[k % len(srcs)]).convert("RGB")), (640, 480),
                           interpolation=cv2.INTER_AREA)
            Image.fromarray(a).save(os.path.join(folder, f"{k:03d}.jpg"), quality=92)
            arrays.append(np.asarray(Image.open(os.path.join(folder, f"{k:03d}.jpg")).convert("RGB")))
        d = Dehazer(weights, device="cpu")
        d.dehaze(arrays[0])  # warm-up
        t = time.perf_counter()
        for a in arrays:
            d.dehaze(a)
        tnet = time.perf_counter() - t
        out = tempfile.mkdtemp()
        t = time.perf_counter()
        rep = run_dehaze(DehazeOptions(inputs=[folder], output=out), dehazer=d)
        tcmd = time.perf_counter() - t
        print(f"(c) {args.count} JPEGs 640x480: network alone {tnet:.1f} s, whole run_dehaze {tcmd:.1f} s, "
              f"ratio {tcmd / tnet:.3f} ({rep.ok} ok, {rep.failed} failed)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
