"""Video: fidelity and flicker on clips whose truth is known, real clips to look at, and speed
(README, Video; docs/video.md):

    python benchmarks/video.py fidelity [--pairs N] [--frames 50] [--every 1 5 10] [--blend 0.15 0.5]
    python benchmarks/video.py real OUT_DIR [--seconds 10]
    python benchmarks/video.py noise OUT_DIR [--seconds 4] [--settle 0 0.1 0.2]
    python benchmarks/video.py speed [--sizes 720 1080] [--settle 0 0.1]

* ``fidelity``: a window pans across a dev pair and zooms in (hazy and ground truth moved
  identically, 25 fps, frames quantised to 8 bits as a video holds them). For each method: the
  mean per-frame PSNR / SSIM against the ground-truth frames, beside the still-image PSNR of the
  same pair (the photo dehazed whole, as ``odcr evaluate``), and the flicker: the mean absolute
  change (levels of 255) between consecutive frames after undoing the known motion, over the
  pixels both frames see; the ground-truth clip's own figure (resampling alone) is the floor.
  Methods: ``odcr`` (the stream, as ``odcr dehaze clip.mp4``), ``odcr per-frame`` (each frame
  dehazed as a photo), ``dcp`` (the stream with the dark channel prior) and ``dcp per-frame``.
  ``--every``: also the stream with the network every N frames; ``--blend``: also the stream with
  each new network pass blended in with this weight (``StreamConfig.field_blend``); ``--settle``:
  also the stream with the frame averaged over this time constant (``StreamConfig.settle_seconds``).
* ``real``: for each clip of ``shared/data/video``: the first ``--seconds`` dehazed per frame and
  by the stream; a strip of frames (input | per-frame | stream) and a plot of the mean brightness
  over time, as JPEGs under OUT_DIR.
* ``noise``: what the stream amplifies of the codec: for each real clip, its first ``--seconds``
  through the stream with the frame's average along the motion over each ``--settle`` time
  constant (0: off); every 10th frame after the first second, input and output, as PNG under
  OUT_DIR/<clip>/, and the last line of ``shared/tools/real_artifacts.py`` on them (flat-region
  luma and chroma gain, JPEG-grid block gain: output over input).
* ``speed``: frames per second of ``odcr dehaze clip.mp4 -o out.mp4`` (the whole pipeline:
  decode, network, readout, encode, overlapped) on a clip made from the DVD 1080p frames,
  at each size.
Measuring only: the dev data are never used for training.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.engine.stream import DehazeStream, StreamConfig
from odcr_cli.imaging.metrics import psnr, ssim_uint8
from odcr_cli.files.imageio import read_rgb8
from odcr_cli.tasks.evaluate.pairing import match_gt, pairs_from_dir
from _artifacts import artefact_summary  # noqa: E402
from _paths import DEV_PAIRS, VIDEO  # noqa: E402

FPS = 25.0
# one pair of every subset and haze level, spread over the dev pairs
PAIRS = ("hazerd_01_3", "hazerd_07_5", "hazerd_13_1", "hsts_0586", "hsts_8180", "ots_0025_heavy",
         "ots_0930_light", "sots_in_1400", "sots_in_1433", "sots_out_0001", "sots_out_0036", "sots_out_0359")


# -- clips with a known truth -------------------------------------------------------------------

def window_path(h: int, w: int, frames: int) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Affine maps (2x3, frame pixel -> image pixel) of a window 70 % of the image, panning from
    the left to the right edge and zooming in by 1.25x over ``frames`` frames; and the frame size."""
    fw, fh = int(0.7 * w) // 2 * 2, int(0.7 * h) // 2 * 2
    maps = []
    for k in range(frames):
        u = k / max(1, frames - 1)
        zoom = 1.0 + 0.25 * u
        ww, wh = fw / zoom, fh / zoom
        x0 = u * (w - ww)
        y0 = (h - wh) / 2 + 0.1 * (h - wh) * math.sin(2 * math.pi * u)
        maps.append(np.array([[1 / zoom, 0, x0], [0, 1 / zoom, y0]], np.float64))
    return maps, (fh, fw)


def render_clip(image: np.ndarray, maps: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    fh, fw = size
    return [cv2.warpAffine(image, m, (fw, fh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT_101) for m in maps]


def flicker(frames: list[np.ndarray], maps: list[np.ndarray]) -> float:
    """Mean |frame k - frame k+1 moved back onto frame k| (levels), where both see the image."""
    diffs = []
    for k in range(len(frames) - 1):
        a, b = _h(maps[k]), _h(maps[k + 1])
        k_to_next = (np.linalg.inv(b) @ a)[:2]  # frame k pixel -> frame k+1 pixel
        h, w = frames[k].shape[:2]
        moved = cv2.warpAffine(frames[k + 1].astype(np.float32), k_to_next, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        seen = cv2.warpAffine(np.ones((h, w), np.float32), k_to_next, (w, h),
                              flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0.5
        seen = cv2.erode(seen.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        diffs.append(float(np.abs(frames[k].astype(np.float32) - moved)[seen].mean()))
    return float(np.mean(diffs))


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0, 0, 1]])


def _to8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _methods(every: list[int], blends: list[float], settles: list[float]) -> dict[str, tuple[str, StreamConfig | None]]:
    methods = {"odcr": ("odcr", StreamConfig()), "odcr per-frame": ("odcr", None)}
    for n in every:
        methods[f"odcr every {n}"] = ("odcr", StreamConfig(network_every=n))
    for b in blends:
        methods[f"odcr blend {b:g}"] = ("odcr", StreamConfig(field_blend=b))
    for s in settles:
        methods[f"odcr settle {s:g}"] = ("odcr", StreamConfig(settle_seconds=s))
    methods.update({"dcp": ("dcp", StreamConfig()), "dcp per-frame": ("dcp", None)})
    return methods


def fidelity(args: argparse.Namespace) -> None:
    pairing = pairs_from_dir(DEV_PAIRS)
    pairs = {Path(p.hazy).stem: p for p in pairing.pairs}
    names = [n for n in PAIRS if n in pairs][: args.pairs]
    dehazers = {"odcr": Dehazer(), "dcp": Dehazer(method="dcp", max_side=512)}
    methods = _methods(args.every, args.blend, args.settle)
    rows: dict[str, list[tuple[float, float, float]]] = {m: [] for m in methods}
    gt_flicker, stills = [], []
    for name in names:
        hazy = read_rgb8(Path(pairs[name].hazy))
        gt, _ = match_gt(hazy, read_rgb8(Path(pairs[name].gt)))
        stills.append(psnr(_to8(dehazers["odcr"].dehaze(hazy.astype(np.float32) / 255.0)), gt, 255.0))
        maps, size = window_path(*hazy.shape[:2], args.frames)
        hz_frames, gt_frames = render_clip(hazy, maps, size), render_clip(gt, maps, size)
        gt_flicker.append(flicker(gt_frames, maps))
        for label, (method, config) in methods.items():
            dz = dehazers[method]
            if config is None:
                outs = [dz.dehaze(f) for f in hz_frames]
            else:
                stream = DehazeStream(dz, FPS, config)
                outs = [stream.push(f) for f in hz_frames]
            p = float(np.mean([psnr(o, g, 255.0) for o, g in zip(outs, gt_frames)]))
            s = float(np.mean([ssim_uint8(o, g) for o, g in zip(outs[::5], gt_frames[::5])]))
            rows[label].append((p, s, flicker(outs, maps)))
        print(f"{name}: still {stills[-1]:.2f} dB; " + "; ".join(
            f"{m} {v[-1][0]:.2f}/{v[-1][2]:.2f}" for m, v in rows.items()) + f"; gt flicker {gt_flicker[-1]:.2f}",
            file=sys.stderr)
    floor = float(np.mean(gt_flicker))
    print(f"\n{len(names)} dev pairs, {args.frames} frames at {FPS:g} fps each; still-image odcr: "
          f"{np.mean(stills):.2f} dB; ground-truth clip flicker {floor:.2f} levels\n")
    print("| method | per-frame PSNR | SSIM | flicker (levels) | flicker / ground truth's |")
    print("|---|---|---|---|---|")
    for label, values in rows.items():
        p, s, f = (float(np.mean([v[i] for v in values])) for i in range(3))
        print(f"| {label} | {p:.2f} | {s:.3f} | {f:.2f} | {f / floor:.2f}x |")


# -- real clips ---------------------------------------------------------------------------------

REAL_CLIPS = ("flameguardian_dashcam_motorway_fog.mp4", "flameguardian_delhi_smog_news.mp4",
              "conquerhuang_aerial_coast_mist.mp4", "kumasento_city_smog_buildings.avi")


def _decode(path: Path, seconds: float) -> tuple[list[np.ndarray], float]:
    from odcr_cli.files.video import VideoReader

    with VideoReader(path) as reader:
        fps = reader.info.fps
        frames = []
        for frame in reader.frames():
            frames.append(frame.pixels)
            if len(frames) >= seconds * fps:
                break
    return frames, fps


def _plot(series: dict[str, list[float]], fps: float, size: tuple[int, int] = (720, 240)) -> np.ndarray:
    """Mean brightness over time, one line per series (OpenCV drawing: no plotting library)."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    values = np.concatenate([np.asarray(v) for v in series.values()])
    lo, hi = float(values.min()) - 2, float(values.max()) + 2
    colours = [(90, 90, 90), (220, 60, 40), (30, 110, 220)]
    for (name, ys), colour in zip(series.items(), colours):
        n = len(ys)
        pts = np.array([[40 + (w - 60) * k / max(1, n - 1), h - 30 - (h - 50) * (y - lo) / (hi - lo)]
                        for k, y in enumerate(ys)], np.int32)
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, name, (50 + 180 * list(series).index(name), 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1,
                    cv2.LINE_AA)
    cv2.putText(img, f"mean brightness (levels {lo:.0f}-{hi:.0f}) over {len(ys) / fps:.1f} s", (40, h - 8),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def real(args: argparse.Namespace) -> None:
    from PIL import Image

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dz = Dehazer()
    print("| clip | frames | brightness flicker: input | per-frame | stream | network runs |")
    print("|---|---|---|---|---|---|")
    for name in args.clips:
        frames, fps = _decode(VIDEO / name, args.seconds)
        alone = [dz.dehaze(f) for f in frames]
        stream = DehazeStream(dz, fps)
        smoothed = [stream.push(f) for f in frames]
        rows = {"input": frames, "per-frame": alone, "stream": smoothed}
        means = {k: [float(f.mean()) for f in v] for k, v in rows.items()}
        jumps = {k: float(np.abs(np.diff(v)).mean()) for k, v in means.items()}
        print(f"| {name} | {len(frames)} | {jumps['input']:.2f} | {jumps['per-frame']:.2f} | {jumps['stream']:.2f} "
              f"| {stream.network_runs} |")
        picks = np.linspace(0, len(frames) - 1, 4).round().astype(int)
        width = 320
        strip = np.concatenate([np.concatenate([cv2.resize(v[k], (width, round(width * v[k].shape[0] / v[k].shape[1])),
                                                           interpolation=cv2.INTER_AREA) for k in picks], axis=1)
                                for v in rows.values()], axis=0)
        stem = Path(name).stem
        Image.fromarray(strip).save(out_dir / f"video_{stem}_strip.jpg", quality=82)
        Image.fromarray(_plot(means, fps)).save(out_dir / f"video_{stem}_brightness.jpg", quality=90)


def noise(args: argparse.Namespace) -> None:
    from PIL import Image

    dz = Dehazer()
    print("| clip | settle (s) | flat luma gain, median / worst | chroma gain | block gain |")
    print("|---|---|---|---|---|")
    for name in args.clips:
        frames, fps = _decode(VIDEO / name, args.seconds)
        picks = range(round(fps), len(frames), 10)
        root = Path(args.out) / Path(name).stem
        (root / "input").mkdir(parents=True, exist_ok=True)
        for k in picks:
            Image.fromarray(frames[k]).save(root / "input" / f"f{k:04d}.png")
        for seconds in args.settle:
            stream = DehazeStream(dz, fps, StreamConfig(settle_seconds=seconds))
            arm = root / f"settle_{seconds:g}"
            arm.mkdir(exist_ok=True)
            for k, frame in enumerate(frames):
                out = stream.push(frame)
                if k in picks:
                    Image.fromarray(out).save(arm / f"f{k:04d}.png")
            v = artefact_summary(root / "input", arm)
            print(f"| {name} | {seconds:g} | {v['luma-gain'][0]:.2f} / {v['luma-gain'][1]:.2f} | "
                  f"{v['chroma-gain'][0]:.2f} / {v['chroma-gain'][1]:.2f} | "
                  f"{v['block-gain'][0]:.2f} / {v['block-gain'][1]:.2f} |", flush=True)


# -- speed ------------------------------------------------------------------------------------------

def make_speed_clip(path: Path, height: int, frames: int) -> Path:
    """An H.264 clip (crf 18, 25 fps) of the DVD hazy drive's 1080p frames, back and forth, scaled to
    ``height`` lines; made once."""
    if path.exists():
        return path
    import av

    sources = sorted((VIDEO / "dvd_hazy_driving_frames").glob("*.jpg"))
    order = sources + sources[::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = height * 16 // 9 // 2 * 2, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for k in range(frames):
            rgb = cv2.resize(read_rgb8(order[k % len(order)]), (stream.width, stream.height),
                             interpolation=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def speed_one(clip: Path, method: str, settle: float | None) -> None:
    """One timed run in this process (the caller runs each in a fresh one, for its peak memory)."""
    import resource
    import tempfile
    import time

    from odcr_cli.tasks.dehaze.videos import dehaze_video

    dz = Dehazer(method=method) if method == "dcp" else Dehazer()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        smoothing = StreamConfig() if settle is None else StreamConfig(settle_seconds=settle)
        result = dehaze_video(str(clip), str(Path(tmp) / "out.mp4"), dz, smoothing=smoothing)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    label = method if settle is None else f"{method} settle {settle:g}"
    print(f"{clip.name} {label}: {result.frames} frames in {seconds:.1f} s = {result.frames / seconds:.1f} fps; "
          f"peak memory {peak:.0f} MB; network runs {result.network_runs}")


def speed(args: argparse.Namespace) -> None:
    import subprocess

    clips = Path(args.clips)
    for height in args.sizes:
        for frames in args.frames:
            clip = make_speed_clip(clips / f"dvd_{height}p_{frames}.mp4", height, frames)
            for method in args.methods:
                for settle in (args.settle or [None]) if method == "odcr" else [None]:
                    extra = [] if settle is None else ["--settle", str(settle)]
                    subprocess.run([sys.executable, __file__, "speed-one", str(clip), method, *extra], check=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fidelity")
    f.add_argument("--pairs", type=int, default=len(PAIRS))
    f.add_argument("--frames", type=int, default=50)
    f.add_argument("--every", type=int, nargs="*", default=[])
    f.add_argument("--blend", type=float, nargs="*", default=[])
    f.add_argument("--settle", type=float, nargs="*", default=[])
    r = sub.add_parser("real")
    r.add_argument("out")
    r.add_argument("--seconds", type=float, default=5.0)
    r.add_argument("--clips", nargs="+", default=list(REAL_CLIPS))
    n = sub.add_parser("noise")
    n.add_argument("out")
    n.add_argument("--seconds", type=float, default=4.0)
    n.add_argument("--settle", type=float, nargs="+", default=[0.0, StreamConfig().settle_seconds])
    n.add_argument("--clips", nargs="+", default=list(REAL_CLIPS))
    sp = sub.add_parser("speed")
    sp.add_argument("--sizes", type=int, nargs="+", default=[720, 1080])
    sp.add_argument("--frames", type=int, nargs="+", default=[150],
                    help="clip lengths (two: peak memory must not grow with the length)")
    sp.add_argument("--methods", nargs="+", default=["odcr", "dcp"])
    sp.add_argument("--settle", type=float, nargs="*", default=[],
                    help="odcr with the frame averaged over these time constants (default: the stream's own)")
    sp.add_argument("--clips", default=str(Path(__file__).resolve().parents[1] / "runs" / "bench_clips"),
                    help="where the generated clips are kept (git-ignored)")
    one = sub.add_parser("speed-one")
    one.add_argument("clip", type=Path)
    one.add_argument("method")
    one.add_argument("--settle", type=float)
    args = ap.parse_args(argv)
    if args.what == "speed-one":
        return speed_one(args.clip, args.method, args.settle)
    {"fidelity": fidelity, "real": real, "noise": noise, "speed": speed}[args.what](args)


if __name__ == "__main__":
    main()
