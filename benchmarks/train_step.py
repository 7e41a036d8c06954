"""Seconds per training iteration of each method, on the current device.

    python benchmarks/train_step.py [--crops 128 256] [--methods odcr cut fastcut] [--iters 5]
                                    [--ngf 64 --n-blocks 9] [--device auto] [--json out.json]

Runs the real training step (D step, then G + head + classifiers + Stiefel step) on random
crops, after warm-up iterations, and reports the median seconds per iteration and the ratio
of each method to ``cut`` (the issue's goal: odcr <= 1.15x cut).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from odcr_cli.core.configs import GeneratorConfig, method_config
from odcr_cli.tasks.train.state import TrainingState, resolve_device
from odcr_cli.tasks.train.training import TrainConfig, train_step


def time_method(method: str, crop: int, iters: int, warmup: int, gen: GeneratorConfig, device: torch.device,
                batch: int) -> float:
    cfg = TrainConfig(hazy="", clear="", out="", iters=1_000_000, crop=crop, batch=batch)
    state = TrainingState(cfg, method_config(method), gen, device)
    hazy = torch.rand(batch, 3, crop, crop) * 2 - 1
    clear = torch.rand(batch, 3, crop, crop) * 2 - 1
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        train_step(state, hazy, clear)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--methods", nargs="+", default=["cut", "odcr", "fastcut"])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--n-blocks", type=int, default=9)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    device = resolve_device(args.device)
    gen = GeneratorConfig(ngf=args.ngf, n_blocks=args.n_blocks)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"device: {device} ({where}); torch {torch.__version__}; generator ngf={args.ngf} "
          f"n_blocks={args.n_blocks}; batch {args.batch}")
    results: dict[str, dict[str, float]] = {}
    print("| crop | " + " | ".join(f"{m} s/it" for m in args.methods) + " | odcr / cut |")
    print("|---" * (len(args.methods) + 2) + "|")
    for crop in args.crops:
        row = {m: time_method(m, crop, args.iters, args.warmup, gen, device, args.batch) for m in args.methods}
        results[str(crop)] = row
        ratio = row["odcr"] / row["cut"] if "odcr" in row and "cut" in row else float("nan")
        print(f"| {crop} | " + " | ".join(f"{row[m]:.3f}" for m in args.methods) + f" | {ratio:.3f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(device), "where": where, "ngf": args.ngf, "n_blocks": args.n_blocks,
                       "batch": args.batch, "seconds_per_iter": results}, fh, indent=2)


if __name__ == "__main__":
    main()
