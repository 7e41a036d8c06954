"""Would an averaged transmission make a better teacher to distil from? The dev pairs with t
averaged over several scattering models, or over a horizontal flip and a second side of one:

    python benchmarks/t_average.py LABEL=WEIGHTS [LABEL=WEIGHTS ...] [--combo a+b ...] [--flip] [--extra-side 256]

Each model alone and each ``--combo`` (labels joined by +) is scored; with ``--flip`` (and
``--extra-side N``) the first model's t is also averaged with its t of the mirrored photo (and of a
copy at N px). t is estimated at the models' common side (``--side``, default 384 px) framed as
``odcr dehaze`` frames it, carried to full resolution and inverted with the first model's readout
(flat-region sigma 0.025, the default's) and its airlight. PSNR / SSIM as ``odcr evaluate``
computes them. Measuring only: the dev data are never used for training.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np

from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.files.imageio import read_rgb8
from odcr_cli.haze import pipeline
from odcr_cli.haze.constants import MODEL_SIDE
from odcr_cli.haze.network_input import shrink_to
from odcr_cli.imaging.metrics import psnr, ssim_uint8
from odcr_cli.tasks.evaluate.pairing import match_gt, pairs_from_dir

PAIRS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "dev" / "paired"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="LABEL=WEIGHTS, scattering generators")
    ap.add_argument("--combo", action="append", default=[], help="labels joined by +, e.g. b02+unp")
    ap.add_argument("--flip", action="store_true", help="also the first model with its t of the mirrored photo")
    ap.add_argument("--extra-side", type=int, help="with --flip: also its t at this side")
    ap.add_argument("--side", type=int, default=MODEL_SIDE)
    ap.add_argument("--pairs", default=str(PAIRS))
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.models)
    dehazers = {k: Dehazer(weights=w, backend="torch", device="cpu") for k, w in models.items()}
    first = next(iter(models))
    readout = dataclasses.replace(dehazers[first].readout, flat_sigma=0.025)

    def t_of(label: str, rgb: np.ndarray, side: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        small = shrink_to(rgb, side)  # flipped after shrinking, as the card's figures were made
        seen = np.ascontiguousarray(small[:, ::-1]) if flip else small
        haze = pipeline.estimate(seen, dehazers[label].backend.run_outputs, readout, side)
        t = haze.t_small
        return (np.ascontiguousarray(t[:, ::-1]) if flip else t), haze.airlight

    rows = {k: [k] for k in models} | {c: c.split("+") for c in args.combo}
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for p in pairs_from_dir(args.pairs).pairs:
        hazy = read_rgb8(p.hazy)
        gt, _ = match_gt(hazy, read_rgb8(p.gt))
        rgb = hazy.astype(np.float32) / 255.0
        ts = {}
        for k in models:
            ts[k], airlight = t_of(k, rgb, args.side, False)
            if k == first:
                airlight0 = airlight
        t_rows = {name: np.mean([ts[k] for k in labels], axis=0) for name, labels in rows.items()}
        if args.flip:
            flipped = t_of(first, rgb, args.side, True)[0]
            t_rows[f"{first} + flip"] = (ts[first] + flipped) / 2
            if args.extra_side:
                h, w = ts[first].shape
                other = cv2.resize(t_of(first, rgb, args.extra_side, False)[0], (w, h), interpolation=cv2.INTER_LINEAR)
                t_rows[f"{first} + flip + {args.extra_side} px"] = (ts[first] + flipped + other) / 3
        for name, t in t_rows.items():
            out = pipeline.render(rgb, pipeline.Haze(np.ascontiguousarray(t, dtype=np.float32), airlight0), readout)[0]
            out8 = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
            scores.setdefault(name, {}).setdefault(p.subset or "all", []).append(
                (psnr(out8, gt, peak=255.0, cap=100.0), ssim_uint8(out8, gt)))
    for name, by_subset in scores.items():
        every = [v for vs in by_subset.values() for v in vs]
        subsets = "  ".join(f"{k} {np.mean([a for a, _ in v]):.2f} / {np.mean([b for _, b in v]):.3f}"
                            for k, v in sorted(by_subset.items()))
        print(f"{name:32s} all {np.mean([a for a, _ in every]):.2f} / {np.mean([b for _, b in every]):.3f}  {subsets}",
              flush=True)


if __name__ == "__main__":
    main()
