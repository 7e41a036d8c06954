"""Speed and memory of `odcr dehaze` as a user runs it (issue 11). Run from the checkout:

    python benchmarks/big_photo.py [--model NAME | --onnx FILE] [--max-side N] [--count 50] [--repeats 2]

(a) A 12-MP JPEG (4000x3000: a real 2048x1536 hazy photo upscaled, bicubic): the default
    `odcr dehaze photo.jpg -o out.jpg` and `odcr dehaze --method dcp` side by side, each run
    --repeats times one after the other as separate processes; wall time and peak resident memory
    (the child's ru_maxrss). Prints the ratio of the medians against `dcp`.
(b) Where the time goes for that photo, in-process: decode, the model's stages (downscale,
    network, readout: t upsampling and inversion), encode with metadata.
(c) A folder of --count JPEGs at 640x480 (the dev set's real hazy photos, resized, cycled):
    the whole `odcr dehaze DIR -o OUT` command against `Dehazer.dehaze` alone on the same images,
    and against the whole `odcr dehaze DIR -o OUT --method dcp` command.
(d) The 12-MP photo with `--max-side 0` (the network at full resolution, as large as the 4 GB
    memory estimate allows): wall time and peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
from PIL import Image
from _paths import REAL_HAZY  # noqa: E402


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return wall, usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def cpu_kind() -> str:
    """The CPU's model name and whether it has VNNI (int8 dot products): the int8 graph's speed
    and, before 7-bit weights, its fidelity depended on it."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "cpu unknown"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    vnni = "vnni" if "vnni" in info else "no vnni"
    return f"{name}, {'avx512' if 'avx512f' in info else 'avx2' if 'avx2' in info else 'no avx2'}, {vnni}"


def make_12mp(folder: str) -> str:
    src = np.asarray(Image.open(REAL_HAZY / "utk_foggyhouse.jpg").convert("RGB"))
    big = cv2.resize(src, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    path = os.path.join(folder, "photo_12mp.jpg")
    Image.fromarray(big).save(path, quality=92)
    return path


def part_a(photo: str, model: list[str], repeats: int, out_dir: str) -> None:
    odcr = [sys.executable, "-m", "odcr_cli"]
    rows = {}
    for label, extra in (("default", model), ("dcp", ["--method", "dcp"])):
        runs = []
        for k in range(repeats):
            out = os.path.join(out_dir, f"{label}_{k}.jpg")
            runs.append(run_measured([*odcr, "dehaze", photo, "-o", out, "-q", *extra]))
        rows[label] = runs
        walls = ", ".join(f"{w:.2f}" for w, _ in runs)
        print(f"(a) {label:8s} wall {walls} s; peak RSS {max(m for _, m in runs):.2f} GB", flush=True)
    ratio = statistics.median(w for w, _ in rows["default"]) / statistics.median(w for w, _ in rows["dcp"])
    print(f"(a) 12-MP ratio default / dcp (median wall): {ratio:.2f}x; default peak memory "
          f"{max(m for _, m in rows['default']):.2f} GB (goals: <= 2x, <= 1.5 GB)", flush=True)


def part_b(photo: str, engine: dict, out_dir: str) -> None:
    from odcr_cli.files.imageio import encode_image, read_image
    from odcr_cli.engine.dehazer import Dehazer

    d = Dehazer(device="cpu", **engine)
    t = time.perf_counter()
    img = read_image(photo)
    t_read = time.perf_counter() - t
    d.dehaze(img.pixels[:64, :64])  # session warm-up, as a long batch would have it
    t = time.perf_counter()
    out, plan = d.dehaze_with_record(img.pixels)
    t_model = time.perf_counter() - t
    stages = plan.seconds
    t = time.perf_counter()
    data, _ = encode_image(img.with_pixels(out), "JPEG", None, False)
    with open(os.path.join(out_dir, "stages.jpg"), "wb") as fh:
        fh.write(data)
    t_write = time.perf_counter() - t
    inner = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    conversions = t_model - sum(stages.values())
    print(f"(b) {d.describe()['backend']} {d.model_name or ''}: decode {t_read:.2f} s; model {t_model:.2f} s "
          f"({inner}; uint8<->float {conversions:.2f}); encode+metadata {t_write:.2f} s", flush=True)


def part_c(count: int, model: list[str], engine: dict, out_dir: str) -> None:
    from odcr_cli.engine.dehazer import Dehazer

    folder = tempfile.mkdtemp(dir=out_dir)
    from odcr_cli.files.folders import list_images

    srcs = [str(p) for p in list_images(REAL_HAZY)]
    arrays = []
    for k in range(count):
        a = cv2.resize(np.asarray(Image.open(srcs[k % len(srcs)]).convert("RGB")), (640, 480),
                       interpolation=cv2.INTER_AREA)
        Image.fromarray(a).save(os.path.join(folder, f"{k:03d}.jpg"), quality=92)
        arrays.append(np.asarray(Image.open(os.path.join(folder, f"{k:03d}.jpg")).convert("RGB")))
    d = Dehazer(device="cpu", **engine)
    d.dehaze(arrays[0])
    t = time.perf_counter()
    for a in arrays:
        d.dehaze(a)
    t_net = time.perf_counter() - t
    out = os.path.join(out_dir, "folder_out")
    wall, mem = run_measured([sys.executable, "-m", "odcr_cli", "dehaze", folder, "-o", out, "-q", *model])
    print(f"(c) {count} JPEGs 640x480: Dehazer.dehaze alone {t_net:.2f} s, whole command {wall:.2f} s "
          f"(ratio {wall / t_net:.3f}, goal <= 1.15; includes start-up), peak RSS {mem:.2f} GB", flush=True)
    out_dcp = os.path.join(out_dir, "folder_out_dcp")
    wall_dcp, mem_dcp = run_measured([sys.executable, "-m", "odcr_cli", "dehaze", folder, "-o", out_dcp, "-q",
                                      "--method", "dcp"])
    print(f"(c) the same folder with --method dcp: whole command {wall_dcp:.2f} s, peak RSS {mem_dcp:.2f} GB; "
          f"the model's command takes {wall / wall_dcp:.1f}x dcp's (goal <= 3x)", flush=True)


def part_d(photo: str, model: list[str], out_dir: str) -> None:
    wall, mem = run_measured([sys.executable, "-m", "odcr_cli", "dehaze", photo, "-o", os.path.join(out_dir, "full.jpg"),
                              "-q", "--max-side", "0", *model])
    print(f"(d) 12-MP with --max-side 0: wall {wall:.2f} s, peak RSS {mem:.2f} GB (goal: within the 4 GB budget)",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="bundled model name (default: the default model)")
    ap.add_argument("--onnx", help="an exported model instead of a bundled one (a candidate before it is shipped)")
    ap.add_argument("--max-side", type=int, help="the network's side (default: the model's own)")
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--parts", default="abcd")
    args = ap.parse_args()
    source = (["--model", args.model] if args.model else []) + (["--onnx", args.onnx] if args.onnx else [])
    model = source + (["--max-side", str(args.max_side)] if args.max_side else [])
    engine = {"model": args.model, "onnx_path": args.onnx, **({"max_side": args.max_side} if args.max_side else {})}
    print(f"cpu count {os.cpu_count()}, {cpu_kind()}; model {args.onnx or args.model or 'default'}"
          f"{f', network side {args.max_side}' if args.max_side else ''}", flush=True)
    work = tempfile.mkdtemp(prefix="odcr_bench_")
    try:
        photo = make_12mp(work)
        if "a" in args.parts:
            part_a(photo, model, args.repeats, work)
        if "b" in args.parts:
            part_b(photo, engine, work)
        if "c" in args.parts:
            part_c(args.count, model, engine, work)
        if "d" in args.parts:
            part_d(photo, source, work)  # with its own --max-side 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
