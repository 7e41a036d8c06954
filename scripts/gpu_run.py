"""A GPU run ready to fire (issue 31, item 5): on a lent H100 or H200, within 9 minutes of wall time,
train the stronger teacher, time GPU inference, and try odcr train under torchrun.

Here (the data does not travel with the repository: it is copied, re-encoded small, into the
git-ignored .gpu_carry/, under the device's 64 MiB with the working tree):

    python scripts/gpu_run.py prepare                      # ../shared/data -> .gpu_carry/ (about 25 MiB)

There (device tool: carry [".gpu_carry"]):

    PYTHONUNBUFFERED=1 python3 scripts/gpu_run.py run --out $OUT

and back here, the teacher's weights come in parts (a file from the device is at most 16 MiB):

    python scripts/gpu_run.py join OUT_FOLDER -o runs/gpu_teacher.safetensors

``run``, in a wall-clock budget (``--budget-s``, 540 s), each phase time-boxed so that it always
ends in time:
1. the teacher: ``odcr train`` with the scattering recipe (the bundled teacher's losses: the DCP
   prior, smoothness of t, the synthetic t term from none to thick haze) on the paper's full
   generator (ngf 64, 9 blocks; the card: the width was the lever the narrow CPU runs could not
   afford, the ngf-16 arm lost 0.7 dB to ngf 32), 256-px crops in batches of 4 (the direct H100
   model's shape). A first short leg measures the speed; the second resumes with the iteration
   count that fills the time left, so that the learning rate decays to zero inside the budget
   (``--max-minutes`` stops it with a checkpoint if the speed drops). Weights (fp16, in parts),
   log and config go to $OUT;
2. timings (the median of 2 runs after a warm-up): the bundled default and the teacher on a 1080p
   frame, a 12-MP photo and a folder of 16 real hazy photos, on PyTorch CUDA, ONNX Runtime CUDA
   with the fp16 graph and TensorRT, each where it loads (a backend that does not is named in the
   log, never an error);
3. ``odcr train`` under ``torchrun --nproc-per-node 2`` for a few iterations when two GPUs exist.

``run --tiny`` does all of it on the CPU in a minute or two with a tiny network (the test,
``tests/test_gpu_run.py``): the CUDA-only parts say that they were skipped and why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # the data roots, said once (benchmarks/_paths.py)
from _paths import DATA  # noqa: E402
CARRY = ROOT / ".gpu_carry"
PART_BYTES = 15 * 2**20  # a file from the device is at most 16 MiB
# The teacher's recipe: the scattering recipe's losses on the paper's generator, big crops.
TEACHER = ["--recipe", "scattering", "--ngf", "64", "--n-blocks", "9", "--crop", "256", "--load-size", "288",
           "--batch", "4", "--checkpoint-every", "250", "--sample-every", "100000", "--log-every", "25",
           "--keep-checkpoints", "1"]
TINY = ["--recipe", "scattering", "--ngf", "4", "--n-blocks", "1", "--crop", "32", "--load-size", "40",
        "--num-patches", "16", "--num-clear-patches", "16", "--dcp-warm-iters", "2", "--checkpoint-every", "1000",
        "--sample-every", "100000", "--log-every", "1", "--device", "cpu"]


class Log:
    """Every line to stdout and to OUT/gpu_run.log, with the seconds since the start."""

    def __init__(self, out: Path) -> None:
        self.t0, self.path = time.perf_counter(), out / "gpu_run.log"

    def __call__(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t0:6.1f} s] {msg}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


# --- prepare (here) ---------------------------------------------------------------------------

def prepare(a: argparse.Namespace) -> None:
    """Copy the training pools (hazy, hazy_more -> hazy/; clear -> clear/) and a few real hazy
    photos (photos/, for the timings) into the carry folder, each re-encoded with its shorter side
    at ``--short-side`` (the training's load size), within ``--max-mib``."""
    from PIL import Image

    from odcr_cli.files.folders import list_images
    from odcr_cli.files.imageio import read_rgb8

    carry = a.carry
    if carry.exists():
        shutil.rmtree(carry)
    plan = [("hazy", a.data / "train" / "hazy"), ("hazy", a.data / "train" / "hazy_more"),
            ("clear", a.data / "train" / "clear"), ("photos", a.data / "dev" / "real_hazy")]
    budget, used, counts = a.max_mib * 2**20, 0, {}
    for sub, folder in plan:
        if not folder.is_dir():
            print(f"skipped {folder}: not there")
            continue
        files = sorted(list_images(folder))[: (a.limit or None) if sub != "photos" else (a.limit or 16)]
        (carry / sub).mkdir(parents=True, exist_ok=True)
        for f in files:
            im = Image.fromarray(read_rgb8(f))
            short = min(im.size)
            if sub != "photos" and short > a.short_side:
                k = a.short_side / short
                im = im.resize((round(im.width * k), round(im.height * k)), Image.LANCZOS)
            dest = carry / sub / f"{folder.name}_{f.stem}.jpg"
            im.save(dest, quality=90)
            used += dest.stat().st_size
            counts[sub] = counts.get(sub, 0) + 1
            if used > budget:
                dest.unlink()
                raise SystemExit(f"over --max-mib {a.max_mib} at {f}: raise it or lower --short-side")
    (carry / "SOURCES.txt").write_text("Copied from ../shared/data (research use; see its SOURCES.md), re-encoded "
                                       f"with the shorter side at most {a.short_side} px. Not for the repository.\n")
    print(f"{carry}: {counts}, {used / 2**20:.1f} MiB")


def join(a: argparse.Namespace) -> None:
    """The teacher's weights from their parts (checked against the sha256 recorded beside them)."""
    record = json.loads((a.folder / "teacher_parts.json").read_text())
    data = b"".join((a.folder / p).read_bytes() for p in record["parts"])
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise SystemExit("the parts do not add up to the recorded sha256")
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_bytes(data)
    print(f"wrote {a.output} ({len(data) / 2**20:.1f} MiB)")


# --- run (there) ------------------------------------------------------------------------------

def environment(log: Log) -> dict:
    import torch

    env = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "gpus": torch.cuda.device_count(),
           "names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    try:
        import onnxruntime as ort

        env["onnxruntime"], env["providers"] = ort.__version__, ort.get_available_providers()
    except ImportError:
        env["onnxruntime"], env["providers"] = None, []
    log(f"environment: {json.dumps(env)}")
    return env


def _odcr(args: list[str], log: Log, timeout_s: float, prefix: list[str] | None = None) -> int:
    cmd = (prefix or [sys.executable, "-m"]) + ["odcr_cli", *args]
    log("$ " + " ".join(cmd[len(prefix or [sys.executable, "-m"]):]))
    try:
        done = subprocess.run(cmd, cwd=ROOT, timeout=max(5.0, timeout_s), capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        log(f"stopped at its time box ({timeout_s:.0f} s)")
        return 124
    for line in (done.stdout + done.stderr).splitlines()[-6:]:
        log("  " + line)
    return done.returncode


def train_teacher(a: argparse.Namespace, log: Log, env: dict, seconds: float) -> Path | None:
    """Two legs: a short one that measures the speed, then a resume with the iterations that fill the time left."""
    run = a.work / "teacher"
    data = ["--hazy", str(a.carry / "hazy"), "--clear", str(a.carry / "clear"), "--out", str(run)]
    recipe = TINY if a.tiny else [*TEACHER, "--device", "cuda" if env["cuda"] else "cpu"]
    first = 2 if a.tiny else 40
    deadline = log.elapsed + seconds
    _odcr(["train", *data, *recipe, "--iters", "100000", "--until", str(first),
           "--max-minutes", f"{seconds / 60:.3f}"], log, seconds)
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()] if (run / "log.jsonl").is_file() else []
    speed = [r["sec_per_iter"] for r in records if "sec_per_iter" in r]
    if not speed:
        log("the teacher's first leg wrote no log: no teacher")
        return None
    left = deadline - log.elapsed - 25.0  # its start (data, CUDA) and the last checkpoint
    iters = max(first + 1, first + int(0.9 * left / speed[-1]))
    log(f"teacher: {speed[-1]:.3f} s/iter after {first} iterations; resuming to {iters} in {left:.0f} s")
    # the time box counts the resumed leg's start too; the process is killed only if that fails
    _odcr(["train", "--resume", str(run), "--iters", str(iters), "--max-minutes", f"{max(6.0, left) / 60:.3f}"],
          log, max(left, 10.0) + 45.0)
    return run if (run / "generator.safetensors").is_file() else None


def collect(run: Path, out: Path, log: Log) -> Path:
    """The teacher's generator (fp16, in parts of at most 15 MiB), its log and config -> OUT."""
    from odcr_cli.files.weights_io import load_generator, save_generator

    import torch

    loaded = load_generator(run / "generator.safetensors")
    fp16 = out / "teacher_fp16.safetensors"
    save_generator(fp16, loaded.generator, loaded.metadata, dtype=torch.float16)
    data = fp16.read_bytes()
    parts = []
    for i in range(0, len(data), PART_BYTES):
        name = f"teacher.part{i // PART_BYTES:02d}"
        (out / name).write_bytes(data[i:i + PART_BYTES])
        parts.append(name)
    (out / "teacher_parts.json").write_text(json.dumps({"parts": parts, "sha256": hashlib.sha256(data).hexdigest(),
                                                        "config": loaded.generator.config.to_dict()}, indent=1))
    fp16.unlink()
    for name in ("log.jsonl", "config.json"):
        shutil.copyfile(run / name, out / f"teacher_{name}")
    log(f"teacher: {len(data) / 2**20:.1f} MiB in {len(parts)} part(s), {loaded.metadata.get('iteration')} iterations")
    return run / "generator.safetensors"


def _inputs(a: argparse.Namespace) -> dict[str, list]:
    """A 1080p frame and a 12-MP photo (a real hazy photo, upscaled) and a folder of photos."""
    import cv2
    import numpy as np

    from odcr_cli.files.folders import list_images
    from odcr_cli.files.imageio import read_rgb8

    photos = [read_rgb8(p) for p in sorted(list_images(a.carry / "photos"))]
    scale = 0.05 if a.tiny else 1.0
    size = lambda w, h: (max(64, int(w * scale)), max(48, int(h * scale)))  # noqa: E731
    return {"1080p": [cv2.resize(photos[0], size(1920, 1080), interpolation=cv2.INTER_CUBIC)],
            "12MP": [cv2.resize(photos[-1], size(4000, 3000), interpolation=cv2.INTER_CUBIC)],
            f"folder of {len(photos)}": [np.ascontiguousarray(p) for p in photos]}


def timings(a: argparse.Namespace, log: Log, env: dict, teacher: Path | None) -> dict:
    """Seconds per input (median of the repeats after a warm-up) of each model on each backend that loads."""
    import torch

    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.files.bundled import bundled_model
    from odcr_cli.tasks.export.export import export_onnx

    cuda = env["cuda"]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    models = {"default": bundled_model().weights_file().path, **({"teacher": teacher} if teacher else {})}
    inputs, results = _inputs(a), {}
    for name, weights in models.items():
        backends: dict[str, dict] = {"torch-" + ("cuda" if cuda else "cpu"): {"weights": str(weights), "backend": "torch",
                                                                            "device": "cuda" if cuda else "cpu"}}
        providers = env["providers"]
        onnx = a.work / f"{name}_fp16.onnx"
        if "CUDAExecutionProvider" in providers or a.tiny:
            try:
                export_onnx(weights, onnx, fp16=True, check=False)
                device = "cuda" if "CUDAExecutionProvider" in providers else "cpu"
                backends[f"onnx-fp16-{device}"] = {"onnx_path": str(onnx), "backend": "onnx", "device": device}
                if "TensorrtExecutionProvider" in providers:
                    backends["tensorrt-fp16"] = {"onnx_path": str(onnx), "backend": "onnx", "device": "tensorrt"}
                else:
                    log(f"{name}: TensorRT skipped: ONNX Runtime has no TensorrtExecutionProvider ({providers})")
            except Exception as exc:  # noqa: BLE001 - a failed export costs its rows, not the run
                log(f"{name}: the fp16 ONNX export failed ({type(exc).__name__}: {exc}); ONNX rows skipped")
        else:
            log(f"{name}: ONNX Runtime CUDA and TensorRT skipped: providers {providers}")
        for label, settings in backends.items():
            try:
                d = Dehazer(**settings)
            except Exception as exc:  # noqa: BLE001 - a backend that does not load is a line, not a failure
                log(f"{name} on {label}: does not load ({type(exc).__name__}: {str(exc)[:200]})")
                continue
            for what, images in inputs.items():
                if log.elapsed > a.budget_s - 45.0:
                    log(f"{name} on {label}, {what}: skipped, out of time")
                    continue
                d.dehaze(images[0])
                sync()
                runs = []
                for _ in range(1 if a.tiny else 2):
                    t0 = time.perf_counter()
                    for im in images:
                        d.dehaze(im)
                    sync()
                    runs.append(time.perf_counter() - t0)
                results.setdefault(name, {}).setdefault(label, {})[what] = round(statistics.median(runs), 4)
            log(f"{name} on {label}: {json.dumps(results.get(name, {}).get(label, {}))} s")
    if not cuda:
        log("CUDA is not available: the timings above are the CPU's (a test of the script, not a measurement)")
    return results


def torchrun(a: argparse.Namespace, log: Log, env: dict, seconds: float) -> int | None:
    """odcr train with two ranks: on two GPUs there; with --tiny on the CPU (gloo) to test the command."""
    if env["gpus"] < 2 and not a.tiny:
        log(f"torchrun skipped: {env['gpus']} GPU(s), two are needed")
        return None
    out = a.work / "ddp"
    recipe = TINY if a.tiny else [*TEACHER, "--device", "cuda"]
    args = ["train", "--hazy", str(a.carry / "hazy"), "--clear", str(a.carry / "clear"), "--out", str(out), *recipe,
            "--iters", "2" if a.tiny else "40", "--max-minutes", f"{seconds / 60:.3f}"]
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    code = _odcr(args, log, seconds, prefix)
    if (out / "log.jsonl").is_file():
        shutil.copyfile(out / "log.jsonl", a.out / "ddp_log.jsonl")
    return code


def _phase(log: Log, name: str, work):  # noqa: ANN001, ANN202
    """One phase; a failure is logged with its cause and the next phase still runs (the GPU's
    minutes are few: what did work must come back)."""
    try:
        return work()
    except Exception as exc:  # noqa: BLE001
        log(f"{name} failed: {type(exc).__name__}: {str(exc)[:300]}")
        return None


def run(a: argparse.Namespace) -> None:
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    log = Log(a.out)
    if not (a.carry / "hazy").is_dir():
        raise SystemExit(f"no data in {a.carry}: run `python scripts/gpu_run.py prepare` first and carry it")
    env = environment(log)
    if not env["cuda"]:
        log("CUDA is not available: the teacher trains on the CPU" + (" (--tiny)" if a.tiny else "")
            + "; the CUDA-only parts are skipped with a line each")
    reserve = (30.0 if a.tiny else 130.0) + (40.0 if env["gpus"] >= 2 or a.tiny else 0.0)
    run_dir = _phase(log, "the teacher", lambda: train_teacher(a, log, env, a.budget_s - reserve - log.elapsed))
    teacher = _phase(log, "collecting the teacher", lambda: collect(run_dir, a.out, log)) if run_dir else None
    summary = {"environment": env, "timings": _phase(log, "the timings", lambda: timings(a, log, env, teacher))}
    summary["torchrun_exit"] = _phase(log, "torchrun",
                                      lambda: torchrun(a, log, env, max(10.0, a.budget_s - log.elapsed - 5.0)))
    summary["seconds"] = round(log.elapsed, 1)
    (a.out / "gpu_run.json").write_text(json.dumps(summary, indent=1))
    log(f"done in {log.elapsed:.0f} s (budget {a.budget_s:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--carry", type=Path, default=CARRY)
    p.add_argument("--max-mib", type=float, default=28.0)
    p.add_argument("--short-side", type=int, default=288)
    p.add_argument("--limit", type=int, default=0, help="at most this many photos a folder (0: all; a test's)")
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    r.add_argument("--carry", type=Path, default=CARRY)
    r.add_argument("--work", type=Path, default=Path("/tmp/odcr_gpu_run"), help="the runs' folders (not sent back)")
    r.add_argument("--budget-s", type=float, default=540.0)
    r.add_argument("--tiny", action="store_true")
    j = sub.add_parser("join")
    j.add_argument("folder", type=Path)
    j.add_argument("-o", "--output", type=Path, required=True)
    a = ap.parse_args()
    {"prepare": prepare, "run": run, "join": join}[a.stage](a)


if __name__ == "__main__":
    main()
