"""What a fine-tune of the bundled model gains on a haze it has not seen, scored on photos the
fine-tune never saw (issue 31, item 2; docs/scattering.md, "Your own dehazer").

    python benchmarks/fine_tune_gain.py --work /tmp/ftgain [--route distill|train] [--iters N] [-- OPTIONS]

The experiment, all from the clear pool (``--data``/clear, sorted, shuffled with seed 0):
- half A fine-tunes, half B scores; nothing of B is read before the scoring;
- of A, one half is hazed with a dense, coloured haze (``--beta``, ``--airlight``, ``--tint``: the
  task behind ``odcr synth`` with those ranges) and is the fine-tune's hazy pool; the other half
  is its clear pool, so the two show different scenes (unpaired, as a user's own photos are);
- B is hazed the same way (another seed) and scored as pairs against its own clear photos;
- the fine-tune on A, by one of two routes (``--route``), each with its own default schedule
  unless ``--iters`` or the options after ``--`` say otherwise:
  ``distill`` (the default), ``odcr distill --init odcr --truth``: whole photos, the model's own
  answer on A's hazy photos and the truth of synthetic haze on A's clear ones;
  ``train``, ``odcr train --init odcr``: crops, the unpaired losses and the synthetic t term;
- ``odcr evaluate`` of the bundled default against the fine-tuned model on B's pairs and on the dev
  pairs (``--dev``; the fine-tune must not lose there what it gains on its haze).

Writes WORK/fine_tune_gain.json (the scores, the training time) and WORK/heldout_report/ (the
evaluate page: every held-back photo, both models). ``--tiny`` is a smoke run (a few photos,
iterations and a small crop) to try the script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _paths import DEV_PAIRS, ROOT, TRAIN  # noqa: E402


def link_all(files: list[Path], folder: Path, names: list[str] | None = None) -> Path:
    """A folder of symbolic links to ``files`` (the pools stay where they are, read-only)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        link = folder / ((names[i] if names else f.stem) + f.suffix.lower())
        if not link.exists():
            link.symlink_to(f.resolve())
    return folder


def odcr(*args: str) -> None:
    cmd = [sys.executable, "-m", "odcr_cli", *args]
    print("$ odcr " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def split_pool(clear: Path, limit: int | None) -> tuple[list[Path], list[Path], list[Path]]:
    """(A's hazy sources, A's clear pool, B): the shuffled clear pool in halves, A in halves again."""
    from odcr_cli.files.folders import list_images

    files = sorted(list_images(clear))
    files = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
    if limit:
        files = files[:limit]
    a, b = files[: len(files) // 2], files[len(files) // 2:]
    return a[: len(a) // 2], a[len(a) // 2:], b


def make_haze(sources: list[Path], out: Path, seed: int, a: argparse.Namespace) -> list[tuple[Path, Path]]:
    """Hazy versions of ``sources`` in OUT/hazy (odcr synth's task, the haze of ``a``); returns
    (hazy file, its clear source) pairs."""
    from odcr_cli.imaging.haze_synthesis import SynthConfig
    from odcr_cli.tasks.synthesis import make_synthetic_set

    cfg = SynthConfig(beta=a.beta, airlight=a.airlight, tint=a.tint)
    if not (out / "manifest.json").is_file():
        make_synthetic_set(sources, out, seed=seed, cfg=cfg, ext="png")
    manifest = json.loads((out / "manifest.json").read_text())
    return [(out / r["file"], Path(r["source"])) for r in manifest["images"]]


def scores(pairs: Path, tuned: Path, out_json: Path, report: Path | None) -> dict[str, dict[str, float]]:
    """odcr evaluate of the bundled default and the fine-tuned model on ``pairs`` -> {method: means}."""
    args = ["evaluate", "--pairs", str(pairs), "-m", "odcr", "-m", f"tuned={tuned}", "--no-fade",
            "--latency-repeats", "0", "--json", str(out_json), "-q"]
    odcr(*args, *(["--report", str(report)] if report else []))
    data = json.loads(out_json.read_text())
    return {name: {k: m["mean"][k] for k in ("psnr", "ssim")} for name, m in data["methods"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="working folder (the sets, the run, the scores)")
    ap.add_argument("--data", type=Path, default=TRAIN, help="holds clear/ (the pool split in halves)")
    ap.add_argument("--dev", type=Path, default=DEV_PAIRS, help="dev pairs (hazy/, gt/); '' skips")
    ap.add_argument("--route", choices=("distill", "train"), default="distill",
                    help="odcr distill --init MODEL --truth, or odcr train --init MODEL")
    ap.add_argument("--iters", type=int, help="the fine-tune's steps (default: the route's own schedule)")
    ap.add_argument("--init", default="odcr", help="the model to fine-tune")
    ap.add_argument("--max-minutes", type=float, default=45.0, help="wall-clock cap of the fine-tune")
    ap.add_argument("--beta", type=float, nargs=2, default=(2.0, 3.0), help="dense: t at the far end 0.14..0.05")
    ap.add_argument("--airlight", type=float, nargs=2, default=(0.6, 0.8))
    ap.add_argument("--tint", type=float, default=0.12, help="a coloured (smoggy) airlight, not near-grey")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 8 photos, 2 iterations, crop 32")
    ap.add_argument("train_options", nargs=argparse.REMAINDER,
                    help="after --: more options of the route's command (e.g. -- --copies 2)")
    a = ap.parse_args()
    train_options = [o for o in a.train_options if o != "--"]
    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    hazy_src, clear_pool, held_out = split_pool(a.data / "clear", 8 if a.tiny else None)
    train_hazy = make_haze(hazy_src, work / "train_synth", 0, a)
    test = make_haze(held_out, work / "test_synth", 1, a)
    names = [f"p{i:03d}" for i in range(len(test))]
    pairs = work / "test_pairs"
    link_all([h for h, _ in test], pairs / "hazy", names)
    link_all([c for _, c in test], pairs / "gt", names)
    clear_dir = link_all(clear_pool, work / "train_clear")
    run = work / "ft"
    if a.route == "train":
        small = ["--crop", "32", "--num-patches", "16", "--num-clear-patches", "16"] if a.tiny else []
    else:
        small = ["--sides", "64"] if a.tiny else []
    iters = ["--iters", str(2 if a.tiny else a.iters)] if a.tiny or a.iters else []
    route = ["distill", "--truth"] if a.route == "distill" else ["train"]
    started, cpu_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if not (run / "generator.safetensors").is_file():
        odcr(*route, "--init", a.init, "--hazy", str(train_hazy[0][0].parent), "--clear", str(clear_dir),
              "--out", str(run), *iters, "--max-minutes", str(a.max_minutes), "--log-every", "25", *small,
              *train_options)
    train_seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"lr"' in line]
    result = {"route": a.route, "init": a.init, "train_options": train_options, "haze": {"beta": a.beta, "airlight": a.airlight, "tint": a.tint},
              "photos": {"fine_tune_hazy": len(train_hazy), "fine_tune_clear": len(clear_pool), "held_out": len(test)},
              "fine_tune": {"iterations": log[-1]["iter"] if log else 0,
                            "sec_per_iter": log[-1].get("sec_per_iter") if log else None,
                            "wall_seconds_this_call": round(train_seconds, 1),
                            "cpu_seconds_this_call": round(cpu_seconds, 1), "cpus": os.cpu_count()},
              "held_out": scores(pairs, run / "generator.safetensors", work / "heldout.json",
                                 work / "heldout_report")}
    if str(a.dev):
        result["dev"] = scores(a.dev, run / "generator.safetensors", work / "dev.json", None)
    (work / "fine_tune_gain.json").write_text(json.dumps(result, indent=1))
    for where in ("held_out", "dev"):
        if where in result:
            s = result[where]
            gain = s["tuned"]["psnr"] - s["odcr"]["psnr"]
            print(f"{where}: bundled {s['odcr']['psnr']:.2f} dB / {s['odcr']['ssim']:.3f}, fine-tuned "
                  f"{s['tuned']['psnr']:.2f} dB / {s['tuned']['ssim']:.3f} ({gain:+.2f} dB)")


if __name__ == "__main__":
    main()
