"""The light install: the base is what `odcr dehaze` needs with the bundled model (ONNX Runtime,
no torch); a command that needs an extra that is missing says which one, in one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from odcr_cli.errors import GPU_ONNX_INSTALL, install_hint

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "docs" / "images" / "sample_hazy.jpg"


def _odcr_without(modules: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter where ``modules`` cannot be imported (as in a base install)."""
    blocked = "".join(f"sys.modules[{m!r}] = None; " for m in modules)
    # this checkout's odcr_cli, whatever an installed one says (cwd is elsewhere)
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); {blocked}"
            f"from odcr_cli.cli import main; sys.argv = ['odcr'] + {args!r}; main()")
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
    assert len(lines) == 1 and install_hint(extra) in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "t.jpg").exists() and not (tmp_path / "m.onnx").exists()


def test_the_torch_hint_installs_the_cpu_build_and_the_readme_says_the_same():
    # pip alone resolves torch to several GB of CUDA packages on Linux: the hint names the CPU index
    hint = install_hint("train")
    assert "--index-url https://download.pytorch.org/whl/cpu" in hint and "pip install 'odcr[train]'" in hint
    readme = " ".join((ROOT / "README.md").read_text().split())
    command = hint.split(" (")[0]
    assert command in readme and GPU_ONNX_INSTALL in readme


@pytest.mark.parametrize("device", ["gpu", "cuda:1", "tensorrt"])
def test_a_gpu_asked_of_the_base_install_points_to_the_onnxruntime_gpu_route(tmp_path, device):
    # no torch, the CPU build of onnxruntime: the bundled model's graph could run on a GPU with [gpu]
    res = _odcr_without(["torch"], ["dehaze", str(SAMPLE), "-o", "t.jpg", "--device", device], tmp_path)
    assert res.returncode == 2 and "needs torch" not in res.stderr
    assert GPU_ONNX_INSTALL in res.stderr and "--device cpu" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "t.jpg").exists()


def test_synth_runs_on_the_base_install(tmp_path):
    res = _odcr_without(["torch", "safetensors", "skimage", "onnx"], ["synth", str(SAMPLE.parent), "-o", "syn"], tmp_path)
    assert res.returncode == 0, res.stderr
    written = list((tmp_path / "syn" / "hazy").iterdir())
    assert written and (tmp_path / "syn" / "manifest.json").is_file() and (tmp_path / "syn" / "sources.txt").is_file()


def test_evaluate_scores_the_bundled_model_without_torch(tmp_path):
    # the [evaluate] extra is enough: the bundled model runs as odcr dehaze runs it (ONNX Runtime)
    from PIL import Image

    photo = Image.open(SAMPLE).convert("RGB").resize((96, 72))
    for sub in ("hazy", "gt"):
        (tmp_path / "p" / sub).mkdir(parents=True)
        photo.save(tmp_path / "p" / sub / "a.png")
    res = _odcr_without(["torch", "safetensors", "onnx"], ["evaluate", "--pairs", "p", "-m", "odcr", "-m", "dcp",
                                                           "--latency-repeats", "0", "--no-fade"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "odcr: bundled odcr-scatter-student-ngf16-b6-320-cpu, onnx int8 on CPUExecutionProvider" in res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith("odcr "))
    assert "(n=1)" in row and "492,513" in row   # piped: one whole line per method


def test_a_gpu_machine_without_torch_runs_the_bundled_graph(monkeypatch):
    # an NVIDIA driver and the base install: auto and --device gpu pick ONNX Runtime, never "needs torch"
    from odcr_cli.engine import backends, onnx_backend
    from odcr_cli.engine.options import BackendChoice, Device

    monkeypatch.setattr(onnx_backend, "nvidia_driver_present", lambda: True)
    for torch_there, want in ((False, BackendChoice.ONNX), (True, BackendChoice.TORCH)):
        monkeypatch.setattr(backends, "torch_installed", lambda: torch_there)
        for device in ("auto", "gpu"):
            got = backends.choose_backend("auto", weights=None, onnx_path=None, device=Device.parse(device),
                                          half=False, model=None)
            assert got is want, (torch_there, device)
