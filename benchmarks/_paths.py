"""Where the benchmarks and scripts find the project's data: one setting, ``ODCR_SHARED`` (default
``../shared`` beside the repository, where CI has it too, read-only). Research-use data: it is
read there, never copied into the repository.

    from _paths import DEV_PAIRS, REAL_HAZY   # a benchmark (its folder is on sys.path)
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ODCR_SHARED") or ROOT.parent / "shared")
DATA = SHARED / "data"
TRAIN = DATA / "train"                  # the training pool: hazy/, hazy_more/, clear/
DEV_PAIRS = DATA / "dev" / "paired"     # 67 benchmark pairs: measuring only, never training
REAL_HAZY = DATA / "dev" / "real_hazy"  # real hazy photos, no ground truth
VIDEO = DATA / "video"                  # real hazy clips
ARTIFACT_TOOL = SHARED / "tools" / "real_artifacts.py"
