"""Reading and writing video files with PyAV (FFmpeg bundled in its wheel: no system FFmpeg).

* Reading: the first video stream, decoded to RGB frames (uint8, or uint16 when the stream holds
  more than 8 bits per sample), each with its own timestamp (variable frame rate kept) and the
  stream's rotation (the display matrix). A file that cannot be opened or decoded raises
  :class:`VideoReadError` with a one-line reason.
* Writing: frames with their timestamps, encoded with a codec in the conventions of ffmpeg users
  (``libx264`` by default, ``crf``, ``preset``), rotation set as the source's, colour tags copied;
  the source's audio stream copied packet for packet (no re-encode) where common players take its
  codec from the output's container, else transcoded to AAC (Opus into WebM), interleaved by time.
  4:2:0 needs even sides: an odd-sized frame gets its last row or column repeated (noted).
  A 10-bit source stays 10-bit with codecs that players decode at 10 bits (HEVC, VP9, AV1);
  H.264 writes 8 bits, what every phone and browser plays (noted).

No engine here: the caller turns frames into frames (:mod:`odcr_cli.tasks.dehaze.videos`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from odcr_cli.errors import ImageReadError, UsageError
# --codec: the names users type (ffmpeg's encoder names, or the format's name) -> the encoder
CODECS = {"h264": "libx264", "libx264": "libx264", "hevc": "libx265", "h265": "libx265", "libx265": "libx265",
          "vp9": "libvpx-vp9", "libvpx-vp9": "libvpx-vp9", "av1": "libsvtav1", "libsvtav1": "libsvtav1"}
# quality close to visually lossless for each encoder (its own crf scale), and its preset option
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}
DEFAULT_PRESET = {"libx264": "veryfast", "libx265": "veryfast", "libsvtav1": "10"}
_KEEPS_10_BIT = {"libx265", "libvpx-vp9", "libsvtav1"}
_WEBM_DEFAULT = "libvpx-vp9"  # H.264 cannot go in WebM


class VideoReadError(ImageReadError):
    """A file that cannot be read as a video: ``"name: reason"`` (``reason`` alone for reports)."""


def encoder_for(codec: str | None, suffix: str) -> str:
    """The encoder of ``--codec`` (None: H.264, or VP9 for .webm); a one-line UsageError else."""
    if codec is None:
        return _WEBM_DEFAULT if suffix.lower() == ".webm" else CODECS["h264"]
    try:
        return CODECS[codec.lower()]
    except KeyError:
        raise UsageError(f"--codec {codec}: use h264, hevc, vp9 or av1 (or libx264, libx265, libvpx-vp9, "
                         "libsvtav1)") from None


def check_encode_options(codec: str | None, crf: int | None) -> None:
    """Refuse an unknown --codec or a --crf outside its encoder's scale (one line, before any work)."""
    encoder = encoder_for(codec, "")
    top = 51 if encoder in ("libx264", "libx265") else 63
    if crf is not None and not 0 <= crf <= top:
        raise UsageError(f"--crf {crf}: {encoder} takes 0 (lossless) to {top}; default {DEFAULT_CRF[encoder]}")


# the container FFmpeg writes for each output suffix (what av.open(path, "w") would pick)
_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".m4v": "ipod", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}


def check_container(codec: str | None, suffix: str) -> None:
    """Refuse, before any work, an encoder that the container of ``suffix`` cannot hold
    (``--codec h264`` into .webm, HEVC into .m4v); a one-line UsageError."""
    import io

    encoder = encoder_for(codec, suffix)
    with _av().open(io.BytesIO(), "w", format=_CONTAINERS.get(suffix.lower(), "mp4")) as probe:
        _refuse_unless_held(encoder, probe, suffix)


def _refuse_unless_held(encoder: str, container, suffix: str) -> None:
    if encoder not in container.supported_codecs:
        raise UsageError(f"{encoder} cannot be written into {suffix} files; choose another --codec or output suffix")


# audio that common players play from each container (the rest is transcoded): MP4 players take
# AAC, MP3, AC-3 and ALAC but rarely MP2 or PCM; WebM holds Opus and Vorbis only; Matroska and
# AVI players take what the container holds
_PLAYABLE_AUDIO = {".mp4": {"aac", "mp3", "ac3", "eac3", "alac"}, ".m4v": {"aac", "ac3", "alac"},
                   ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le"},
                   ".webm": {"opus", "vorbis"}}


def plays_in(codec: str, suffix: str) -> bool:
    """Whether common players play audio in ``codec`` from a ``suffix`` file (copied as it is)."""
    playable = _PLAYABLE_AUDIO.get(suffix.lower())
    return playable is None or codec in playable


def _av():
    import av  # PyAV: imported when a video is met, so photo runs never load FFmpeg

    return av


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float                 # average frame rate (timestamps are kept per frame)
    frames: int | None         # as the container says (None: unknown)
    codec: str
    pix_fmt: str
    bits: int                  # per sample: 8, or 10/12/16 (decoded as uint16)
    rotation: int              # degrees counter-clockwise, from the display matrix
    audio: str | None          # the first audio stream's codec, copied as it is
    time_base: Fraction | None = None  # of the video stream's timestamps
    colour: tuple[int, int, int, int] = (2, 0, 2, 2)  # FFmpeg's colorspace, range, primaries, trc (2, 0: unspecified)


@dataclass(frozen=True)
class Frame:
    pixels: np.ndarray         # HxWx3 uint8 or uint16 RGB, as stored (rotation not applied)
    pts: int | None
    time_base: Fraction | None


def _bits(fmt) -> int:
    try:
        return max(c.bits for c in fmt.components)
    except (AttributeError, ValueError):
        return 8


class VideoReader:
    """The first video stream of ``path``, frame by frame (a context manager)."""

    def __init__(self, path: str | Path) -> None:
        av = _av()
        self.path = str(path)
        try:
            self._container = av.open(self.path)
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoReadError(self.path, f"not a video file FFmpeg can open ({_reason(exc)})") from None
        try:
            self._stream = self._container.streams.video[0]
        except IndexError:
            self._container.close()
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            raise VideoReadError(self.path, f"no video stream (holds {', '.join(kinds)})") from None
        self._stream.thread_type = "AUTO"  # frame threads: decoding keeps pace with the rest
        self._first: Frame | None = None
        self._rotation = 0
        self._colour = (2, 0, 2, 2)
        try:
            self.info = self._probe()
        except BaseException:
            self._container.close()
            raise

    def _probe(self) -> VideoInfo:
        s, c = self._stream, self._container
        cc = s.codec_context
        if cc.width <= 0 or cc.height <= 0 or cc.format is None:
            raise VideoReadError(self.path, f"video stream of unknown size or codec ({cc.name})")
        rate = s.average_rate or s.guessed_rate or s.base_rate
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
        # the rotation lives in the frames' side data: decode the first frame now (kept for frames())
        frames = self._decode()
        self._first = next(frames, None)
        self._frames = frames
        if self._first is None:
            raise VideoReadError(self.path, "no frame could be decoded")
        return VideoInfo(cc.width, cc.height, float(rate) if rate else 25.0, s.frames or None, cc.name,
                         cc.format.name, _bits(cc.format), self._rotation, audio,
                         Fraction(s.time_base) if s.time_base else None, self._colour)

    def _decode(self) -> Iterator[Frame]:
        av = _av()
        rgb = None
        n = 0
        try:
            for frame in self._container.decode(self._stream):
                if rgb is None:
                    self._rotation = int(round(frame.rotation or 0)) % 360
                    self._colour = (int(frame.colorspace), int(frame.color_range), int(frame.color_primaries),
                                    int(frame.color_trc))
                    rgb = "rgb48le" if _bits(frame.format) > 8 else "rgb24"
                n += 1
                yield Frame(frame.to_ndarray(format=rgb), frame.pts, frame.time_base)
        except av.FFmpegError as exc:
            raise VideoReadError(self.path, f"damaged after frame {n} ({_reason(exc)})") from None

    def frames(self) -> Iterator[Frame]:
        """Every frame in decoding order (presentation order for the codecs FFmpeg reorders)."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._frames

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class VideoWriter:
    """Frames in, one video file out; the audio of ``audio_from`` copied (a context manager that
    leaves the file incomplete when the block fails: write it to a temporary name)."""

    def __init__(self, path: str | Path, info: VideoInfo, audio_from: str | None, codec: str | None = None,
                 crf: int | None = None, preset: str | None = None, threads: int | None = None) -> None:
        av = _av()
        self.path = str(path)
        self.notes: list[str] = []
        self.encoder = encoder_for(codec, Path(self.path).suffix)
        self._container = av.open(self.path, "w")
        try:
            self._video = self._add_video(info, crf, preset)
            if threads:
                self._video.codec_context.thread_count = int(threads)
            self._audio_in, self._audio_out, self._audio_packets = None, None, iter(())
            if audio_from is not None and info.audio is not None:
                self._add_audio(audio_from)
        except Exception:
            self._container.close()
            raise
        self._pending_audio = None
        self._last_pts: int | None = None

    def _add_video(self, info: VideoInfo, crf: int | None, preset: str | None):
        _refuse_unless_held(self.encoder, self._container, Path(self.path).suffix)  # dehaze_video's own callers
        rate = Fraction(info.fps).limit_denominator(1001)
        stream = self._container.add_stream(self.encoder, rate=rate)
        self._width, self._height = info.width + info.width % 2, info.height + info.height % 2
        if (self._width, self._height) != (info.width, info.height):
            self.notes.append(f"odd size {info.width}x{info.height} written as {self._width}x{self._height} "
                              "(4:2:0 needs even sides; the last row/column repeated)")
        stream.width, stream.height = self._width, self._height
        ten_bit = info.bits > 8 and self.encoder in _KEEPS_10_BIT
        if info.bits > 8 and not ten_bit:
            self.notes.append(f"{info.bits}-bit source written as 8-bit {self.encoder} (what players decode); "
                              "--codec hevc keeps 10 bits")
        stream.pix_fmt = "yuv420p10le" if ten_bit else "yuv420p"
        # the source's own clock: every timestamp (variable frame rate too) is kept exactly
        stream.codec_context.time_base = info.time_base or (1 / rate if rate else Fraction(1, 25))
        options = {"crf": str(DEFAULT_CRF[self.encoder] if crf is None else crf)}
        if self.encoder == "libvpx-vp9":
            options.update({"b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4" if preset is None else preset})
        elif preset is not None or self.encoder in DEFAULT_PRESET:
            options["preset"] = preset if preset is not None else DEFAULT_PRESET[self.encoder]
        if self.encoder == "libx265":  # x265 and SVT-AV1 print a page of settings to stderr per file
            options["x265-params"] = "log-level=error"
        elif self.encoder == "libsvtav1":
            import os

            os.environ.setdefault("SVT_LOG", "1")  # errors only, unless the user set a level
        stream.options = options
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        self._pix_fmt = stream.pix_fmt
        # the source's colour matrix both ways (decoding used it too), and its tags on the output
        cc = stream.codec_context
        cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = info.colour
        self._matrix = {"dst_colorspace": info.colour[0]} if info.colour[0] != 2 else {}
        if info.colour[1]:
            self._matrix["dst_color_range"] = info.colour[1]
        return stream

    def _add_audio(self, source: str) -> None:
        """The source's audio copied packet for packet where the output's container and common
        players take its codec; otherwise transcoded (AAC, Opus for WebM), and the notes say which."""
        av = _av()
        self._audio_in = av.open(source)
        template = self._audio_in.streams.audio[0]
        name, suffix = template.codec_context.name, Path(self.path).suffix.lower()
        if name in self._container.supported_codecs and plays_in(name, suffix):
            self._audio_out = self._container.add_stream_from_template(template)
            self._audio_packets = (p for p in self._audio_in.demux(template) if p.dts is not None)
            self.notes.append(f"audio ({name}) copied")
            return
        encoder = "libopus" if suffix == ".webm" else "aac"
        rate = 48000 if encoder == "libopus" else (template.codec_context.sample_rate or 48000)
        self._audio_out = self._container.add_stream(encoder, rate=rate)
        self._audio_out.codec_context.layout = template.codec_context.layout.name
        self._audio_packets = self._transcoded(template)
        self.notes.append(f"audio ({name}) transcoded to {'Opus' if encoder == 'libopus' else 'AAC'}: "
                          f"common players do not play {name} in {suffix}")

    def _transcoded(self, template) -> Iterator:
        """The source's audio decoded, converted to the encoder's sample format, layout and rate,
        and encoded, in time order; timestamps count samples from where the source's audio starts."""
        cc = self._audio_out.codec_context
        resampler = _av().AudioResampler(format=cc.format.name, layout=cc.layout.name, rate=cc.sample_rate)
        clock = Fraction(1, cc.sample_rate)
        samples = None

        def stamped(frames: list) -> Iterator:
            nonlocal samples
            for f in frames:
                f.pts, f.time_base = samples, clock
                samples += f.samples
                yield from self._audio_out.encode(f)

        for packet in self._audio_in.demux(template):
            for frame in packet.decode():
                if samples is None:
                    samples = round(frame.pts * frame.time_base * cc.sample_rate) if frame.pts is not None else 0
                yield from stamped(resampler.resample(frame))
        if samples is not None:
            yield from stamped(resampler.resample(None))
        yield from self._audio_out.encode(None)

    def write(self, pixels: np.ndarray, pts: int | None, time_base: Fraction | None) -> None:
        """One HxWx3 RGB frame (uint8 or uint16) at ``pts`` in ``time_base`` (None: the next
        frame at the average rate)."""
        av = _av()
        h, w = pixels.shape[:2]
        if (w, h) != (self._width, self._height):
            pixels = np.pad(pixels, ((0, self._height - h), (0, self._width - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels),
                                           format="rgb48le" if pixels.dtype == np.uint16 else "rgb24")
        frame = frame.reformat(format=self._pix_fmt, **self._matrix)
        tb = self._video.codec_context.time_base
        if pts is None or time_base is None:
            pts, time_base = (0 if self._last_pts is None else self._last_pts + 1), tb
        pts = int(round(Fraction(pts) * Fraction(time_base) / tb))
        if self._last_pts is not None and pts <= self._last_pts:  # a repeated timestamp: keep the order
            pts = self._last_pts + 1
        self._last_pts = pts
        frame.pts, frame.time_base = pts, tb
        self._copy_audio_until(float(pts * tb))
        for packet in self._video.encode(frame):
            self._container.mux(packet)

    def _copy_audio_until(self, seconds: float | None) -> None:
        """Mux the source's audio packets that start before ``seconds`` (None: all that is left)."""
        if self._audio_out is None:
            return
        while True:
            packet = self._pending_audio if self._pending_audio is not None else next(self._audio_packets, None)
            if packet is None:
                return
            if seconds is not None and float(packet.dts * packet.time_base) > seconds:
                self._pending_audio = packet
                return
            self._pending_audio = None
            packet.stream = self._audio_out
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and the rest of the audio; the file is complete after this."""
        for packet in self._video.encode():
            self._container.mux(packet)
        self._copy_audio_until(None)
        self._release()

    def _release(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
        self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._release()
