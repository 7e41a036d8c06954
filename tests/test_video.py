"""Video: `odcr dehaze clip.mp4 -o out.mp4` keeps what a clip is (timestamps, audio, rotation),
every promise of photos holds for videos, and the stream API smooths haze over time. Clips are
made here, a few frames each, with PyAV."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_photo
from odcr_cli.cli.app import app

av = pytest.importorskip("av")


def make_clip(path: Path, frames: int = 10, size: tuple[int, int] = (64, 96), audio: bool = True,
              rotation: int = 0, pts: list[int] | None = None, time_base: Fraction = Fraction(1, 1000),
              seed: int = 0, faststart: bool = False) -> Path:
    """An H.264 clip of a hazy scene panning right, at the given timestamps (ms), with a sine tone
    (4:4:4 when a side is odd: 4:2:0 cannot hold it); ``faststart``: the index at the head."""
    h, w = size
    scene = make_photo(h, w + 2 * frames, seed=seed)
    out = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    video = out.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = w, h, "yuv444p" if h % 2 or w % 2 else "yuv420p"
    video.codec_context.time_base = time_base
    if rotation:
        video.set_display_rotation(rotation)
    sound = out.add_stream("aac", rate=48000) if audio else None
    stamps = pts if pts is not None else [40 * k for k in range(frames)]
    _encode(out, video, [av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, 2 * k:2 * k + w]), format="rgb24")
                         for k in range(len(stamps))], stamps, time_base)
    if sound is not None:
        t = np.arange(int(48000 * (stamps[-1] + 40) / 1000)) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for start in range(0, tone.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1024]), format="fltp",
                                               layout="mono")
            chunk.sample_rate, chunk.pts = 48000, start
            for packet in sound.encode(chunk):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    out.close()
    return path


def _encode(out, stream, frames: list, pts: list[int] | None = None, time_base: Fraction | None = None) -> None:
    """Encode ``frames`` (at ``pts``, else 0, 1, 2...) into ``stream`` of ``out`` and flush it."""
    for k, frame in enumerate(frames):
        frame.pts = pts[k] if pts is not None else k
        if time_base is not None:
            frame.time_base = time_base
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def _frames(path: Path) -> list:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def dehaze(*args):
    return CliRunner().invoke(app, ["dehaze", *map(str, args)])


def test_a_clip_keeps_its_timestamps_audio_and_rotation(tmp_path):
    """Variable frame rate, the audio packets and the rotation survive; the input is untouched."""
    stamps = [0, 40, 80, 160, 200, 240, 330, 370]  # two gaps: a variable frame rate
    clip = make_clip(tmp_path / "clip.mp4", pts=stamps, rotation=90)
    before = clip.read_bytes()
    r = dehaze(clip, "-o", tmp_path / "out.mp4", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert clip.read_bytes() == before
    got, want = _frames(tmp_path / "out.mp4"), _frames(clip)
    assert len(got) == len(want) == len(stamps)
    assert [round(float(f.time) * 1000) for f in got] == [round(float(f.time) * 1000) for f in want]
    assert (got[0].width, got[0].height, got[0].rotation) == (96, 64, 90)
    assert _audio_packets(tmp_path / "out.mp4") == _audio_packets(clip) != []
    report = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert "audio (aac) copied" in report["warnings"]
    assert (report["frames"], report["fps"], report["codec"]) == (len(stamps), pytest.approx(25.0, rel=0.5), "libx264")
    # dehazed, not copied: the haze (a grey veil) is thinner, so the contrast is larger
    out0 = got[3].to_ndarray(format="rgb24").astype(float)
    in0 = want[3].to_ndarray(format="rgb24").astype(float)
    assert out0.std() > 1.2 * in0.std()


def test_colour_tags_and_colours_survive(tmp_path):
    """A BT.709 clip (most HD video) comes out tagged BT.709, in the colours it went in with."""
    out = av.open(str(tmp_path / "hd.mp4"), "w")
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    cc = stream.codec_context
    cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1  # BT.709
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :32], img[:, 32:] = (200, 40, 40), (40, 180, 90)
    _encode(out, stream, [av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p", dst_colorspace="itu709")
                          for _ in range(3)])
    out.close()
    r = dehaze(tmp_path / "hd.mp4", "-o", tmp_path / "out.mp4", "--strength", "0")
    assert r.exit_code == 0, r.output
    got = _frames(tmp_path / "out.mp4")[1]
    assert (int(got.colorspace), int(got.color_primaries), int(got.color_trc)) == (1, 1, 1)
    rgb = got.to_ndarray(format="rgb24").astype(int)
    assert np.abs(rgb[24, 10] - (200, 40, 40)).max() <= 4 and np.abs(rgb[24, 50] - (40, 180, 90)).max() <= 4


def test_rerun_skip_existing_dry_run_and_beside_the_input(tmp_path):
    make_clip(tmp_path / "a.mov", audio=False)
    Image.fromarray(make_photo(32, 40)).save(tmp_path / "p.png")
    first = dehaze(tmp_path, "--method", "dcp")
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mov", "a_dehazed.mov", "p.png", "p_dehazed.png"]
    assert dehaze(tmp_path, "--method", "dcp").exit_code == 2  # outputs exist: refused, nothing touched
    again = dehaze(tmp_path, "--method", "dcp", "--skip-existing")
    assert again.exit_code == 0 and "0 ok, 0 failed, 2 skipped" in again.output, again.output
    plan = dehaze(tmp_path, "--method", "dcp", "--overwrite", "--dry-run")
    assert plan.exit_code == 0 and f"{tmp_path / 'a.mov'} -> {tmp_path / 'a_dehazed.mov'}" in plan.output


def test_odd_sizes_no_audio_and_codecs(tmp_path):
    clip = make_clip(tmp_path / "odd.mp4", size=(63, 95), audio=False)
    r = dehaze(clip, "-o", tmp_path / "odd.mkv", "--method", "dcp", "--codec", "hevc", "--crf", "30", "--json",
               tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert (_frames(clip)[0].width, _frames(clip)[0].height) == (95, 63)
    frames = _frames(tmp_path / "odd.mkv")
    assert len(frames) == 10 and (frames[0].width, frames[0].height) == (96, 64)
    report = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert report["codec"] == "libx265"
    assert any("odd size 95x63" in w for w in report["warnings"]), report["warnings"]


def test_a_10_bit_source_stays_10_bit_with_hevc_and_is_noted_with_h264(tmp_path):
    out = av.open(str(tmp_path / "ten.mkv"), "w")
    stream = out.add_stream("libx265", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p10le"
    stream.options = {"x265-params": "log-level=error"}
    pixels = (make_photo(48, 64).astype(np.uint16) * 257)
    _encode(out, stream, [av.VideoFrame.from_ndarray(pixels, format="rgb48le") for _ in range(4)])
    out.close()
    assert dehaze(tmp_path / "ten.mkv", "-o", tmp_path / "h.mkv", "--codec", "hevc", "--method", "dcp").exit_code == 0
    r = dehaze(tmp_path / "ten.mkv", "-o", tmp_path / "a.mp4", "--method", "dcp", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert _frames(tmp_path / "h.mkv")[0].format.name == "yuv420p10le"
    assert _frames(tmp_path / "a.mp4")[0].format.name == "yuv420p"
    assert "10-bit source written as 8-bit" in json.loads((tmp_path / "r.json").read_text())["files"][0]["warnings"][0]


@pytest.mark.parametrize("args, says", [
    (["--codec", "divx"], "--codec divx"),
    (["--crf", "70"], "--crf 70"),
    (["-o", "{tmp}/still.jpg"], "cannot hold a video"),
    (["-o", "-"], "photos only"),
    (["-o", "{tmp}/out.webm", "--codec", "h264"], "libx264 cannot be written into .webm"),
    (["-o", "{tmp}/out.m4v", "--codec", "hevc"], "libx265 cannot be written into .m4v"),
])
def test_video_usage_errors_are_one_line_exit_2(tmp_path, args, says):
    clip = make_clip(tmp_path / "c.mp4", frames=3, audio=False)
    r = dehaze(clip, "--method", "dcp", *[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2 and says in r.output, r.output
    assert "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def test_bad_videos_fail_one_line_each_and_never_stop_the_batch(tmp_path):
    good = make_clip(tmp_path / "good.mp4", frames=6)
    data = good.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "notes.mkv").write_text("not a video at all\n")
    audio_only = av.open(str(tmp_path / "voice.m4v"), "w", format="mp4")
    stream = audio_only.add_stream("aac", rate=48000)
    chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    chunk.sample_rate, chunk.pts = 48000, 0
    for packet in list(stream.encode(chunk)) + list(stream.encode()):
        audio_only.mux(packet)
    audio_only.close()
    r = dehaze(tmp_path, "-o", tmp_path / "out", "--method", "dcp", "--json", tmp_path / "r.json")
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    files = {Path(f["input"]).name: f for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert files["good.mp4"]["status"] == "ok"
    for name in ("truncated.mp4", "notes.mkv", "voice.m4v"):
        assert files[name]["status"] == "failed" and "\n" not in files[name]["error"], files[name]
    assert "no video stream" in files["voice.m4v"]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4"]


def _avi_with_mp2(path: Path, frames: int = 12) -> Path:
    """An AVI clip as old cameras write it: MPEG-4 Part 2 video, MP2 audio (a 440 Hz tone)."""
    out = av.open(str(path), "w")
    video = out.add_stream("mpeg4", rate=25)
    video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
    sound = out.add_stream("mp2", rate=48000)
    sound.codec_context.layout = "stereo"
    scene = make_photo(64, 96 + 2 * frames)
    _encode(out, video, [av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, 2 * k:2 * k + 96]), format="rgb24")
                         for k in range(frames)])
    tone = np.repeat((0.2 * np.sin(2 * np.pi * 440 * np.arange(48000 * frames // 25) / 48000)).astype(np.float32)[None], 2, 0)
    for start in range(0, tone.shape[1], 1152):
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start:start + 1152]), format="fltp", layout="stereo")
        chunk.sample_rate, chunk.pts = 48000, start
        for packet in sound.encode(chunk):
            out.mux(packet)
    for packet in sound.encode():
        out.mux(packet)
    out.close()
    return path


def test_audio_players_cannot_take_is_transcoded_and_the_log_says_which(tmp_path):
    clip = _avi_with_mp2(tmp_path / "old.avi")
    r = dehaze(clip, "-o", tmp_path / "out.mp4", "--method", "dcp", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "out.mp4")) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.codec_context.channels == 2
        samples = sum(f.samples for f in c.decode(audio))
    assert abs(samples - 48000 * 12 / 25) < 3 * 1152   # the whole tone, give or take a frame or two
    [f] = json.loads((tmp_path / "r.json").read_text())["files"]
    assert "audio (mp2) transcoded to AAC" in " ".join(f["warnings"]) and "transcoded to AAC" in r.output
    r = dehaze(clip, "-o", tmp_path / "out.mkv", "--method", "dcp")   # Matroska players take MP2: copied
    assert r.exit_code == 0 and "audio (mp2) copied" in r.output
    assert _audio_packets(tmp_path / "out.mkv") == _audio_packets(clip)


def test_a_clip_cut_short_is_a_failure_not_a_shorter_output(tmp_path):
    # the index at the head announces every frame; the file ends half-way: the decoder stops
    # without an error, as with a download cut short
    data = make_clip(tmp_path / "whole.mp4", frames=60, audio=False, faststart=True).read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.mp4").write_bytes(data[: len(data) * 8 // 10])   # about half the frames
    r = dehaze(tmp_path / "in", "-o", tmp_path / "out", "--method", "dcp", "--json", tmp_path / "r.json")
    assert r.exit_code == 1, r.output
    [f] = json.loads((tmp_path / "r.json").read_text())["files"]
    assert f["status"] == "failed" and "of the 60 frames the container announces" in f["error"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ctrl_c_or_sigterm_mid_video_leaves_nothing_at_the_output(tmp_path, monkeypatch):
    from odcr_cli.files.video import VideoWriter

    clip = make_clip(tmp_path / "c.mp4", frames=12)
    write = VideoWriter.write
    calls = []

    def write_then_sigterm(self, *args):
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)  # the handler runs in the main thread, which stops the pipeline
        return write(self, *args)

    monkeypatch.setattr(VideoWriter, "write", write_then_sigterm)
    r = dehaze(clip, "-o", tmp_path / "out.mp4", "--method", "dcp", "--json", tmp_path / "r.json")
    assert r.exit_code == 130, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["interrupted"] is True and report["summary"]["interrupted_files"] == 1
    [cut] = report["files"]   # the clip cut short is in the report, with what became of it
    assert cut["input"] == str(clip) and cut["status"] == "interrupted" and "nothing written" in cut["error"]
    assert "1 video cut short (nothing written)" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "r.json"]  # no output, no temp file


@pytest.mark.slow
def test_kill_9_leaves_no_output_and_the_rerun_cleans_up(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=300, size=(240, 320), audio=False)  # long enough to be killed mid-way
    cmd = [sys.executable, "-m", "odcr_cli", "dehaze", str(clip), "-o", str(tmp_path / "out.mp4"), "--method", "dcp"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.odcr-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "out.mp4").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert len(_frames(tmp_path / "out.mp4")) == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "out.mp4"]


# -- the stream API ---------------------------------------------------------------------------------

def _noisy_static_clip(frames: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scene = make_photo(72, 96, seed=seed).astype(np.float32)
    return [np.clip(scene + rng.normal(0, 4, scene.shape), 0, 255).astype(np.uint8) for _ in range(frames)]


@pytest.mark.parametrize("method", ["odcr", "dcp"])
def test_the_stream_flickers_less_than_frame_by_frame_on_a_static_noisy_shot(method):
    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.engine.stream import DehazeStream

    frames = _noisy_static_clip(12)
    dz = Dehazer(method=method)
    stream = DehazeStream(dz, fps=25)
    smoothed = [stream.push(f) for f in frames]
    alone = [dz.dehaze(f) for f in frames]
    assert smoothed[0].dtype == np.uint8 and smoothed[0].shape == frames[0].shape

    def flicker(outs):  # the change of each frame's mean colour from frame to frame
        means = np.array([o.reshape(-1, 3).mean(axis=0) for o in outs])
        return float(np.abs(np.diff(means, axis=0)).mean())

    assert flicker(smoothed[4:]) < flicker(alone[4:])
    # close to the photo result: smoothing does not change what the dehazed frame looks like
    assert np.abs(smoothed[-1].astype(float) - alone[-1]).mean() < 6
    if method == "odcr":
        assert stream.network_runs < len(frames)  # the network does not run on every frame


def test_the_stream_averages_a_static_shots_noise_and_takes_what_moves_at_once():
    """The frame's own average along the motion (docs/video.md, step 6): the codec's and the
    sensor's noise, which differ from frame to frame, are not amplified in full; a thing that
    moves is the current frame's, with no trail of where it was."""
    import cv2

    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.engine.stream import DehazeStream, StreamConfig

    frames = _noisy_static_clip(12)
    moved = frames[-1].copy()
    frames[-2][8:24, 8:24] = 250  # a bright square, gone in the last frame, which has one elsewhere
    moved[40:56, 60:76] = 250
    frames[-1] = moved
    dz = Dehazer()
    outs = {}
    for seconds in (0.0, 0.1):
        stream = DehazeStream(dz, fps=25, config=StreamConfig(settle_seconds=seconds))
        outs[seconds] = np.stack([stream.push(f) for f in frames]).astype(np.float32)
    # the grain: each output's detail finer than 5x5 pixels, its change over time per pixel (t's own
    # slow change from frame to frame is what the flicker test above is about); 0.35 on this machine
    grain = {k: float(np.stack([o - cv2.blur(o, (5, 5)) for o in v[4:10]]).std(axis=0).mean()) for k, v in outs.items()}
    assert grain[0.1] < 0.6 * grain[0.0]
    noise = float(outs[0.0][4:10].std(axis=0).mean())  # the plain stream's change over time
    last = {k: v[-1] for k, v in outs.items()}
    for where in (np.s_[40:56, 60:76], np.s_[8:24, 8:24]):  # the new square, and where the old one was
        assert np.abs(last[0.1][where] - last[0.0][where]).mean() < 0.25 * noise + 1.0


def test_a_scene_cut_resets_the_stream():
    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.engine.stream import DehazeStream

    first = _noisy_static_clip(5, seed=1)
    second = [(255 - f // 2).astype(np.uint8) for f in _noisy_static_clip(5, seed=2)]  # another shot
    dz = Dehazer(method="dcp")
    stream = DehazeStream(dz, fps=25)
    outs = [stream.push(f) for f in first + second]
    assert stream.cuts == 1
    # right after the cut the output is the new shot's own, not a blend with the old one
    assert np.abs(outs[5].astype(float) - dz.dehaze(second[0])).mean() < 3
