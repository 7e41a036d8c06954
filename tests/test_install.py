"""The light install: the base is what `odcr dehaze` needs with the bundled model (ONNX Runtime,
no torch); a command that needs an extra that is missing says which one, in one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "docs" / "images" / "sample_hazy.jpg"


def _odcr_without(modules: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter where ``modules`` cannot be imported (as in a base install)."""
    blocked = "".join(f"sys.modules[{m!r}] = None; " for m in modules)
    code = f"import sys; {blocked}from odcr_cli.cli import main; sys.argv = ['odcr'] + {args!r}; main()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_base_dependencies_leave_torch_out():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    assert "torch" not in base and "onnxruntime" in base and "onnxruntime-gpu" not in base
    assert any(d.startswith("torch") for d in project["optional-dependencies"]["train"])


def test_dehaze_with_the_bundled_model_needs_no_torch(tmp_path):
    res = _odcr_without(["torch", "safetensors", "skimage", "onnx"], ["dehaze", str(SAMPLE), "-o", "out.jpg"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.jpg").stat().st_size > 1000


@pytest.mark.parametrize("args, extra", [
    (["train", "--hazy", ".", "--clear", ".", "--out", "run"], "train"),
    (["export", "--onnx", "-o", "m.onnx"], "train"),
    (["dehaze", str(SAMPLE), "-o", "t.jpg", "--backend", "torch"], "train"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, args, extra):
    res = _odcr_without(["torch"], args, tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"pip install 'odcr[{extra}]'" in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "t.jpg").exists() and not (tmp_path / "m.onnx").exists()
