"""The border band of the ground truths: what a perfect dehazer would score on the band measure.

    python benchmarks/band_reference.py [OUT_DIR ...]

``shared/tools/real_artifacts.py`` scores an output folder against its inputs with no ground truth;
its "edge band" is 1.0 where the outer rows and columns keep their brightness relative to the rows
next to them. Here it is run on the dev pairs with the ground truths as the "output", and on each
OUT_DIR (a dehazer's outputs of ``dev/paired/hazy``, e.g. ``odcr dehaze ../shared/data/dev/paired/hazy
-o OUT_DIR``). Prints, per folder, the worst and median edge band, how many pairs fall below 0.97
(issue 18's goal for real photos), and for each OUT_DIR how far below the ground truth's band its
worst pair falls. Measuring only: the dev data are never used for training.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path
from _paths import ARTIFACT_TOOL, DEV_PAIRS  # noqa: E402

GOAL = 0.97


def edge_bands(out_dir: Path) -> dict[str, float]:
    """Per pair (stem), the worst-side edge band of ``out_dir``'s image against the hazy input."""
    done = subprocess.run([sys.executable, str(ARTIFACT_TOOL), str(DEV_PAIRS / "hazy"), str(out_dir)],
                          capture_output=True, text=True, check=True)
    bands = {}
    for line in done.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("n=") and parts[1] != "nan":
            bands[parts[0]] = float(parts[1])
    return bands


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outputs", nargs="*", type=Path, help="folders of a dehazer's outputs of dev/paired/hazy")
    args = ap.parse_args()
    truth = edge_bands(DEV_PAIRS / "gt")
    for name, bands in [("ground truth", truth)] + [(str(d), edge_bands(d)) for d in args.outputs]:
        values = list(bands.values())
        line = (f"{name}: n={len(values)} worst edge {min(values):.3f} median {statistics.median(values):.3f}, "
                f"{sum(v < GOAL for v in values)} below {GOAL}")
        if bands is not truth:
            shared = [s for s in bands if s in truth]
            gap = max(shared, key=lambda s: truth[s] - bands[s])
            line += f"; furthest below the ground truth: {gap} {bands[gap]:.3f} against {truth[gap]:.3f}"
        print(line)


if __name__ == "__main__":
    main()
