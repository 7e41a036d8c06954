"""scripts/gpu_run.py, the GPU run ready to fire: end to end on the CPU with a tiny network, so that
a lent GPU's minutes go to training, not debugging (the CUDA-only parts say they were skipped)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odcr_cli.files.weights_io import load_generator

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_run.py"


def _data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for sub, haze in (("train/hazy", 0.6), ("train/clear", 0.0), ("dev/real_hazy", 0.5)):
        (root / sub).mkdir(parents=True)
        for i in range(3):
            yy, xx = np.mgrid[0:72, 0:96]
            base = np.stack([np.sin(xx / 7.0 + i), np.cos(yy / 5.0), np.sin((xx + yy) / 11.0)], -1) * 0.5 + 0.5
            img = (1 - haze) * base + haze * 0.8 + rng.normal(0, 0.02, base.shape)
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / sub / f"p{i}.png")
    return root


@pytest.mark.slow
def test_the_gpu_script_runs_end_to_end_on_the_cpu(tmp_path) -> None:
    data, carry, out = _data(tmp_path / "data"), tmp_path / "carry", tmp_path / "out"
    subprocess.run([sys.executable, str(SCRIPT), "prepare", "--data", str(data), "--carry", str(carry),
                    "--limit", "3", "--short-side", "48"], check=True, cwd=ROOT, capture_output=True)
    assert len(list((carry / "hazy").glob("*.jpg"))) == 3 and len(list((carry / "photos").glob("*.jpg"))) == 3
    assert all(min(Image.open(p).size) <= 48 for p in (carry / "clear").glob("*.jpg"))
    done = subprocess.run([sys.executable, str(SCRIPT), "run", "--tiny", "--carry", str(carry), "--out", str(out),
                           "--work", str(tmp_path / "work"), "--budget-s", "100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "gpu_run.json").read_text())
    for model in ("default", "teacher"):
        rows = summary["timings"][model]
        assert set(rows) >= {"torch-cpu", "onnx-fp16-cpu"}, rows
        assert all(len(r) == 3 and all(v > 0 for v in r.values()) for r in rows.values())
    assert summary["torchrun_exit"] == 0
    log = (out / "gpu_run.log").read_text()
    assert "CUDA is not available" in log and "TensorRT skipped" in log
    # the teacher comes back in parts that join into weights odcr runs
    subprocess.run([sys.executable, str(SCRIPT), "join", str(out), "-o", str(tmp_path / "teacher.safetensors")],
                   check=True, cwd=ROOT, capture_output=True)
    teacher = load_generator(tmp_path / "teacher.safetensors")
    assert teacher.generator.config.output == "scattering" and int(teacher.metadata["iteration"]) >= 3
    assert [json.loads(x)["iter"] for x in (out / "teacher_log.jsonl").read_text().splitlines()][-1] >= 3
