"""The bundled default's recipe (docs/scattering.md, "A student for speed"), now ``odcr distill``:

    python scripts/distill_student.py [RUN] [extra odcr distill flags]

distils the bundled teacher (ngf 32, 6 blocks, at 384 px) into a student of ngf 16 and 6 blocks
that runs at 320 px, on every photo of ``../shared/data/train`` (hazy, hazy_more, clear and a
synthetic hazy copy of each clear one): 3,000 steps of one photo at a side drawn from 256, 320
and 384 px. The student's weights are RUN/generator.safetensors (default RUN: runs/student);
``scripts/ship_weights.py`` ships them. Interrupted: the same command with --resume continues.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # the data roots, said once (benchmarks/_paths.py)
from _paths import TRAIN as DATA  # noqa: E402
TEACHER = "odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema"
DESCRIPTION = f"distilled from {TEACHER} on shared/data/train (research use)"


def main() -> None:
    args = sys.argv[1:]
    run = args.pop(0) if args and not args[0].startswith("-") else "runs/student"
    data = [word for sub, flag in (("hazy", "--hazy"), ("hazy_more", "--hazy"), ("clear", "--clear"))
            if (DATA / sub).is_dir() for word in (flag, str(DATA / sub))]
    resuming = "--resume" in args
    cmd = [sys.executable, "-m", "odcr_cli", "distill", *([] if resuming else data), "--out", run,
           *([] if resuming else ["--teacher", TEACHER, "--ngf", "16", "--n-blocks", "6", "--sides", "256,320,384",
                                  "--side", "320", "--iters", "3000", "--lr", "1e-3",
                                  "--training-data", DESCRIPTION]), *args]
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
