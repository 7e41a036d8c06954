"""Your own dehazer on a real clip (issue 31, item 2; docs/scattering.md, "Your own dehazer"): the
first half of a hazy clip fine-tunes, the second half is looked at and scored, without ground truth.

    python benchmarks/fine_tune_clip.py --work W [--clip flameguardian_dashcam_motorway_fog.mp4] [-- OPTIONS]

- every ``--every``-th frame of the clip's first half (as PNG) is the fine-tune's hazy pool, and
  ``--clear-count`` photos of the shared clear pool (shuffled with seed 0) its clear one, as a user
  gives haze-free photos of other scenes;
- ``odcr distill --init odcr --truth`` on them (its own schedule; more options after ``--``);
- every ``--every``-th frame of the second half, which the fine-tune never saw, dehazed as photos
  by the bundled default and by the fine-tuned model: FADE (``odcr evaluate --hazy``, lower = less
  fog), the artefact tool's flat-region gains (output over input), and a sheet of three frames
  (input | default | fine-tuned) in W/sheet.jpg.

Writes W/fine_tune_clip.json. A real clip has no truth: FADE says how much fog is left, the artefact
tool what was amplified that is not scene, and the sheet is to be looked at.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from _artifacts import artefact_summary  # noqa: E402
from _paths import TRAIN, VIDEO  # noqa: E402
from fine_tune_gain import link_all, odcr  # noqa: E402


def split_clip(clip: Path, work: Path, every: int) -> tuple[Path, Path]:
    """Every ``every``-th frame of the clip's first and second halves as PNG in WORK/first and
    WORK/second (made once)."""
    from PIL import Image

    from odcr_cli.files.video import VideoReader

    first, second = work / "first", work / "second"
    if first.is_dir() and second.is_dir():
        return first, second
    with VideoReader(clip) as reader:
        frames = [f.pixels for k, f in enumerate(reader.frames()) if k % every == 0]
    half = len(frames) // 2
    for folder, part, start in ((first, frames[:half], 0), (second, frames[half:], half)):
        folder.mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(part):
            Image.fromarray(pixels).save(folder / f"f{(start + i) * every:05d}.png")
    return first, second


def sheet(second: Path, outs: list[Path], path: Path, count: int = 3, width: int = 480) -> None:
    """``count`` frames of the second half, spread over it: input | each of ``outs``, one row each."""
    import cv2
    from PIL import Image

    names = sorted(p.name for p in second.glob("*.png"))
    rows = []
    for name in [names[k] for k in np.linspace(0, len(names) - 1, count).round().astype(int)]:
        cells = [np.asarray(Image.open(folder / name).convert("RGB")) for folder in [second, *outs]]
        h = round(width * cells[0].shape[0] / cells[0].shape[1])
        rows.append(np.concatenate([cv2.resize(c, (width, h), interpolation=cv2.INTER_AREA) for c in cells], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, quality=88)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="working folder (frames, the run, the scores)")
    ap.add_argument("--clip", default="flameguardian_dashcam_motorway_fog.mp4", help="a clip of the shared video folder")
    ap.add_argument("--every", type=int, default=10, help="every N-th frame of each half")
    ap.add_argument("--clear-count", type=int, default=89, help="clear photos from the shared pool")
    ap.add_argument("options", nargs=argparse.REMAINDER, help="after --: more odcr distill options")
    a = ap.parse_args()
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    from odcr_cli.files.folders import list_images

    first, second = split_clip(VIDEO / a.clip, work, a.every)
    pool = sorted(list_images(TRAIN / "clear"))
    pool = [pool[i] for i in np.random.default_rng(0).permutation(len(pool))][: a.clear_count]
    clear = link_all(pool, work / "clear")
    run = work / "ft"
    started, cpu_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if not (run / "generator.safetensors").is_file():
        odcr("distill", "--init", "odcr", "--truth", "--hazy", str(first), "--clear", str(clear), "--out", str(run),
              "--log-every", "50", *[o for o in a.options if o != "--"])
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {"clip": a.clip, "every": a.every, "frames": {"first": len(list(first.glob("*.png"))),
                                                          "second": len(list(second.glob("*.png")))},
              "clear": len(pool), "fine_tune": {
                  "wall_seconds_this_call": round(time.perf_counter() - started, 1),
                  "cpu_seconds_this_call": round((cpu_after.ru_utime - cpu_before.ru_utime)
                                                 + (cpu_after.ru_stime - cpu_before.ru_stime), 1)}}
    odcr("evaluate", "--hazy", str(second), "-m", "odcr", "-m", f"tuned={run / 'generator.safetensors'}", "-m", "input",
          "--latency-repeats", "0", "--json", str(work / "fade.json"), "-q")
    fade = json.loads((work / "fade.json").read_text())["methods"]
    result["fade_mean"] = {k: m["mean"]["fade"] for k, m in fade.items()}
    outs = []
    for name, weights in (("odcr", []), ("tuned", ["--weights", str(run)])):
        out = work / f"out_{name}"
        odcr("dehaze", str(second), "-o", str(out), "--ext", "png", "--skip-existing", "-q", *weights)
        result.setdefault("artefacts", {})[name] = artefact_summary(second, out)
        outs.append(out)
    sheet(second, outs, work / "sheet.jpg")
    (work / "fine_tune_clip.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
