"""The ``dehaze`` task: expand inputs, plan outputs safely, run a Dehazer over them with
reading/encoding overlapped with the network, and report per file.

No Typer / rich here: the CLI passes progress callbacks. Usage problems (detected before
any work starts: bad options, an unsafe plan, an output folder that cannot be written, no input
at all) raise :class:`UsageError` (exit code 2); per-file failures, a named input that does not
exist among them, are recorded and give exit code 1. Ctrl-C raises :class:`Interrupted` with the
report of what was finished.
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
from odcr_cli.files.folders import is_image_name, walk_folder
from odcr_cli.files.imageio import (EXT_FORMAT, ImageData, encode_image,
                              format_for_ext, read_image)
from odcr_cli.errors import ImageReadError, UsageError

STDIO = "-"


class Interrupted(Exception):
    """Ctrl-C during a run; ``report`` holds the files finished so far (every output written
    is complete: writes are atomic)."""

    def __init__(self, report: "BatchReport") -> None:
        super().__init__("interrupted")
        self.report = report


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
    strength: float = 1.0              # 0 = the input, 1 = full dehazing
    dry_run: bool = False              # plan and report only: no model, nothing written
    json_report: str | None = None     # only checked up front (its folder must be writable)


@dataclass
class InputItem:
    source: str            # a path, or "-" for stdin
    rel: Path              # path used to mirror the tree under an -o folder


@dataclass
class InputSet:
    """What the inputs expanded to, and what was left out of them (for the summary)."""
    items: list[InputItem] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)   # (named input, why): per-file failures
    own_outputs: list[str] = field(default_factory=list)           # carry this run's output suffix
    subfolders: list[str] = field(default_factory=list)            # not read (no --recursive)
    not_images: list[str] = field(default_factory=list)            # in folders/globs, not image files

    def left_out(self) -> dict[str, Any]:
        return {"own_outputs": len(self.own_outputs), "subfolders_not_read": self.subfolders,
                "not_images": self.not_images}


@dataclass
class Job:
    item: InputItem
    output: str            # a path, or "-" for stdout
    fmt: str | None        # output format; None = decided from the input (ext auto)


@dataclass
class FileResult:
    input: str
    output: str | None
    status: str            # ok | failed | skipped | planned (--dry-run)
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
    inputs: InputSet = field(default_factory=InputSet)
    interrupted: bool = False
    dry_run: bool = False

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
    def planned(self) -> int:
        return sum(f.status == "planned" for f in self.files)

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.failed else 0

    def to_dict(self) -> dict:
        return {"odcr_version": __version__, "command": "dehaze", **self.engine, "shard": self.shard,
                "dry_run": self.dry_run,
                "summary": {"total": len(self.files), "ok": self.ok, "failed": self.failed,
                            "skipped": self.skipped, "planned": self.planned, "interrupted": self.interrupted,
                            "seconds": round(self.seconds, 3), "network_seconds": round(self.net_seconds, 3)},
                "left_out": self.inputs.left_out(),
                "files": [asdict(f) for f in self.files]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# --------------------------------------------------------------------------------------------
# input expansion and output planning
# --------------------------------------------------------------------------------------------

def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _carries_suffix(p: Path, suffix: str) -> bool:
    return bool(suffix) and p.stem.endswith(suffix) and p.suffix.lower().lstrip(".") in EXT_FORMAT


def gather_inputs(inputs: list[str], recursive: bool = False, input_list: str | None = None,
                  own_suffix: str = "") -> InputSet:
    """Files, folders, globs, "-" and the lines of an input list -> sorted unique items, plus what
    was left out. Files found in folders and globs whose name carries ``own_suffix`` (the run's
    output suffix, e.g. "_dehazed") are outputs of an earlier run, not inputs: leaving them out is
    what makes a beside-the-input run rerunnable. Files named one by one are always inputs."""
    found = InputSet()
    items = found.items

    def add_found(f: Path, rel: Path) -> None:
        if not is_image_name(f):
            found.not_images.append(str(f))
        elif _carries_suffix(f, own_suffix):
            found.own_outputs.append(str(f))
        else:
            items.append(InputItem(str(f), rel))

    for raw in inputs:
        if raw == STDIO:
            items.append(InputItem(STDIO, Path("stdin.png")))
            continue
        p = Path(raw)
        if p.is_dir():
            listing = walk_folder(p, recursive)
            for f in listing.images + listing.not_images:
                add_found(f, f.relative_to(p))
            found.subfolders += [str(f) for f in listing.subfolders]
        elif p.is_file():
            items.append(InputItem(str(p), Path(p.name)))
        elif any(ch in raw for ch in "*?["):
            root = _glob_root(raw)
            matches = sorted(m for m in glob.glob(raw, recursive=True) if Path(m).is_file())
            if not matches:
                found.missing.append((raw, "no files match"))
            for m in matches:
                add_found(Path(m), Path(os.path.relpath(m, root)))
        else:
            found.missing.append((raw, "not found"))
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
    found.items = unique
    return found


def expand_inputs(inputs: list[str], recursive: bool = False, input_list: str | None = None) -> list[InputItem]:
    """The items of :func:`gather_inputs` (what was left out is dropped)."""
    return gather_inputs(inputs, recursive, input_list).items


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
    return [it for it in items if _in_shard(it.rel, shard)]


def _in_shard(rel: Path, shard: tuple[int, int]) -> bool:
    i, n = shard
    return int(hashlib.sha1(rel.as_posix().encode()).hexdigest(), 16) % n == i


def is_file_target(out: str) -> bool:
    """An -o that names one image file: an image extension, not an existing folder, no trailing '/'."""
    return (not Path(out).is_dir() and not out.endswith(("/", os.sep))
            and Path(out).suffix.lower().lstrip(".") in EXT_FORMAT)


def output_suffix(opts: DehazeOptions) -> str:
    """The suffix this run adds to output names ("" when it writes one file or stdout)."""
    if opts.output == STDIO or (opts.output is not None and is_file_target(opts.output)):
        return ""
    if opts.output is None:
        return opts.suffix if opts.suffix is not None else "_dehazed"
    return opts.suffix or ""


def plan_outputs(items: list[InputItem], opts: DehazeOptions, n_given: int | None = None) -> list[Job]:
    """Decide every output path; refuse unsafe plans before any work starts. ``n_given``: the
    inputs named before sharding, missing ones included (default: ``len(items)``)."""
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
    n_given = max(len(items), n_given or 0)
    if out is not None:
        op = Path(out)
        if is_file_target(out):
            # an image extension names a file, never a folder to create
            if n_given > 1:
                raise UsageError(f"-o {out} names one file but {n_given} inputs were given; "
                                 f"write several into a folder: -o {op.with_suffix('')}/")
        else:
            folder_mode = (op.is_dir() or out.endswith(("/", os.sep)) or n_given > 1
                           or any(Path(i).is_dir() or any(ch in i for ch in "*?[") for i in opts.inputs)
                           or opts.input_list is not None)
            if not folder_mode:
                raise UsageError(f"-o {out}: a single output file needs a png, jpg, webp or tif suffix "
                                 "(or end the folder name with '/')")
    suffix = output_suffix(opts)
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


def _check_writable(jobs: list[Job], opts: DehazeOptions) -> None:
    """Every folder that will receive a file can be written: found now, not after the work."""
    from odcr_cli.files.fsutil import writable_dir_problem

    folders = {str(Path(j.output).parent) for j in jobs if j.output != STDIO}
    if opts.json_report not in (None, STDIO):
        folders.add(str(Path(opts.json_report).parent))
    for folder in sorted(folders):
        problem = writable_dir_problem(folder)
        if problem:
            raise UsageError(f"output folder {folder} cannot be written ({problem}); nothing was processed")


def _no_input_message(found: InputSet) -> str:
    if found.missing:
        raw, why = found.missing[0]
        more = f" (and {len(found.missing) - 1} more)" if len(found.missing) > 1 else ""
        return f"input {why}: {raw}{more}"
    notes = []
    if found.own_outputs:
        notes.append(f"{len(found.own_outputs)} file(s) carry the output suffix and were left out")
    if found.subfolders:
        notes.append(f"{len(found.subfolders)} subfolder(s) not read: add --recursive")
    if found.not_images:
        notes.append(f"{len(found.not_images)} file(s) are not images")
    return "no input images found" + (f" ({'; '.join(notes)})" if notes else "")


def run_dehaze(opts: DehazeOptions, dehazer: Any = None,
               progress: Callable[[FileResult, int, int], None] | None = None,
               on_start: Callable[[dict, int, int], None] | None = None,
               stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
               on_begin: Callable[[FileResult], None] | None = None) -> BatchReport:
    """Process every input; returns the report (``report.exit_code`` is 0 or 1).

    ``on_start(engine, total, to_process)`` once the model is loaded; ``progress(result, done,
    total)`` once per file, in the order they finish, with ``done`` counting every finished file
    (missing and skipped ones first, before any network pass); ``on_begin(result)``
    before a file's network pass (its size known). Raises :class:`UsageError` for problems found
    before any work starts and :class:`Interrupted` on Ctrl-C; model loading errors
    (``WeightsError``, ``InferenceError``) propagate to the caller too."""
    t_start = time.perf_counter()
    shard = parse_shard(opts.shard)
    if not 0.0 <= opts.strength <= 1.0:
        raise UsageError(f"--strength {opts.strength}: use a value from 0 (the input) to 1 (full dehazing)")
    found = gather_inputs(opts.inputs, opts.recursive, opts.input_list, output_suffix(opts))
    if not found.items:
        raise UsageError(_no_input_message(found))
    n_given = len(found.items) + len(found.missing)
    items = shard_items(found.items, shard)
    missing = [(raw, why) for raw, why in found.missing
               if shard is None or _in_shard(Path(Path(raw).name), shard)]
    jobs = plan_outputs(items, opts, n_given) if items else []
    todo = [k for k, job in enumerate(jobs)
            if not (opts.skip_existing and job.output != STDIO and os.path.exists(job.output))]
    _check_writable([jobs[k] for k in todo], opts)

    total = len(missing) + len(jobs)
    results: list[FileResult] = []
    timing = {"network": 0.0}
    # the report lists files in input order whatever order they finish in
    order = {raw: i for i, (raw, _) in enumerate(missing)}
    order.update({job.item.source: len(missing) + k for k, job in enumerate(jobs)})

    def finish(res: FileResult) -> None:
        results.append(res)
        if progress:
            progress(res, len(results), total)

    def report(engine: dict, interrupted: bool = False) -> BatchReport:
        files = sorted(results, key=lambda r: order.get(r.input, total))
        return BatchReport(files, engine, time.perf_counter() - t_start, timing["network"], opts.shard,
                           found, interrupted, opts.dry_run)

    todo_set = set(todo)
    if opts.dry_run:  # the plan, as a real run would carry it out: no model, nothing written
        for raw, why in missing:
            finish(FileResult(raw, None, "failed", why))
        for k, job in enumerate(jobs):
            status = "planned" if k in todo_set else "skipped"
            finish(FileResult(job.item.source, job.output, status, None if k in todo_set else "output exists"))
        return report({"method": opts.method, "model": opts.model, "weights": opts.weights,
                       "strength": opts.strength})

    engine: dict = {"method": opts.method, "strength": opts.strength}
    try:
        if dehazer is None:
            from odcr_cli.engine.dehazer import Dehazer
            dehazer = Dehazer(weights=opts.weights, method=opts.method, device=opts.device,
                              backend=opts.backend, onnx_path=opts.onnx, tile=opts.tile,
                              max_side=opts.max_side, half=opts.half, model=opts.model, strength=opts.strength)
        engine = dehazer.describe()
        if on_start is not None:
            on_start(engine, total, len(todo))
        # what needs no model first, so that the counter runs in order
        for raw, why in missing:
            finish(FileResult(raw, None, "failed", why))
        for k, job in enumerate(jobs):
            if k not in todo_set:
                finish(FileResult(job.item.source, job.output, "skipped", "output exists"))
        _process(jobs, todo, opts, dehazer, finish, on_begin, timing, stdin, stdout)
    except KeyboardInterrupt:
        raise Interrupted(report(engine, interrupted=True)) from None
    return report(engine)


def _process(jobs: list[Job], todo: list[int], opts: DehazeOptions, dehazer: Any,
             finish: Callable[[FileResult], None], on_begin: Callable[[FileResult], None] | None,
             timing: dict[str, float], stdin: BinaryIO | None, stdout: BinaryIO | None) -> None:
    """Run the dehazer over ``jobs[todo]``, reads and writes overlapped with the network on a
    thread pool; adds the network seconds to ``timing["network"]``. On Ctrl-C, writes already queued are finished (and
    reported) before the interrupt goes on: their network pass is done and each write is atomic."""

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
            from odcr_cli.files.fsutil import atomic_output
            with atomic_output(job.output) as fh:
                fh.write(data)
        return notes

    workers = max(1, opts.workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="odcr-io") as pool:
        reads: deque[tuple[int, Future, float]] = deque()
        writes: list[tuple[Future, FileResult, float]] = []
        queue = list(todo)
        prefetch = workers + 1

        def fill() -> None:
            while queue and len(reads) < prefetch:
                k = queue.pop(0)
                reads.append((k, pool.submit(read, jobs[k]), time.perf_counter()))

        def collect(block: bool) -> None:
            for entry in list(writes):
                fut, res, t0 = entry
                if not block and not fut.done():
                    continue
                try:
                    res.warnings += fut.result()
                    res.status = "ok"
                except Exception as exc:  # noqa: BLE001 - per-file isolation
                    res.status, res.error = "failed", f"cannot write {res.output}: {exc}"
                res.seconds = time.perf_counter() - t0
                writes.remove(entry)
                finish(res)

        try:
            fill()
            while reads:
                k, fut, t0 = reads.popleft()
                fill()
                job = jobs[k]
                res = FileResult(job.item.source, job.output, "failed")
                try:
                    img = fut.result()
                    res.width, res.height = img.size
                    if on_begin:
                        on_begin(res)
                    tn = time.perf_counter()
                    out_pixels = dehazer.dehaze(img.pixels)
                    res.net_seconds = time.perf_counter() - tn
                    timing["network"] += res.net_seconds
                    plan = getattr(dehazer, "last_plan", None)
                    res.mode = getattr(plan, "mode", None)
                    res.warnings += list(getattr(plan, "notes", []) or [])
                    writes.append((pool.submit(write, job, img.with_pixels(out_pixels)), res, t0))
                except ImageReadError as exc:
                    res.error = exc.reason
                    res.seconds = time.perf_counter() - t0
                    finish(res)
                except Exception as exc:  # noqa: BLE001 - one bad file never stops the batch
                    res.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    res.seconds = time.perf_counter() - t0
                    finish(res)
                collect(block=False)
            collect(block=True)
        except KeyboardInterrupt:
            for _, fut, _ in reads:
                fut.cancel()
            collect(block=True)
            raise


def write_report(report: BatchReport, target: str, stdout: BinaryIO | None = None) -> None:
    text = report.to_json() + "\n"
    if target == STDIO:
        (stdout or sys.stdout.buffer).write(text.encode())
        (stdout or sys.stdout.buffer).flush()
    else:
        from odcr_cli.files.fsutil import atomic_output
        with atomic_output(target, "w") as fh:
            fh.write(text)
