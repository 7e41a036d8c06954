"""The ``dehaze`` task: read each planned input, run a dehazer over it, write the result, with
reading and encoding overlapped with the network, and report per file. What to do (inputs,
shards, output paths, the safety checks) is decided first, in :mod:`odcr_cli.tasks.dehaze.plan`.

No Typer / rich here: the CLI passes progress callbacks. Usage problems (detected before
any work starts: bad options, an unsafe plan, an output folder that cannot be written, no input
at all) raise :class:`UsageError` (exit code 2); per-file failures, a named input that does not
exist among them, are recorded and give exit code 1. Ctrl-C raises :class:`Interrupted` with the
report of what was finished.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Protocol

from odcr_cli import __version__
from odcr_cli.errors import ImageReadError, OdcrError
from odcr_cli.files.fsutil import atomic_output, remove_stale_temps
from odcr_cli.files.imageio import FORMAT_EXT, ImageData, encode_image, format_for_ext, read_image
from odcr_cli.haze.constants import T_MIN
from odcr_cli.tasks.dehaze.options import DehazeOptions, transmission_paths
from odcr_cli.tasks.dehaze.plan import STDIO, InputSet, Job, Plan, job_outputs, parse_shard, plan_run

if TYPE_CHECKING:  # annotations only: the engine (numpy, OpenCV) loads when a model is needed
    import numpy as np

    from odcr_cli.engine.dehazer import ImageRecord


class Interrupted(Exception):
    """Ctrl-C during a run; ``report`` holds the files finished so far (every output written
    is complete: writes are atomic)."""

    def __init__(self, report: "BatchReport") -> None:
        super().__init__("interrupted")
        self.report = report


@dataclass
class FileResult:
    input: str
    output: str | None
    status: str            # ok | failed | skipped | planned (--dry-run) | interrupted (a video: nothing written)
    error: str | None = None           # why it failed (failed files only)
    width: int | None = None
    height: int | None = None
    seconds: float = 0.0
    net_seconds: float = 0.0
    mode: str | None = None
    warnings: list[str] = field(default_factory=list)
    frames: int | None = None          # videos: frames written
    fps: float | None = None           # videos: the clip's frame rate (kept)
    codec: str | None = None           # videos: the encoder written with
    details: dict[str, Any] = field(default_factory=dict)  # how it was processed (-v): stage seconds, sizes, counts
    reason: str | None = None          # why it was skipped ("output exists")
    also_written: list[str] = field(default_factory=list)  # --save-transmission: t and depth beside the output


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

    def count(self, status: str) -> int:
        """How many files ended with ``status`` (ok | failed | skipped | planned)."""
        return sum(f.status == status for f in self.files)

    ok = property(lambda self: self.count("ok"))
    failed = property(lambda self: self.count("failed"))
    skipped = property(lambda self: self.count("skipped"))
    planned = property(lambda self: self.count("planned"))

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.failed else 0

    def to_dict(self) -> dict:
        return {"odcr_version": __version__, "command": "dehaze", **self.engine, "shard": self.shard,
                "dry_run": self.dry_run,
                "summary": {"total": len(self.files), "ok": self.ok, "failed": self.failed,
                            "skipped": self.skipped, "planned": self.planned, "interrupted": self.interrupted,
                            "interrupted_files": self.count("interrupted"),
                            "seconds": round(self.seconds, 3), "network_seconds": round(self.net_seconds, 3)},
                "left_out": self.inputs.left_out(),
                "files": [asdict(f) for f in self.files]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


ProgressFn = Callable[[FileResult, int, int], None]
StartFn = Callable[[dict, int, int], None]
BeginFn = Callable[[FileResult], None]
FramesFn = Callable[[FileResult, int, "int | None"], None]  # a video's frames done, of how many (None: unknown)


class DehazerLike(Protocol):
    """What :func:`run_dehaze` needs of a dehazer: :class:`odcr_cli.engine.dehazer.Dehazer`, or a
    caller's own object. ``quantization`` (a JPEG's tables) is passed for JPEG inputs only."""

    def dehaze_with_record(self, image: np.ndarray, quantization: dict | None = None) -> tuple[np.ndarray, ImageRecord]: ...

    def describe(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

class ResultLog:
    """Every file's result, recorded once: ``progress`` hears of each as it finishes, the report
    lists them in input order."""

    def __init__(self, plan: Plan, opts: DehazeOptions, started: float, progress: ProgressFn | None) -> None:
        self._plan, self._opts, self._started, self._progress = plan, opts, started, progress
        self._order = plan.input_order()
        self._results: list[FileResult] = []

    def finish(self, result: FileResult) -> None:
        self._results.append(result)
        if self._progress is not None:
            self._progress(result, len(self._results), self._plan.total)

    def report(self, engine: dict[str, Any], interrupted: bool = False) -> BatchReport:
        files = sorted(self._results, key=lambda r: self._order.get(r.input, self._plan.total))
        network = sum(r.net_seconds for r in self._results)
        return BatchReport(files, engine, time.perf_counter() - self._started, network, self._opts.shard,
                           self._plan.found, interrupted, self._opts.dry_run)


def _record_unprocessed(plan: Plan, log: ResultLog, dry_run: bool) -> None:
    """Missing inputs, kept outputs and (dry run) the planned files: all that needs no model."""
    for raw, why in plan.missing:
        log.finish(FileResult(raw, None, "failed", why))
    for job in plan.jobs:
        if not plan.runs(job):
            log.finish(FileResult(job.item.source, job.output, "skipped", reason="output exists"))
        elif dry_run:
            log.finish(FileResult(job.item.source, job.output, "planned"))


# --------------------------------------------------------------------------------------------
# reading and writing
# --------------------------------------------------------------------------------------------



def _output_format(job: Job, img: ImageData) -> str:
    """The planned format, else the input's (stdout) or the output suffix's."""
    if job.fmt is not None:
        return job.fmt
    if job.output == STDIO:
        return img.format if img.format in FORMAT_EXT else "PNG"  # the input's format when we write it
    return format_for_ext(Path(job.output).suffix)


@dataclass(frozen=True)
class _ImageFiles:
    """One run's image reading and writing: files, or stdin/stdout for "-"."""
    opts: DehazeOptions
    stdin: BinaryIO | None
    stdout: BinaryIO | None

    def read(self, job: Job) -> ImageData:
        if job.item.source == STDIO:
            return read_image(io.BytesIO((self.stdin or sys.stdin.buffer).read()), self.opts.max_pixels)
        return read_image(job.item.source, self.opts.max_pixels)

    def write(self, job: Job, img: ImageData, transmission: np.ndarray | None = None) -> list[str]:
        """Encode and write (and ``transmission`` as t and -ln t, --save-transmission); returns the
        encoder's notes. A file is written atomically: an interrupted run leaves it complete or absent."""
        if transmission is not None:
            _write_transmission(job.output, transmission)
        data, notes = encode_image(img, _output_format(job, img), self.opts.quality, self.opts.strip_metadata)
        if job.output == STDIO:
            out = self.stdout or sys.stdout.buffer
            out.write(data)
            out.flush()
        else:
            with atomic_output(job.output) as fh:
                fh.write(data)
        return notes


class _ReadAhead:
    """Reads on the pool, up to ``depth`` files ahead of the network; yields (job, read, start time)."""

    def __init__(self, pool: ThreadPoolExecutor, read: Callable[[Job], ImageData], jobs: list[Job],
                 depth: int) -> None:
        self._pool, self._read, self._depth = pool, read, depth
        self._queue = deque(jobs)
        self._pending: deque[tuple[Job, Future[ImageData], float]] = deque()

    def __iter__(self) -> Iterator[tuple[Job, Future[ImageData], float]]:
        self._fill()
        while self._pending:
            entry = self._pending.popleft()
            self._fill()  # the next read starts before this one is waited for
            yield entry

    def _fill(self) -> None:
        while self._queue and len(self._pending) < self._depth:
            job = self._queue.popleft()
            self._pending.append((job, self._pool.submit(self._read, job), time.perf_counter()))

    def cancel(self) -> None:
        """Drop the reads not started yet (running ones end on their own)."""
        for _, fut, _ in self._pending:
            fut.cancel()


class _Writes:
    """Writes queued on the pool; a file is finished, and logged, when its write is."""

    def __init__(self, pool: ThreadPoolExecutor, write: Callable[[Job, ImageData], list[str]],
                 log: ResultLog) -> None:
        self._pool, self._write, self._log = pool, write, log
        self._pending: list[tuple[Future[list[str]], FileResult, float]] = []

    def submit(self, job: Job, img: ImageData, res: FileResult, started: float,
               transmission: np.ndarray | None = None) -> None:
        self._pending.append((self._pool.submit(self._write, job, img, transmission), res, started))

    def collect(self, block: bool) -> None:
        """Log the finished writes in the order they were queued; ``block``: wait for all."""
        for entry in list(self._pending):
            fut, res, started = entry
            if not block and not fut.done():
                continue
            try:
                res.warnings += fut.result()
                res.status = "ok"
            except Exception as exc:  # noqa: BLE001 - per-file isolation
                res.status, res.error = "failed", f"cannot write {res.output}: {exc}"
                res.also_written = [p for p in res.also_written if Path(p).is_file()]
            res.seconds = time.perf_counter() - started
            # dropped before it is logged: a Ctrl-C in the progress callback must not log it twice
            self._pending.remove(entry)
            self._log.finish(res)


# --------------------------------------------------------------------------------------------
# the network pass
# --------------------------------------------------------------------------------------------

class _Batch:
    """Read -> dehaze -> write for each job, reads and writes on a thread pool around the network."""

    def __init__(self, dehazer: DehazerLike, files: _ImageFiles, log: ResultLog, on_begin: BeginFn | None,
                 on_frames: FramesFn | None = None) -> None:
        self._dehazer, self._files, self._log, self._on_begin = dehazer, files, log, on_begin
        self._on_frames = on_frames

    def run(self, jobs: list[Job], workers: int) -> None:
        """Photos first (reads and writes overlapped with the network), then each video as its own
        pipeline. On Ctrl-C, photo writes already queued are finished (and logged) before the
        interrupt goes on: their network pass is done and each write is atomic; a video being
        written is discarded."""
        self._photos([j for j in jobs if not j.video], workers)
        for job in jobs:
            if job.video:
                self._video(job)

    def _photos(self, jobs: list[Job], workers: int) -> None:
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="odcr-io") as pool:
            reads = _ReadAhead(pool, self._files.read, jobs, depth=workers + 1)
            writes = _Writes(pool, self._files.write, self._log)
            try:
                for job, image, started in reads:
                    self._one(job, image, started, writes)
                    writes.collect(block=False)
                writes.collect(block=True)
            except KeyboardInterrupt:
                reads.cancel()
                writes.collect(block=True)
                raise

    def _one(self, job: Job, image: Future[ImageData], started: float, writes: _Writes) -> None:
        """One file; any error is this file's alone."""
        res = FileResult(job.item.source, job.output, "failed")
        try:
            img, transmission = self._dehaze(image.result(), res)
            if transmission is not None and job.output != STDIO:
                res.also_written = transmission_paths(job.output)
            writes.submit(job, img, res, started, transmission)
        except ImageReadError as exc:  # the report names the file already: the reason alone
            self._failed(res, exc.reason, started)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the batch
            self._failed(res, f"{type(exc).__name__}: {exc}".splitlines()[0], started)

    def _dehaze(self, img: ImageData, res: FileResult) -> tuple[ImageData, np.ndarray | None]:
        """The network step; ``res`` gets the size, the network time and how it was processed.
        Returns the image and the transmission (when the dehazer keeps it)."""
        res.width, res.height = img.size
        if self._on_begin is not None:
            self._on_begin(res)
        t0 = time.perf_counter()
        tables = {"quantization": img.quantization} if img.quantization else {}  # JPEGs only
        pixels, record = self._dehazer.dehaze_with_record(img.pixels, **tables)
        res.net_seconds = time.perf_counter() - t0
        res.mode = record.mode
        res.warnings += record.notes
        res.details = {"network_size": list(record.net_size) if record.net_size else None,
                       "stage_seconds": {k: round(v, 4) for k, v in record.seconds.items()}}
        return img.with_pixels(pixels), record.transmission

    def _video(self, job: Job) -> None:
        """One video; any error is this file's alone (nothing is left at its output's name)."""
        from odcr_cli.tasks.dehaze.videos import EncodeOptions, dehaze_video  # PyAV only when a video is met

        started = time.perf_counter()
        res = FileResult(job.item.source, job.output, "failed")
        opts = self._files.opts
        if self._on_begin is not None:
            self._on_begin(res)
        done = [0]

        def frames(n: int, total: int | None) -> None:
            done[0] = n
            if self._on_frames is not None:
                self._on_frames(res, n, total)

        try:
            video = dehaze_video(job.item.source, job.output, self._dehazer,
                                 EncodeOptions(opts.codec, opts.crf, opts.preset), frames)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the report lists the clip, then the interrupt goes on
            res.status, res.error = "interrupted", f"interrupted after {done[0]} frame(s); nothing written"
            res.seconds = time.perf_counter() - started
            self._log.finish(res)
            raise
        except ImageReadError as exc:
            return self._failed(res, exc.reason, started)
        except OdcrError as exc:
            return self._failed(res, str(exc), started)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the batch
            return self._failed(res, f"{type(exc).__name__}: {exc}".splitlines()[0], started)
        res.status, res.mode, res.warnings = "ok", "video", video.notes
        res.width, res.height, res.frames, res.fps, res.codec = video.width, video.height, video.frames, video.fps, video.codec
        res.seconds = res.net_seconds = time.perf_counter() - started
        res.details = {"network_runs": video.network_runs, "scene_cuts": video.cuts,
                       "speed_fps": round(video.frames / max(res.seconds, 1e-9), 2)}
        self._log.finish(res)

    def _failed(self, res: FileResult, error: str, started: float) -> None:
        res.error = error
        res.seconds = time.perf_counter() - started
        self._log.finish(res)


# --------------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------------

def _load_dehazer(opts: DehazeOptions) -> DehazerLike:
    from odcr_cli.engine.dehazer import Dehazer  # the engine only when a model is needed (not --dry-run)

    return Dehazer(opts.engine)


def run_dehaze(opts: DehazeOptions, dehazer: DehazerLike | None = None, progress: ProgressFn | None = None,
               on_start: StartFn | None = None, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
               on_begin: BeginFn | None = None, on_frames: FramesFn | None = None) -> BatchReport:
    """Process every input; returns the report (``report.exit_code`` is 0 or 1).

    ``on_start(engine, total, to_process)`` once the model is loaded; ``progress(result, done,
    total)`` once per file, in the order they finish, with ``done`` counting every finished file
    (missing and skipped ones first, before any network pass); ``on_begin(result)``
    before a file's network pass (a photo's size known); ``on_frames(result, done, total)`` as a
    video's frames are written. Raises :class:`UsageError` for problems found
    before any work starts and :class:`Interrupted` on Ctrl-C; model loading errors
    (``WeightsError``, ``InferenceError``) propagate to the caller too."""
    started = time.perf_counter()
    shard = parse_shard(opts.shard)
    if opts.codec is not None or opts.crf is not None:
        from odcr_cli.files.video import check_encode_options

        check_encode_options(opts.codec, opts.crf)
    plan = plan_run(opts, shard)
    suffixes = {Path(j.output).suffix for j in plan.todo if j.video}
    if suffixes:  # a codec the container cannot hold is refused before any work, as other usage errors
        from odcr_cli.files.video import check_container

        for suffix in sorted(suffixes):
            check_container(opts.codec, suffix)
    log = ResultLog(plan, opts, started, progress)
    if opts.dry_run:  # the plan, as a real run would carry it out: no model, nothing written
        _record_unprocessed(plan, log, dry_run=True)
        e = opts.engine
        return log.report({"method": e.method, "model": e.model, "weights": e.weights, "strength": e.strength})
    engine: dict[str, Any] = {"method": opts.engine.method, "strength": opts.engine.strength}  # if Ctrl-C comes first
    try:
        if dehazer is None:
            dehazer = _load_dehazer(opts)
        engine = dehazer.describe()
        if on_start is not None:
            on_start(engine, plan.total, len(plan.todo))
        # temporary files left by an earlier run killed while writing these outputs
        remove_stale_temps(o for j in plan.todo for o in job_outputs(j, opts) if o != STDIO)
        _record_unprocessed(plan, log, dry_run=False)  # first, so that the counter runs in order
        _Batch(dehazer, _ImageFiles(opts, stdin, stdout), log, on_begin, on_frames).run(plan.todo, max(1, opts.workers))
    except KeyboardInterrupt:
        raise Interrupted(log.report(engine, interrupted=True)) from None
    return log.report(engine)


def _write_transmission(output: str, t: np.ndarray) -> None:
    """t (0..1 -> 0..65535) and the relative depth -ln t (0 at t = 1, 65535 at the floor of t,
    ``T_MIN``) as 16-bit grey PNGs beside ``output``, each atomically."""
    import cv2
    import numpy as np

    depth = -np.log(np.clip(t, T_MIN, 1.0)) / -np.log(T_MIN)
    for path, values in zip(transmission_paths(output), (t, depth)):
        ok, data = cv2.imencode(".png", np.clip(np.rint(values * 65535.0), 0, 65535).astype(np.uint16))
        with atomic_output(path) as fh:
            fh.write(data.tobytes())


def write_report(report: BatchReport, target: str, stdout: BinaryIO | None = None) -> None:
    """The report as JSON, to a file (atomically) or to stdout for "-"."""
    text = report.to_json() + "\n"
    if target == STDIO:
        (stdout or sys.stdout.buffer).write(text.encode())
        (stdout or sys.stdout.buffer).flush()
    else:
        with atomic_output(target, "w") as fh:
            fh.write(text)


__all__ = ("BatchReport", "DehazerLike", "FileResult", "Interrupted", "ResultLog", "run_dehaze", "write_report")
