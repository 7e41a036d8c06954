"""The bundled models: the registry, checksum verification and the torch-free default path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import json

import numpy as np
import pytest

from odcr_cli.files import bundled
from odcr_cli.files.fsutil import sha256_file
from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.errors import BundledModelError, InferenceError


def _fake_bundle(folder: Path, good: bool) -> None:
    (folder / "m.onnx").write_bytes(b"not really a model")
    (folder / "m.safetensors").write_bytes(b"not really weights")
    digest = sha256_file(folder / "m.onnx") if good else "0" * 64
    (folder / "SHA256SUMS").write_text(f"{digest}  m.onnx\n{digest}  m.safetensors\n")
    (folder / "models.json").write_text(json.dumps({"default": "m", "models": [
        {"name": "m", "kind": "scattering", "weights": "m.safetensors", "onnx": "m.onnx", "parameters": 1,
         "summary": "fake"},
        {"name": "other", "kind": "image", "weights": "m.safetensors", "onnx": None, "parameters": 2,
         "summary": "fake too"}]}))


def test_corrupt_bundled_model_is_refused(tmp_path, monkeypatch) -> None:
    _fake_bundle(tmp_path, good=False)
    monkeypatch.setattr(bundled, "bundled_dir", lambda: tmp_path)
    with pytest.raises(BundledModelError, match="corrupt"):
        bundled.bundled_file("m.onnx")
    with pytest.raises(BundledModelError, match="corrupt"):
        Dehazer(device="cpu")


def test_missing_manifest_entry_is_refused(tmp_path, monkeypatch) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"x")
    monkeypatch.setattr(bundled, "bundled_dir", lambda: tmp_path)
    with pytest.raises(BundledModelError, match="no entry"):
        bundled.bundled_file("x.safetensors")


def test_models_by_name(tmp_path, monkeypatch) -> None:
    _fake_bundle(tmp_path, good=True)
    monkeypatch.setattr(bundled, "bundled_dir", lambda: tmp_path)
    names = [m.name for m in bundled.bundled_models()]
    assert names == ["m", "other"]  # the default first
    assert bundled.bundled_model().name == "m" and bundled.bundled_model("other").kind == "image"
    assert bundled.bundled_onnx_available("m") and not bundled.bundled_onnx_available("other")
    with pytest.raises(BundledModelError, match="no bundled model called 'nope'.*m, other"):
        bundled.bundled_model("nope")
    with pytest.raises(InferenceError, match="give one of them"):
        Dehazer(model="m", weights="x.safetensors")


def test_every_bundled_model_is_listed_and_verified() -> None:
    models = bundled.bundled_models()
    assert sum(m.default for m in models) == 1
    manifest = bundled.read_manifest(bundled.bundled_dir())
    for m in models:
        assert m.weights in manifest and (m.onnx is None or m.onnx in manifest), m.name
        assert m.weights_file().path.is_file()  # checksum verified
        assert m.kind in ("image", "scattering") and m.summary


@pytest.mark.skipif(not bundled.bundled_onnx_available(), reason="no bundled ONNX model in this checkout")
def test_default_dehaze_runs_the_bundled_model_without_torch(tmp_path) -> None:
    code = ("import sys, numpy as np\n"
            "from odcr_cli.engine.dehazer import Dehazer\n"
            "d = Dehazer(device='cpu')\n"
            "out = d.dehaze(np.full((30, 41, 3), 128, np.uint8))\n"
            "assert out.shape == (30, 41, 3) and out.dtype == np.uint8\n"
            "assert d.describe()['backend'] == 'onnx', d.describe()\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]


@pytest.mark.parametrize("name", [m.name for m in bundled.bundled_models() if m.onnx])
def test_bundled_torch_and_onnx_agree(name: str) -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    a = Dehazer(model=name, backend="torch", device="cpu", max_side=0).dehaze(img)
    b = Dehazer(model=name, backend="onnx", device="cpu", max_side=0).dehaze(img)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_the_base_wheel_ships_what_the_base_install_runs() -> None:
    """``pip install .`` ships every file of the manifest (the ONNX export was once left out)
    except the weights of models that only PyTorch runs (no ONNX graph), which the base install
    cannot use: the paper's 21.7 MiB direct generator."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["odcr_cli.weights"] == "weights"
    patterns = config["package-data"]["odcr_cli.weights"]
    excluded = config.get("exclude-package-data", {}).get("odcr_cli.weights", [])
    torch_only = {m.weights for m in bundled.bundled_models() if m.onnx is None}
    for name in [*bundled.read_manifest(root / "weights"), bundled.MANIFEST_NAME, bundled.REGISTRY_NAME, "MODEL_CARD.md"]:
        shipped = any(fnmatch.fnmatch(name, p) for p in patterns) and not any(fnmatch.fnmatch(name, p) for p in excluded)
        assert shipped == (name not in torch_only), name
    assert torch_only == {"odcr-full-ngf64-b9-h100-ema.safetensors"}


def test_a_model_left_out_of_the_wheel_is_listed_honestly(tmp_path, monkeypatch) -> None:
    """An install without the direct generator's weights: `odcr models` says it is not installed
    and how to add it; asking for it is one line saying the same, and nothing is written."""
    import shutil

    from typer.testing import CliRunner

    from odcr_cli.cli.app import app

    for f in bundled.bundled_dir().iterdir():
        if f.is_file() and f.name != "odcr-full-ngf64-b9-h100-ema.safetensors":
            shutil.copy(f, tmp_path / f.name)
    monkeypatch.setattr(bundled, "bundled_dir", lambda: tmp_path)
    runner = CliRunner()
    listed = {m["name"]: m for m in json.loads(runner.invoke(app, ["models", "--json"]).output)}
    assert not listed["odcr-full-ngf64-b9-h100-ema"]["installed"] and listed["odcr-scatter-student-ngf16-b6-320-cpu"]["installed"]
    text = runner.invoke(app, ["models"]).output
    assert "not installed: the base wheel leaves it out; copy weights/odcr-full-ngf64-b9-h100-ema.safetensors" in text
    res = runner.invoke(app, ["dehaze", str(Path(__file__).resolve().parents[1] / "docs" / "images" / "sample_hazy.jpg"),
                              "-o", str(tmp_path / "out.jpg"), "--model", "odcr-full-ngf64-b9-h100-ema"])
    assert res.exit_code == 2 and "is not in this install" in res.output and not (tmp_path / "out.jpg").exists()


def test_models_command_lists_every_bundled_model() -> None:
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app

    runner = CliRunner()
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0, r.output
    models = bundled.bundled_models()
    assert [line for line in r.output.splitlines() if not line.startswith(" ")] == \
        [m.name + ("  (default)" if m.default else "") for m in models]
    listed = json.loads(runner.invoke(app, ["models", "--json"]).output)
    assert [m["name"] for m in listed] == [m.name for m in models] and listed[0]["default"]
    assert {m["kind"] for m in listed} == {"scattering", "image"}  # the new default and the paper's direct model


def test_strength_scales_the_haze_the_default_model_removes() -> None:
    """--strength on the bundled scattering model (a t_residual model): 0 is the input, 1 the full
    result, and 0.5 lies between them, pixel by pixel in the mean."""
    img = (np.random.default_rng(2).random((64, 80, 3)) * 120 + 100).astype(np.uint8)  # hazy-looking
    full = Dehazer(device="cpu").dehaze(img).astype(float)
    half = Dehazer(device="cpu", strength=0.5).dehaze(img).astype(float)
    none = Dehazer(device="cpu", strength=0.0).dehaze(img)
    assert np.array_equal(none, img)
    d_full, d_half = np.abs(full - img).mean(), np.abs(half - img).mean()
    assert 0.2 * d_full < d_half < 0.8 * d_full


def test_golden_the_bundled_default_reproduces_the_readme_sample():
    """What a user gets: the default model on the README's sample photo, on the default CPU path
    (ONNX Runtime, no torch), matches the committed output (a JPEG, hence not bit-exact) at > 40 dB.
    Regenerate both with ``python scripts/make_sheet.py`` when the default model changes."""
    from PIL import Image

    from odcr_cli.imaging.metrics import psnr

    docs = Path(__file__).resolve().parent.parent / "docs" / "images"
    hazy = np.asarray(Image.open(docs / "sample_hazy.jpg").convert("RGB"))
    reference = np.asarray(Image.open(docs / "sample_dehazed.jpg").convert("RGB"))
    dz = Dehazer(device="cpu")
    assert dz.backend_name == "onnx"
    out = dz.dehaze(hazy)
    assert psnr(out, reference, peak=255.0) > 40.0
    assert psnr(out, hazy, peak=255.0) < 30.0  # and it did dehaze


def _hazy_street_under_a_bright_sky(h: int = 384, w: int = 512) -> np.ndarray:
    """A flat sky, brighter to the left (so the airlight is above most of it), over textured
    ground: the scene where the network's own padding used to darken the top rows."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = np.array([0.80, 0.82, 0.85], np.float32) * (1.1 - 0.25 * xx / w)[..., None]
    ground = (0.25 + 0.15 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + 0.05 * rng.standard_normal((h, w))
              + 0.36 * (1 - (yy - 0.55 * h) / (0.45 * h)))[..., None]
    img = np.where((yy > 0.55 * h)[..., None], ground, sky) + 0.003 * rng.standard_normal((h, w, 3))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def test_no_dark_band_along_the_top_of_a_flat_sky():
    """The default sees mirrored context around its input (odcr_cli.haze.constants.MARGIN), so a flat sky's top
    rows come out as bright as the rows below them, relative to the input (without the margin they
    were 13 % darker here)."""
    img = _hazy_street_under_a_bright_sky()
    out = Dehazer(device="cpu").dehaze(img)

    def band(a: np.ndarray) -> float:
        y = a.mean(axis=2)
        return float(y[:6].mean() / y[20:60].mean())

    assert band(out) / band(img) > 0.9


def test_margin_keeps_the_outputs_size_on_tiny_inputs():
    from odcr_cli.haze.pipeline import network_outputs

    seen = []

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(x.shape)
        return {"t_residual": np.zeros((1, 1) + x.shape[2:], np.float32), "airlight_correction": np.zeros((1, 3))}

    for h, w in [(1, 1), (3, 40), (17, 9), (100, 60)]:
        out = network_outputs(run, np.random.default_rng(0).random((h, w, 3), np.float32), 16)
        assert out["t_residual"].shape == (1, 1, h, w) and out["airlight_correction"].shape == (1, 3)
    assert seen[-1][2:] == (132, 92)  # 100 x 60 framed by 16 px, then padded to a multiple of 4


def test_each_bundled_model_is_one_registry_entry_that_the_weights_readme_and_card_agree_with() -> None:
    """models.json is what a shipped model is: the side it records in its weights, its dev-pair
    scores as the README's table prints them (no row for a model --model refuses), one card
    section per bundled model and no other."""
    import re

    from odcr_cli.files.weights_io import load_generator
    from odcr_cli.haze.readout import model_side

    root = Path(__file__).resolve().parents[1]
    readme, card = (root / "README.md").read_text(), (root / "weights" / "MODEL_CARD.md").read_text()
    models = bundled.bundled_models()
    names = {m.name for m in models}
    for m in models:
        config = load_generator(bundled.bundled_dir() / m.weights).generator.config.to_dict()
        assert m.kind == config["output"] and m.t_prior == config.get("t_prior", "none"), m.name
        assert m.side == (model_side(config) if m.kind == "scattering" else None), m.name
        assert m.metrics is not None and m.recipe, f"{m.name}: metrics and recipe are part of the entry"
    # the README's dev-pair table: one row per bundled model, its cells the registry's
    lines = readme.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("| method | PSNR / SSIM, all"))
    columns = ["all"] + [c.strip().lower() for c in lines[head].strip("|").split("|")[2:]]
    rows = [ln for ln in lines[head + 2:] if ln.startswith("|")][:20]
    rows = rows[:next((i for i, ln in enumerate(rows) if not ln.startswith("|")), len(rows))]
    for m in models:
        row = next(ln for ln in rows if m.name in ln)
        cells = re.findall(r"(\d+\.\d\d) / (\d\.\d\d\d)", row)
        assert [f"{p} / {q}" for p, q in cells] == [str(m.metrics.score(c)) for c in columns], m.name
    shown = set(re.findall(r"\b(odcr-[a-z0-9-]+)", "\n".join(rows)))
    assert shown <= names, f"README rows for models --model refuses: {shown - names}"
    sections = set(re.findall(r"^## `([^`]+)`", card, flags=re.M))
    assert sections == names, f"the card's model sections {sections} are not the bundled models {names}"
    for m in models:  # the card's summary table: the registry's mean over all pairs
        row = next(ln for ln in card.splitlines() if ln.startswith(f"| **`{m.name}`**") or ln.startswith(f"| `{m.name}`"))
        assert str(m.metrics.score()) in row, m.name


def test_the_default_chain_script_runs_each_step_of_the_default_and_its_teacher_as_their_entries_say() -> None:
    """scripts/make_default.sh is the shipped default's whole chain (teacher, int8, student, int8,
    scores): each command of the two models' recipes in models.json is one of its lines, in order."""
    root = Path(__file__).resolve().parents[1]
    lines = [ln.strip() for ln in (root / "scripts" / "make_default.sh").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    student = bundled.bundled_model()  # the default, distilled from a teacher its recipe names
    teacher = next(m for m in bundled.bundled_models() if m.name in " ".join(student.recipe) and m.name != student.name)
    steps = [command.split(" (")[0] for m in (teacher, student) for command in m.recipe]
    positions = [lines.index(step) for step in steps]  # ValueError: a step the script does not run
    assert positions == sorted(positions) and len(steps) >= 5
