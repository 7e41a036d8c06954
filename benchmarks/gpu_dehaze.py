"""`Dehazer` on a GPU: seconds per photo (fp32 and --half) and what --half costs in PSNR.

    python benchmarks/gpu_dehaze.py --weights W [--photos ../shared/data/dev/real_hazy] [--device cuda]
                                    [--json out.json]

For every photo of --photos at full resolution (max_side 0), after one warm-up photo: the median
of 3 timed runs of `Dehazer.dehaze` (after one untimed run: `benchmarks/inference.py`'s timer;
uint8 in, uint8 out: padding, statistics, tiling included) with the torch backend in fp32 and in
fp16 (--half), and the PSNR of the fp16 output against the fp32 one. Then a 12-MP photo (a real
photo upscaled to 4000x3000) in dehaze's default mode for the device, and the PSNR of the
device's fp32 output against the CPU's on two photos.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inference import timed  # noqa: E402  (median ms after one warm-up run)
from odcr_cli.engine.dehazer import Dehazer  # noqa: E402
from odcr_cli.files.folders import list_images  # noqa: E402
from odcr_cli.imaging.metrics import psnr  # noqa: E402
from _paths import REAL_HAZY  # noqa: E402


def timed_s(fn, repeats: int, sync) -> tuple[float, np.ndarray]:
    ms, out = timed(fn, repeats, sync)
    return ms / 1e3, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--photos", type=Path, default=REAL_HAZY)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="gpu-dehaze-benchmark.json")
    args = ap.parse_args()

    import torch

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    photos = list_images(args.photos)
    images = {p.name: np.asarray(Image.open(p).convert("RGB")) for p in photos}
    fp32 = Dehazer(args.weights, device=args.device, backend="torch", max_side=0)
    # --half exists on CUDA only; elsewhere (a dry run of this script) the fp16 rows repeat fp32
    fp16 = (Dehazer(args.weights, device=args.device, backend="torch", max_side=0, half=True)
            if args.device.startswith("cuda") else fp32)
    info = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "torch": torch.__version__, "weights": args.weights, "parameters": fp32.parameters}
    print(json.dumps(info), flush=True)
    first = next(iter(images.values()))
    for d in (fp32, fp16):
        d.dehaze(first)  # warm-up (cuDNN autotuning, allocator)

    rows = []
    for name, im in images.items():
        t32, (y32, plan32) = timed_s(lambda: fp32.dehaze_with_record(im), args.repeats, sync)
        t16, y16 = timed_s(lambda: fp16.dehaze(im), args.repeats, sync)
        row = {"photo": name, "size": f"{im.shape[1]}x{im.shape[0]}", "mode": plan32.mode,
               "fp32_s": round(t32, 4), "fp16_s": round(t16, 4), "fp16_vs_fp32_db": round(psnr(y32, y16, 255.0), 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    big = cv2.resize(images.get("utk_foggyhouse.jpg", first), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    default = Dehazer(args.weights, device=args.device, backend="torch")
    default.dehaze(big[:512, :512])
    t_big, (_, big_plan) = timed_s(lambda: default.dehaze_with_record(big), args.repeats, sync)
    big_row = {"size": "4000x3000", "max_side": default.max_side, "mode": big_plan.mode,
               "seconds": round(t_big, 3)}
    print(json.dumps(big_row), flush=True)

    cpu = Dehazer(args.weights, device="cpu", backend="torch", max_side=0)
    agreement = {}
    for name in list(images)[:2]:
        agreement[name] = round(psnr(cpu.dehaze(images[name]), fp32.dehaze(images[name]), 255.0), 2)
    print(json.dumps({"device_fp32_vs_cpu_db": agreement}), flush=True)

    summary = {"median_fp32_s": statistics.median(r["fp32_s"] for r in rows),
               "median_fp16_s": statistics.median(r["fp16_s"] for r in rows),
               "worst_fp16_vs_fp32_db": min(r["fp16_vs_fp32_db"] for r in rows)}
    print(json.dumps(summary), flush=True)
    Path(args.json).write_text(json.dumps({"machine": info, "photos": rows, "twelve_mp": big_row,
                                           "device_fp32_vs_cpu_db": agreement, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
