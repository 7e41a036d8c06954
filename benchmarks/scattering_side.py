"""Choose the network side of a scattering model (``odcr_cli.haze.constants.MODEL_SIDE``) from the dev pairs:

    python benchmarks/scattering_side.py [--weights W | --model NAME] [--sides 192 256 384 512]

For each side N the model's network runs on a copy whose longer side is at most N and t is carried
to full resolution (what `odcr dehaze` does); prints mean PSNR / SSIM over the dev pairs, per
subset, and the mean seconds per image, beside the dark channel prior estimated at the same N
(design note section 3). Measuring only: the dev pairs are never used for training.
"""

from __future__ import annotations

import argparse
import os
import time

from odcr_cli.tasks.evaluate.evaluation import evaluate

PAIRS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "dev", "paired")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="a scattering generator (.safetensors / checkpoint)")
    ap.add_argument("--model", help="a bundled model by name (default: the default model)")
    ap.add_argument("--sides", type=int, nargs="+", default=[192, 256, 384, 512])
    ap.add_argument("--pairs", default=PAIRS)
    args = ap.parse_args()
    spec = args.weights or args.model or "odcr"
    for side in args.sides:
        for method in (f"model={spec}", f"dcp@{side}"):
            t = time.perf_counter()
            report = evaluate(pairs_dir=args.pairs, methods=[method], device="cpu", latency_repeats=0, max_side=side,
                              fade=False)
            seconds = (time.perf_counter() - t) / max(1, len(report.pairing.pairs))
            for name, scores in report.methods.items():
                subsets = "  ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.3f}" for k, v in sorted(scores.subsets.items()))
                mean = scores.mean
                print(f"N={side:4d} {name:8s} all {mean['psnr']:.2f} / {mean['ssim']:.3f}  {subsets}  "
                      f"({seconds:.2f} s per pair, scoring included)", flush=True)


if __name__ == "__main__":
    main()
