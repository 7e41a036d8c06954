"""Generator inference speed: milliseconds per image, batch 1, per backend and size.

    python benchmarks/inference.py [--sizes 256 512 1024] [--repeats 3] [--weights W]
                                   [--json out.json] [--md out.md]

Rows: torch eager fp32 and torch bf16 autocast on the CPU, ONNX Runtime CPU (fp32 export); with
CUDA also torch fp32 / fp16 / channels_last fp32, ORT CUDA (fp32 and fp16 exports) and ORT
TensorRT where those providers really activate. The generator is the full-size one (ngf 64,
9 blocks, anti-aliased, 11.4 M parameters), randomly initialised with seed 0 unless --weights.
Each cell is the median of --repeats timed runs after one warm-up run, network only (the
input tensor is ready; no image decoding). "max diff" is the largest difference from torch
fp32 on the CPU, in uint8 levels, on the same random-but-smooth input.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from odcr_cli.haze.network_input import to_uint8  # noqa: E402


def cpu_info() -> dict:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def timed(fn, repeats: int, sync=lambda: None) -> tuple[float, np.ndarray]:
    out = fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def to_u8(y: np.ndarray) -> np.ndarray:
    return to_uint8(y).astype(np.int16)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", default="inference-benchmark.json")
    ap.add_argument("--md", default="inference-benchmark.md")
    ap.add_argument("--skip", nargs="*", default=[], help="row names to skip, e.g. 'torch bf16 (CPU)'")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    from odcr_cli.core.configs import GeneratorConfig
    from odcr_cli.core.networks import ResnetGenerator, count_parameters
    from odcr_cli.tasks.export.export import export_onnx
    from odcr_cli.engine.onnx_backend import OnnxBackend
    from odcr_cli.errors import OnnxBackendError
    from odcr_cli.files.weights_io import load_generator, save_generator

    info = cpu_info()
    info.update({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                 "onnxruntime": ort.__version__, "ort_available": ort.get_available_providers(),
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None})
    print(json.dumps(info, indent=1), flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="odcr-bench-"))
    if args.weights:
        weights = Path(args.weights)
    else:
        torch.manual_seed(0)
        weights = save_generator(tmp / "random.safetensors", ResnetGenerator(GeneratorConfig()),
                                 {"method": "random-init", "training_data": "none (benchmark)"})
    gen = load_generator(weights).generator.eval()
    info["parameters"] = count_parameters(gen)
    info["weights"] = str(args.weights or "random init, seed 0")
    t0 = time.perf_counter()
    onnx32 = export_onnx(weights, tmp / "g32.onnx", check_sizes=[(64, 64), (67, 93)]).output
    print(f"exported + parity-checked fp32 ONNX in {time.perf_counter() - t0:.1f} s", flush=True)
    cuda = torch.cuda.is_available()
    onnx16 = export_onnx(weights, tmp / "g16.onnx", fp16=True, check_sizes=[(64, 64)]).output if cuda else None

    rows: dict[str, dict] = {}

    def record(name: str, size: int, ms: float | None, y: np.ndarray | None, ref: np.ndarray | None, note: str = "") -> None:
        diff = int(np.abs(to_u8(y) - to_u8(ref)).max()) if y is not None and ref is not None else None
        rows.setdefault(name, {})[str(size)] = {"ms": ms, "max_diff_levels": diff, "note": note}
        print(f"{name:32s} {size:5d}  {('%.1f ms' % ms) if ms is not None else note:>12s}  max diff {diff}", flush=True)

    for size in args.sizes:
        rng = np.random.default_rng(size)
        img = rng.random((1, 3, size // 8, size // 8)).astype(np.float32)
        x_np = np.ascontiguousarray(np.kron(img, np.ones((1, 1, 8, 8), np.float32)) * 2 - 1)  # smooth-ish blocks
        x_np += 0.05 * rng.standard_normal(x_np.shape).astype(np.float32)
        x = torch.from_numpy(x_np)
        with torch.inference_mode():
            ms, y = timed(lambda: gen(x), args.repeats)
        ref = y.numpy()
        record("torch eager fp32 (CPU)", size, ms, ref, ref)
        if "torch bf16 (CPU)" not in args.skip:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                ms, y = timed(lambda: gen(x), args.repeats)
            record("torch bf16 autocast (CPU)", size, ms, y.float().numpy(), ref)
        be = OnnxBackend(onnx32, device="cpu")
        ms, y = timed(lambda: be.run(x_np), args.repeats)
        record("onnxruntime CPU fp32", size, ms, y, ref)
        del be
        if cuda:
            g = gen.to("cuda")
            sync = torch.cuda.synchronize
            xc = x.to("cuda")
            with torch.inference_mode():
                ms, y = timed(lambda: g(xc), args.repeats, sync)
                record("torch CUDA fp32", size, ms, y.cpu().numpy(), ref)
                g16 = gen.half()
                ms, y = timed(lambda: g16(xc.half()), args.repeats, sync)
                record("torch CUDA fp16", size, ms, y.float().cpu().numpy(), ref)
                gen.float()
                gcl = gen.to(memory_format=torch.channels_last)
                xcl = xc.to(memory_format=torch.channels_last)
                ms, y = timed(lambda: gcl(xcl), args.repeats, sync)
                record("torch CUDA fp32 channels_last", size, ms, y.cpu().numpy(), ref)
                gen.to(memory_format=torch.contiguous_format).to("cpu")
            for label, path, dev in (("onnxruntime CUDA fp32", onnx32, "cuda"), ("onnxruntime CUDA fp16", onnx16, "cuda"),
                                     ("onnxruntime TensorRT fp32", onnx32, "tensorrt")):
                try:
                    be = OnnxBackend(path, device=dev)
                    ms, y = timed(lambda: be.run(x_np), args.repeats)
                    record(label, size, ms, y, ref)
                except (OnnxBackendError, Exception) as exc:  # provider missing: say so, go on
                    record(label, size, None, None, None, note=f"n/a ({type(exc).__name__})")

    result = {"machine": info, "repeats": args.repeats, "batch": 1, "rows": rows}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    base = rows["torch eager fp32 (CPU)"]
    lines = ["| backend | " + " | ".join(f"{s}x{s}" for s in args.sizes) + " |",
             "|---|" + "---|" * len(args.sizes)]
    for name, cells in rows.items():
        parts = []
        for s in args.sizes:
            c = cells.get(str(s))
            if not c or c["ms"] is None:
                parts.append(c["note"] if c else "–")
                continue
            b = base[str(s)]["ms"]
            speed = f", {b / c['ms']:.2f}x" if "(CPU)" not in name or name != "torch eager fp32 (CPU)" else ""
            diff = f", Δ≤{c['max_diff_levels']}" if c["max_diff_levels"] else ""
            parts.append(f"{c['ms']:.0f} ms{speed}{diff}")
        lines.append(f"| {name} | " + " | ".join(parts) + " |")
    md = "\n".join(lines) + (f"\n\nMachine: {info['cpu']} ({info['logical_cpus']} logical CPUs, torch threads "
                             f"{info['torch_threads']}), torch {info['torch']}, onnxruntime {info['onnxruntime']}"
                             + (f", GPU {info['cuda']}" if info["cuda"] else "")
                             + f"; {info['parameters']:,}-parameter generator, batch 1, median of {args.repeats} after "
                               "1 warm-up; speed-up vs torch eager fp32 on the CPU; Δ = max difference from it in uint8 levels.\n")
    Path(args.md).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
