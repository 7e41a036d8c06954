"""The ``dehaze`` task: expand inputs, plan outputs safely, run a Dehazer over them with
reading/encoding overlapped with the network, and report per file.

No Typer / rich here: the CLI passes a progress callback. Usage problems (detected before
any work starts) raise :class:`UsageError` (exit code 2); per-file failures are recorded and
give exit code 1.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

from odcr_cli import __version__
from odcr_cli.imageio import (EXT_FORMAT, READABLE_SUFFIXES, ImageData, ImageReadError, encode_image,
                              format_for_ext, read_image)

STDIO = "-"


class UsageError(Exception):
    """Bad arguments or an unsafe plan; nothing has been processed. Exit code 2."""


@dataclass
class DehazeOptions:
    inputs: list[str] = field(default_factory=list)
    output: str | None = None
    recursive: bool = False
    input_list: str | None = None
    suffix: str | None = None          # default: "_dehazed" beside the input, "" in an -o folder
    ext: str = "auto"
    quality: int | None = None
    overwrite: bool = False
    skip_existing: bool = False
    shard: str | None = None           # "i/N", 0 <= i < N
    weights: str | None = None
    model: str | None = None          # a bundled model by name (None: the default)
    method: str = "odcr"
    device: str = "auto"
    half: bool = False
    backend: str = "auto"
    onnx: str | None = None
    tile: int | None = None
    max_side: int | str | None = "auto"
    max_pixels: int | None = None
    strip_metadata: bool = False
    workers: int = 2


@dataclass
class InputItem:
    source: str            # a path, or "-" for stdin
    rel: Path              # path used to mirror the tree under an -o folder


@dataclass
class Job:
    item: InputItem
    output: str            # a path, or "-" for stdout
    fmt: str | None        # output format; None = decided from the input (ext auto)


@dataclass
class FileResult:
    input: str
    output: str | None
    status: str            # ok | failed | skipped
    error: str | None = None
    width: int | None = None
    height: int | None = None
    seconds: float = 0.0
    net_seconds: float = 0.0
    mode: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    files: list[FileResult]
    engine: dict[str, Any]
    seconds: float
    net_seconds: float
    shard: str | None = None

    @property
    def ok(self) -> int:
        return sum(f.status == "ok" for f in self.files)

    @property
    def failed(self) -> int:
        return sum(f.status == "failed" for f in self.files)

    @property
    def skipped(self) -> int:
        return sum(f.status == "skipped" for f in self.files)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_dict(self) -> dict:
        return {"odcr_version": __version__, "command": "dehaze", **self.engine, "shard": self.shard,
                "summary": {"total": len(self.files), "ok": self.ok, "failed": self.failed,
                            "skipped": self.skipped, "seconds": round(self.seconds, 3),
                            "network_seconds": round(self.net_seconds, 3)},
                "files": [asdict(f) for f in self.files]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# --------------------------------------------------------------------------------------------
# input expansion and output planning
# --------------------------------------------------------------------------------------------

def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in READABLE_SUFFIXES and not p.name.startswith(".")


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def expand_inputs(inputs: list[str], recursive: bool = False, input_list: str | None = None) -> list[InputItem]:
    """Files, folders, globs, "-" and the lines of an input list -> sorted unique items."""
    items: list[InputItem] = []
    for raw in inputs:
        if raw == STDIO:
            items.append(InputItem(STDIO, Path("stdin.png")))
            continue
        p = Path(raw)
        if p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            files = sorted(f for f in found if f.is_file() and _is_image_name(f)
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            items += [InputItem(str(f), f.relative_to(p)) for f in files]
        elif p.is_file():
            items.append(InputItem(str(p), Path(p.name)))
        elif any(ch in raw for ch in "*?["):
            root = _glob_root(raw)
            matches = sorted(m for m in glob.glob(raw, recursive=True) if Path(m).is_file())
            if not matches:
                raise UsageError(f"no files match {raw!r}")
            items += [InputItem(m, Path(os.path.relpath(m, root))) for m in matches]
        else:
            raise UsageError(f"input not found: {raw}")
    if input_list is not None:
        try:
            text = sys.stdin.read() if input_list == STDIO else Path(input_list).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read --input-list {input_list}: {exc.strerror or exc}") from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if lines:
            absolute = [os.path.abspath(ln) for ln in lines]
            root = os.path.commonpath([os.path.dirname(a) for a in absolute])
            items += [InputItem(ln, Path(os.path.relpath(a, root))) for ln, a in zip(lines, absolute)]
    seen: set[str] = set()
    unique = []
    for it in items:
        key = it.source if it.source == STDIO else os.path.realpath(it.source)
        if key not in seen:
            seen.add(key)
            unique.append(it)
    return unique


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        i, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise UsageError(f"--shard expects i/N (e.g. 0/4), got {shard!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {shard}: need N >= 1 and 0 <= i < N (i counts from 0)")
    return i, n


def shard_items(items: list[InputItem], shard: tuple[int, int] | None) -> list[InputItem]:
    """Deterministic slice by a hash of the relative path: the same file always lands in the same
    shard, whatever the machine and whatever else is in the folder."""
    if shard is None:
        return items
    i, n = shard
    def bucket(it: InputItem) -> int:
        return int(hashlib.sha1(it.rel.as_posix().encode()).hexdigest(), 16) % n
    return [it for it in items if bucket(it) == i]


def plan_outputs(items: list[InputItem], opts: DehazeOptions) -> list[Job]:
    """Decide every output path; refuse unsafe plans before any work starts."""
    ext = (opts.ext or "auto").lower().lstrip(".")
    if ext != "auto" and ext not in EXT_FORMAT:
        raise UsageError(f"--ext {opts.ext}: use auto, png, jpg, webp or tif")
    if opts.overwrite and opts.skip_existing:
        raise UsageError("--overwrite and --skip-existing exclude each other")
    out = opts.output
    stdin_items = [it for it in items if it.source == STDIO]
    if len(stdin_items) and len(items) > 1:
        raise UsageError("'-' (stdin) cannot be combined with other inputs")
    if out == STDIO or (out is None and stdin_items):
        if len(items) != 1:
            raise UsageError("-o - (stdout) takes exactly one input")
        fmt = None if ext == "auto" else EXT_FORMAT[ext]
        return [Job(items[0], STDIO, fmt)]

    folder_mode = False
    if out is not None:
        op = Path(out)
        folder_mode = (op.is_dir() or out.endswith(("/", os.sep)) or len(items) > 1
                       or any(Path(i).is_dir() or any(ch in i for ch in "*?[") for i in opts.inputs)
                       or opts.input_list is not None)
        if not folder_mode and op.suffix.lower().lstrip(".") not in EXT_FORMAT:
            raise UsageError(f"-o {out}: a single output file needs a png, jpg, webp or tif suffix "
                             "(or end the folder name with '/')")
    suffix = opts.suffix if opts.suffix is not None else ("" if folder_mode else "_dehazed")
    jobs: list[Job] = []
    for it in items:
        if out is not None and not folder_mode:
            target = Path(out)
            fmt = format_for_ext(target.suffix)
        else:
            src = Path(it.source)
            e = ext if ext != "auto" else _auto_ext(src)
            name = f"{it.rel.stem}{suffix}.{e}"
            target = (Path(out) / it.rel.parent / name) if out is not None else src.with_name(name)
            fmt = None if ext == "auto" else EXT_FORMAT[ext]
        jobs.append(Job(it, str(target), fmt))
    _check_safety(jobs, opts)
    return jobs


def _auto_ext(src: Path) -> str:
    s = src.suffix.lower().lstrip(".")
    return src.suffix.lstrip(".") if s in EXT_FORMAT else "png"


def _check_safety(jobs: list[Job], opts: DehazeOptions) -> None:
    inputs = {os.path.realpath(j.item.source): j.item.source for j in jobs}
    seen: dict[str, str] = {}
    for j in jobs:
        real = os.path.realpath(j.output)
        if real in inputs:
            raise UsageError(f"refusing to overwrite the input {inputs[real]} (output {j.output}); "
                             "choose another -o, --suffix or --ext")
        if real in seen:
            raise UsageError(f"{seen[real]} and {j.item.source} would both be written to {j.output}; "
                             "nothing was processed")
        seen[real] = j.item.source
    if not opts.overwrite and not opts.skip_existing:
        existing = [j.output for j in jobs if os.path.exists(j.output)]
        if existing:
            raise UsageError(f"{len(existing)} output(s) already exist (first: {existing[0]}); "
                             "pass --overwrite to replace them or --skip-existing to keep them")


# --------------------------------------------------------------------------------------------
# processing
# --------------------------------------------------------------------------------------------

def _finish_auto_format(job: Job, img: ImageData) -> str:
    if job.fmt is not None:
        return job.fmt
    if job.output == STDIO:
        return img.format if img.format in FORMAT_TO_WRITE else "PNG"
    return format_for_ext(Path(job.output).suffix)


FORMAT_TO_WRITE = {"JPEG", "PNG", "WEBP", "TIFF"}


def run_dehaze(opts: DehazeOptions, dehazer: Any = None,
               progress: Callable[[FileResult, int, int], None] | None = None,
               on_start: Callable[[dict, int], None] | None = None,
               stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> BatchReport:
    """Process every input; returns the report (``report.exit_code`` is 0 or 1).

    Raises :class:`UsageError` for problems found before any work starts; model loading errors
    (``WeightsError``, ``InferenceError``) propagate to the caller too."""
    t_start = time.perf_counter()
    shard = parse_shard(opts.shard)
    items = expand_inputs(opts.inputs, opts.recursive, opts.input_list)
    if not items:
        raise UsageError("no input images found" + ("" if opts.recursive else " (folders are read "
                                                        "non-recursively; add --recursive)"))
    items = shard_items(items, shard)
    jobs = plan_outputs(items, opts) if items else []

    if dehazer is None:
        from odcr_cli.inference import Dehazer
        dehazer = Dehazer(weights=opts.weights, method=opts.method, device=opts.device,
                          backend=opts.backend, onnx_path=opts.onnx, tile=opts.tile,
                          max_side=opts.max_side, half=opts.half, model=opts.model)
    engine = dehazer.describe()
    if on_start is not None:
        on_start(engine, len(jobs))

    results: list[FileResult | None] = [None] * len(jobs)
    todo: list[int] = []
    for k, job in enumerate(jobs):
        if opts.skip_existing and job.output != STDIO and os.path.exists(job.output):
            results[k] = FileResult(job.item.source, job.output, "skipped", "output exists")
            if progress:
                progress(results[k], k, len(jobs))
        else:
            todo.append(k)

    def read(job: Job) -> ImageData:
        if job.item.source == STDIO:
            return read_image(io.BytesIO((stdin or sys.stdin.buffer).read()), opts.max_pixels)
        return read_image(job.item.source, opts.max_pixels)

    def write(job: Job, img: ImageData) -> list[str]:
        fmt = _finish_auto_format(job, img)
        data, notes = encode_image(img, fmt, opts.quality, opts.strip_metadata)
        if job.output == STDIO:
            out = stdout or sys.stdout.buffer
            out.write(data)
            out.flush()
        else:
            from odcr_cli.fsutil import atomic_output
            with atomic_output(job.output) as fh:
                fh.write(data)
        return notes

    net_total = 0.0
    done = len(jobs) - len(todo)
    workers = max(1, opts.workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="odcr-io") as pool:
        reads: deque[tuple[int, Future, float]] = deque()
        writes: list[tuple[int, Future, FileResult, float]] = []
        queue = list(todo)
        prefetch = workers + 1

        def fill() -> None:
            while queue and len(reads) < prefetch:
                k = queue.pop(0)
                reads.append((k, pool.submit(read, jobs[k]), time.perf_counter()))

        def collect(block: bool) -> None:
            nonlocal done
            for entry in list(writes):
                k, fut, res, t0 = entry
                if not block and not fut.done():
                    continue
                try:
                    res.warnings += fut.result()
                    res.status = "ok"
                except Exception as exc:  # noqa: BLE001 - per-file isolation
                    res.status, res.error = "failed", f"cannot write {res.output}: {exc}"
                res.seconds = time.perf_counter() - t0
                results[k] = res
                writes.remove(entry)
                done += 1
                if progress:
                    progress(res, done, len(jobs))

        fill()
        while reads:
            k, fut, t0 = reads.popleft()
            fill()
            job = jobs[k]
            res = FileResult(job.item.source, job.output, "failed")
            try:
                img = fut.result()
                res.width, res.height = img.size
                tn = time.perf_counter()
                out_pixels = dehazer.dehaze(img.pixels)
                res.net_seconds = time.perf_counter() - tn
                net_total += res.net_seconds
                plan = getattr(dehazer, "last_plan", None)
                res.mode = getattr(plan, "mode", None)
                res.warnings += list(getattr(plan, "notes", []) or [])
                writes.append((k, pool.submit(write, job, img.with_pixels(out_pixels)), res, t0))
            except ImageReadError as exc:
                res.error = str(exc)
                res.seconds = time.perf_counter() - t0
                results[k] = res
                done += 1
                if progress:
                    progress(res, done, len(jobs))
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the batch
                res.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                res.seconds = time.perf_counter() - t0
                results[k] = res
                done += 1
                if progress:
                    progress(res, done, len(jobs))
            collect(block=False)
        collect(block=True)

    files = [r for r in results if r is not None]
    return BatchReport(files, engine, time.perf_counter() - t_start, net_total, opts.shard)


def write_report(report: BatchReport, target: str, stdout: BinaryIO | None = None) -> None:
    text = report.to_json() + "\n"
    if target == STDIO:
        (stdout or sys.stdout.buffer).write(text.encode())
        (stdout or sys.stdout.buffer).flush()
    else:
        from odcr_cli.fsutil import atomic_output
        with atomic_output(target, "w") as fh:
            fh.write(text)
