"""Dehazing one video file: decode, estimate, render and encode as a pipeline on threads, so the
slowest stage sets the pace (docs/video.md).

    decode (thread) -> estimate (this thread: the stream's state, the network every few frames)
      -> render (2 threads: full-resolution readout) -> encode + audio copy (thread)

Queues between the stages are short, so memory does not grow with the clip's length. The output
is written under a temporary name and renamed when complete: Ctrl-C, SIGTERM or a failure leaves
nothing at the output's name, and a kill -9 leaves a temporary file the next run removes.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from odcr_cli.haze.pipeline import to_float_rgb
from odcr_cli.engine.stream import DehazeStream, StreamConfig
from odcr_cli.files.fsutil import atomic_path
from odcr_cli.files.video import Frame, VideoReadError, VideoReader, VideoWriter

FrameFn = Callable[[int, "int | None"], None]  # (frames done, frames in the clip or None)
_END = object()
_QUEUE = 4          # frames waiting between two stages
_RENDERERS = 2      # frames rendered at once


@dataclass
class VideoResult:
    frames: int
    fps: float                 # the clip's frame rate (kept)
    codec: str                 # the encoder written with
    width: int
    height: int
    notes: list[str] = field(default_factory=list)
    network_runs: int = 0
    cuts: int = 0


@dataclass(frozen=True)
class EncodeOptions:
    codec: str | None = None   # --codec (None: H.264, VP9 for .webm)
    crf: int | None = None
    preset: str | None = None


def dehaze_video(source: str, output: str, dehazer: Any, encode: EncodeOptions = EncodeOptions(),
                 on_frame: FrameFn | None = None, smoothing: StreamConfig = StreamConfig()) -> VideoResult:
    """Dehaze the video at ``source`` into ``output`` (its suffix picks the container); raises
    :class:`~odcr_cli.files.video.VideoReadError` for a file that cannot be decoded. ``smoothing``:
    how the stream smooths over time (the defaults; benchmarks try others)."""
    threads = getattr(dehazer, "threads", None)  # --threads: the encoder's and the renderers' too
    with VideoReader(source) as reader:
        info = reader.info
        stream = DehazeStream(dehazer, info.fps, smoothing)
        with atomic_path(output) as tmp:
            with VideoWriter(tmp, info, source, encode.codec, encode.crf, encode.preset, threads) as writer:
                frames = _Pipeline(reader, stream, writer, on_frame, min(_RENDERERS, threads or _RENDERERS)).run()
                _refuse_a_partial_decode(source, frames, info.frames)  # before the file gets its name
        result = VideoResult(frames, info.fps, writer.encoder, info.width, info.height, list(writer.notes),
                             stream.network_runs, stream.cuts)
    if getattr(getattr(dehazer, "options", None), "keep_exposure", False) and stream.smoothed:
        result.notes.append("--keep-exposure applies to photos: a curve per frame would flicker")
    return result


def _refuse_a_partial_decode(source: str, frames: int, announced: int | None) -> None:
    """A clip that decodes only in part (a file cut short: the decoder stops without an error) is
    a failure, as a truncated photo is; containers often announce a few frames they do not hold,
    so up to 5% (at least 2) may be missing."""
    if announced and announced - frames > max(2, 0.05 * announced):
        raise VideoReadError(source, f"decoded only {frames} of the {announced} frames the container announces "
                                     "(the file is cut short or damaged); nothing written")


class _Pipeline:
    """The stages of one video, and their shutdown when one fails or the user interrupts."""

    def __init__(self, reader: VideoReader, stream: DehazeStream, writer: VideoWriter, on_frame: FrameFn | None,
                 renderers: int = _RENDERERS) -> None:
        self.reader, self.stream, self.writer, self.on_frame = reader, stream, writer, on_frame
        self.renderers = renderers
        self.total = reader.info.frames
        self.stop = threading.Event()
        self.decoded: queue.Queue = queue.Queue(_QUEUE)
        self.encoded: queue.Queue = queue.Queue(_QUEUE)
        self.errors: list[BaseException] = []

    def run(self) -> int:
        decoder = threading.Thread(target=self._decode, name="odcr-decode", daemon=True)
        encoder = threading.Thread(target=self._encode, name="odcr-encode", daemon=True)
        decoder.start()
        encoder.start()
        done = 0
        try:
            with ThreadPoolExecutor(self.renderers, thread_name_prefix="odcr-render") as pool:
                pending: deque[tuple[Future[np.ndarray], Frame]] = deque()
                while (frame := self._take(self.decoded)) is not _END:
                    pending.append((pool.submit(self._render_job(frame)), frame))
                    if len(pending) > self.renderers:
                        done = self._hand_on(pending.popleft(), done)
                while pending:
                    done = self._hand_on(pending.popleft(), done)
            self._put(self.encoded, _END)
            encoder.join()
            self._raise_first()
        except BaseException:
            self.stop.set()
            _drain(self.decoded)
            _drain(self.encoded)
            decoder.join()
            encoder.join()
            raise
        decoder.join()
        return done

    def _render_job(self, frame: Frame) -> Callable[[], np.ndarray]:
        """Estimate now (in order: the stream keeps state); render later, on a pool thread."""
        if not self.stream.smoothed or self.stream.dehazer.strength == 0.0:
            out = self.stream.push(frame.pixels)
            return lambda: out
        rgb, restore = to_float_rgb(frame.pixels)
        estimated = self.stream.estimate(rgb)
        return lambda: restore(self.stream.render(estimated))

    def _hand_on(self, entry: tuple[Future[np.ndarray], Frame], done: int) -> int:
        future, frame = entry
        self._put(self.encoded, (future.result(), frame))
        done += 1
        if self.on_frame is not None:
            self.on_frame(done, self.total)
        return done

    # -- the threads ---------------------------------------------------------------------------
    def _decode(self) -> None:
        try:
            for frame in self.reader.frames():
                if not self._put(self.decoded, frame):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors.append(exc)
        self._put(self.decoded, _END)

    def _encode(self) -> None:
        try:
            while (item := self._take(self.encoded, main=False)) is not _END:
                pixels, frame = item
                self.writer.write(pixels, frame.pts, frame.time_base)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors.append(exc)
            self.stop.set()

    # -- queues that give up when the pipeline stops --------------------------------------------
    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _take(self, q: queue.Queue, main: bool = True) -> object:
        """The next item; in the main thread a failure of another stage is raised here."""
        while True:
            if main:
                self._raise_first()
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return _END

    def _raise_first(self) -> None:
        if self.errors:
            raise self.errors[0]


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return

