"""The shared artefact tool (``shared/tools/real_artifacts.py``: border bands, flat-region luma and
chroma gain, JPEG-grid block gain of a dehazer's outputs against its inputs), run and read back, for
the benchmarks that tabulate its figures.

    from _artifacts import artefact_summary   # a benchmark (its folder is on sys.path)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _paths import ARTIFACT_TOOL  # noqa: E402


def artefact_summary(inputs: Path, outputs: Path) -> dict[str, tuple[float, float]]:
    """The tool on ``outputs`` against ``inputs`` (matched by stem) -> {figure: (median, worst)},
    from its last line ("n=.. median: name value ...; worst: name value ...")."""
    done = subprocess.run([sys.executable, str(ARTIFACT_TOOL), str(inputs), str(outputs)],
                          capture_output=True, text=True, check=True)
    median, worst = done.stdout.strip().splitlines()[-1].split("median:")[1].split("; worst:")

    def read(part: str) -> dict[str, float]:
        words = part.split()
        return dict(zip(words[::2], map(float, words[1::2])))

    m, w = read(median), read(worst)
    return {k: (m[k], w[k]) for k in m}
