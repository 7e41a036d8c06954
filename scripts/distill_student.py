"""Distil a scattering model's transmission into a narrower student that runs at a smaller side
(issue 18, item 5: fast on ordinary photos; docs/scattering.md, "A student for speed").

    python scripts/distill_student.py cache --out runs/student [--teacher W] [--data ../shared/data/train]
    python scripts/distill_student.py fit --out runs/student [--sides 256 320 384] [--iters 3000] [--lr 1e-3]
    python scripts/distill_student.py fit --out runs/student256 --cache runs/student/cache.pt \
        --from-state runs/student/state.pt --sides 256 --iters 4500 --lr 3e-4
    python scripts/distill_student.py side runs/student256/generator.safetensors 256 -o student.safetensors

``cache``: the teacher's t on every training photo, computed as ``odcr dehaze`` computes it (the
photo's copy of at most 384 px, framed by its mirrored margin; the readout's DCP prior and
residual), for the hazy photos, the clear photos and a synthetic hazy version of each clear photo
(haze from none to thick: the teacher's own ``--synth-beta 0,2``). About 10 minutes on 2 cores.

``fit``: the student (a CUT/ODCR trunk, ``--ngf 16``, ``--n-blocks 6``: its DCP prior and readout
are the teacher's) on whole photos framed as ``odcr dehaze`` frames them, one photo per step at a
side drawn from ``--sides``, with the teacher's t carried to that side (area average) as the
target: the student at 256 px learns the teacher's answer at 384. The loss is |t - t_teacher|
plus |J - J_teacher| (J with the teacher's airlight, clipped to [0, 1]): errors of t where it is
small cost more in the image. Adam, a cosine learning rate, a weight average (that is what is
saved). ``--from-state`` starts from another fit's last state (weights and average; a fresh
optimiser and its own cosine from that iteration). 0.45 s a step at mixed sides, 0.34 at 256.

``side``: the student with the side it was fitted to recorded (``inference_side``), so that
``odcr dehaze`` runs it there; then ``scripts/ship_weights.py`` ships it.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from odcr_cli.core import losses
from odcr_cli.core.configs import GeneratorConfig
from odcr_cli.core.networks import ResnetGenerator, init_weights
from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.files.folders import list_images
from odcr_cli.files.weights_io import load_generator, save_generator
from odcr_cli.haze import pipeline
from odcr_cli.haze.constants import MODEL_SIDE
from odcr_cli.haze.network_input import shrink_to
from odcr_cli.haze.prior import dcp_transmission
from odcr_cli.haze.transmission_torch import transmission_from_residual
from odcr_cli.imaging.haze_synthesis import SynthConfig, synthesize
from odcr_cli.tasks.train.data import load_rgb
from odcr_cli.tasks.train.state import WeightAverage

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT / "weights" / "odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema.safetensors"
DATA = ROOT.parent / "shared" / "data" / "train"
SYNTH = SynthConfig(beta=(0.0, 2.0))  # the teacher's --synth-beta


def cache(out: Path, teacher: Path, data: Path) -> None:
    """``out/cache.pt``: for each photo its copy at the teacher's side (float16), the teacher's t
    of it (float16) and airlight."""
    d = Dehazer(weights=str(teacher), backend="torch", device="cpu")
    side = d.max_side or MODEL_SIDE
    files = [str(p) for sub in ("hazy", "hazy_more", "clear") if (data / sub).is_dir() for p in list_images(data / sub)]
    items = [(f, False) for f in files] + [(f, True) for f in files if f"{os.sep}clear{os.sep}" in f]
    rng = np.random.default_rng(0)
    entries, started = [], time.perf_counter()
    for i, (f, synthetic) in enumerate(items):
        rgb = np.asarray(load_rgb(Path(f)), dtype=np.float32) / 255.0
        small = shrink_to(rgb, side)
        if synthetic:
            small = np.clip(synthesize(small, rng, SYNTH)[0], 0.0, 1.0).astype(np.float32)
        haze = pipeline.estimate(small, d.backend.run_outputs, d.readout, side)  # as odcr dehaze estimates it
        entries.append({"img": small.astype(np.float16), "t": haze.t_small.astype(np.float16), "A": haze.airlight})
        if i % 100 == 0:
            print(f"{i} of {len(items)} photos, {time.perf_counter() - started:.0f} s", flush=True)
    torch.save(entries, out / "cache.pt")


def fit(a: argparse.Namespace) -> None:
    out = Path(a.out)
    entries = torch.load(Path(a.cache or out / "cache.pt"), weights_only=False)
    config = GeneratorConfig(ngf=a.ngf, n_blocks=a.n_blocks, output="scattering", t_prior="dcp")
    t_min = config.t_min
    torch.manual_seed(0)
    student = init_weights(ResnetGenerator(config))
    average = WeightAverage(student, 0.999)
    opt = torch.optim.Adam(student.parameters(), lr=a.lr)
    first = start = 0
    if a.from_state:
        s = torch.load(a.from_state)
        student.load_state_dict(s["student"])
        average.load_state_dict(s["average"])
        first = start = s["it"]
    if a.resume and (out / "state.pt").exists():
        s = torch.load(out / "state.pt")
        student.load_state_dict(s["student"])
        average.load_state_dict(s["average"])
        opt.load_state_dict(s["opt"])
        start = s["it"]
    log = open(out / "log.txt", "a")
    started, sum_t, sum_j = time.perf_counter(), 0.0, 0.0
    for it in range(start, a.iters):
        rng = np.random.default_rng([0, it])
        entry = entries[int(rng.integers(len(entries)))]
        side = int(rng.choice(a.sides))
        img, target = entry["img"].astype(np.float32), entry["t"].astype(np.float32)
        if rng.random() < 0.5:
            img, target = img[:, ::-1].copy(), target[:, ::-1].copy()
        small = shrink_to(img, side)
        h, w = small.shape[:2]
        if (h, w) != target.shape:
            target = cv2.resize(target, (w, h), interpolation=cv2.INTER_AREA)
        t_dcp, _ = dcp_transmission(small)  # the readout's prior of the student's own input
        t_prior = torch.from_numpy(t_dcp.astype(np.float32))[None, None]
        lr = a.lr * 0.5 * (1 + math.cos(math.pi * (it - first) / (a.iters - first)))
        for g in opt.param_groups:
            g["lr"] = lr
        # the student's outputs on its input framed as odcr dehaze frames it, with gradients
        raw = pipeline.network_outputs(lambda x: student.raw_outputs(torch.from_numpy(np.ascontiguousarray(x))), small)
        t = transmission_from_residual(raw["t_residual"], t_prior, t_min)
        photo = torch.from_numpy(small.transpose(2, 0, 1).copy())[None]
        loss_t, loss_j = losses.distillation_loss(t, torch.from_numpy(target)[None, None], photo,
                                                  torch.from_numpy(entry["A"]).view(1, 3, 1, 1))
        opt.zero_grad()
        (loss_t + loss_j).backward()
        opt.step()
        sum_t, sum_j = sum_t + loss_t.item(), sum_j + loss_j.item()
        average.update(student)
        if (it + 1) % 50 == 0:
            print(f"{it + 1} lt {sum_t / 50:.4f} lj {sum_j / 50:.4f} lr {lr:.2e} "
                  f"{(time.perf_counter() - started) / (it + 1 - start):.2f} s/it", file=log, flush=True)
            sum_t = sum_j = 0.0
        if (it + 1) % 500 == 0 or it + 1 == a.iters:
            torch.save({"student": student.state_dict(), "average": average.state_dict(), "opt": opt.state_dict(),
                        "it": it + 1}, out / "state.pt")
            meta = {"training_data": f"distilled from {a.teacher_name} on shared/data/train (research use)"}
            save_generator(out / "generator.safetensors", average.module, meta)
            save_generator(out / f"generator_{it + 1:05d}.safetensors", average.module, meta)


def record_side(weights: Path, side: int, output: Path) -> None:
    loaded = load_generator(weights)
    g = ResnetGenerator(replace(loaded.generator.config, inference_side=side))
    g.load_state_dict(loaded.generator.state_dict())
    save_generator(output, g, loaded.metadata)
    print(f"wrote {output}: runs at {side} px in odcr dehaze")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="stage", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--teacher", type=Path, default=TEACHER)
    c.add_argument("--data", type=Path, default=DATA)
    f = sub.add_parser("fit")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--cache", type=Path, help="another run's cache.pt (default: OUT/cache.pt)")
    f.add_argument("--sides", type=int, nargs="+", default=[256, 320, 384])
    f.add_argument("--ngf", type=int, default=16)
    f.add_argument("--n-blocks", type=int, default=6)
    f.add_argument("--iters", type=int, default=3000)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--from-state", type=Path)
    f.add_argument("--resume", action="store_true")
    f.add_argument("--teacher-name", default=TEACHER.stem)
    s = sub.add_parser("side")
    s.add_argument("weights", type=Path)
    s.add_argument("side", type=int)
    s.add_argument("-o", "--output", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if a.stage == "side":
        record_side(a.weights, a.side, a.output)
        return
    a.out.mkdir(parents=True, exist_ok=True)
    if a.stage == "cache":
        cache(a.out, a.teacher, a.data)
    else:
        fit(a)


if __name__ == "__main__":
    main()
