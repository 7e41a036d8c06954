"""`odcr export --onnx` and the ONNX Runtime backend, with tiny generators (CPU, seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from odcr_cli.errors import ExportCheckError, ExportError, OnnxBackendError  # noqa: E402
from odcr_cli.tasks.export.export import export_onnx, parse_hw  # noqa: E402
from odcr_cli.engine.onnx_backend import OnnxBackend, nvidia_driver_present  # noqa: E402
from odcr_cli.files.folders import list_images  # noqa: E402

REAL_HAZY = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev" / "real_hazy"
ODD_SIZES = [(33, 45), (20, 28), (37, 37)]  # odd and non-square: they go through the padding path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    import torch

    from odcr_cli.core.configs import GeneratorConfig
    from odcr_cli.core.networks import ResnetGenerator
    from odcr_cli.files.weights_io import save_generator

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    return save_generator(path, ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)),
                          {"method": "odcr", "training_data": "unit-test noise"})


@pytest.fixture(scope="module")
def exported(tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(tiny_weights, out, check_sizes=ODD_SIZES)


def test_export_dynamic_parity_and_metadata(exported, tiny_weights):
    report = exported
    assert report.output.is_file() and report.passed
    assert [(c.height, c.width) for c in report.checks] == ODD_SIZES
    assert all(c.max_abs_diff <= 1 and c.psnr >= 50 for c in report.checks)
    model = onnx.load(str(report.output))
    inp, out = model.graph.input[0], model.graph.output[0]
    assert (inp.name, out.name) == ("input", "output")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"] and dims[1].dim_value == 3
    assert model.opset_import[0].version == 17
    assert any(n.op_type == "InstanceNormalization" for n in model.graph.node)
    meta = {p.key: p.value for p in model.metadata_props}
    from odcr_cli import __version__
    from odcr_cli.files.fsutil import sha256_file
    assert meta["odcr_version"] == __version__
    assert meta["weights_sha256"] == sha256_file(tiny_weights)
    assert meta["method"] == "odcr" and meta["training_data"] == "unit-test noise"
    assert (meta["input_range"], meta["channel_order"], meta["layout"], meta["size_multiple"]) == ("[-1,1]", "RGB", "NCHW", "4")

    backend = OnnxBackend(report.output, device="cpu")
    assert backend.device == "CPUExecutionProvider" and backend.static_hw is None
    assert backend.size_multiple == 4 and backend.metadata["weights_sha256"] == meta["weights_sha256"]
    for shape in [(1, 3, 16, 24), (2, 3, 28, 20)]:  # dynamic batch, height and width
        y = backend.run(np.zeros(shape, np.float32))
        assert y.shape == shape and y.dtype == np.float32
    with pytest.raises(ValueError):
        backend.run(np.zeros((1, 3, 18, 24), np.float32))  # not a multiple of 4: the caller pads


def test_dehazer_runs_onnx_backend(exported):
    from odcr_cli.engine.dehazer import Dehazer

    d = Dehazer(backend="onnx", onnx_path=str(exported.output), device="cpu", max_side=0)
    img = np.random.default_rng(1).integers(0, 256, (29, 41, 3), dtype=np.uint8)
    out = d.dehaze(img)
    assert out.shape == img.shape and out.dtype == np.uint8 and d.device == "CPUExecutionProvider"


def test_static_export(tiny_weights, tmp_path):
    report = export_onnx(tiny_weights, tmp_path / "s.onnx", static_hw=(32, 48))
    assert report.passed and [(c.height, c.width) for c in report.checks] == [(32, 48), (29, 47)]
    backend = OnnxBackend(report.output, device="cpu")
    assert backend.static_hw == (32, 48) and backend.metadata["static_hw"] == "32x48"
    assert backend.run(np.zeros((1, 3, 32, 48), np.float32)).shape == (1, 3, 32, 48)
    with pytest.raises(OnnxBackendError, match="32x48"):
        backend.run(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ExportError):
        export_onnx(tiny_weights, tmp_path / "bad.onnx", static_hw=(30, 48))


def test_failed_parity_is_an_error_and_leaves_no_file(tmp_path):
    """A generator whose weights lie beyond float16's range cannot be exported --fp16: the graph
    overflows, the parity check sees it, and nothing is written."""
    import torch

    from odcr_cli.core.configs import GeneratorConfig
    from odcr_cli.core.networks import ResnetGenerator
    from odcr_cli.files.weights_io import save_generator

    torch.manual_seed(0)
    generator = ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1))
    with torch.no_grad():
        generator.model[1].weight.mul_(1e8)  # fine in float32, far past float16's 65504
    weights = save_generator(tmp_path / "weights" / "huge.safetensors", generator)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "broken.onnx"
    with pytest.raises(ExportCheckError, match="was not written") as info:
        export_onnx(weights, target, fp16=True, check_sizes=[(20, 28)])
    assert not info.value.report.passed
    assert not target.exists()
    assert os.listdir(out) == []  # no temporary file left behind either


def test_parity_check_holds_fp32_to_one_level(exported, tmp_path):
    """The fp32 rule (<= 1 level, >= 50 dB) fails for a graph that is not the weights' generator."""
    import torch

    from odcr_cli.core.configs import GeneratorConfig
    from odcr_cli.core.networks import ResnetGenerator
    from odcr_cli.files.weights_io import save_generator
    from odcr_cli.tasks.export.export import run_parity

    torch.manual_seed(1)  # same shape, other weights
    other = save_generator(tmp_path / "other.safetensors", ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)))
    checks = run_parity(other, exported.output, fp16=False, static_hw=None, check_sizes=[(20, 28)])
    assert checks and not any(c.passed for c in checks) and all(c.max_abs_diff > 1 for c in checks)


def test_an_unreadable_check_image_is_an_error_before_anything_is_written(tiny_weights, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    for bad in (tmp_path / "notes.png", tmp_path / "missing.png"):
        with pytest.raises(ExportError, match="--check-image"):
            export_onnx(tiny_weights, tmp_path / "m.onnx", check_sizes=[(20, 28)], check_images=[bad])
    assert not (tmp_path / "m.onnx").exists()


def _real_photo() -> Path | None:
    if not REAL_HAZY.is_dir():
        return None
    files = list_images(REAL_HAZY)
    return files[0] if files else None


@pytest.fixture(scope="module")
def real_photo() -> Path:
    photo = _real_photo()
    if photo is None:
        pytest.skip(f"no real hazy photo in {REAL_HAZY} (the shared dev data is not on this machine)")
    return photo


def _assert_fp16_graph(path: Path) -> None:
    """float32 I/O, InstanceNorm in float32, Conv weights in float16, precision metadata fp16."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT   # float32 I/O
    assert g.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    norms = [n for n in g.node if n.op_type == "InstanceNormalization"]
    assert norms
    for n in norms:
        assert all(types[i] == onnx.TensorProto.FLOAT for i in n.input)
        assert types[n.output[0]] == onnx.TensorProto.FLOAT
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert all(types[n.input[1]] == onnx.TensorProto.FLOAT16 for n in convs)
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "fp16"


def test_fp16_keeps_instancenorm_fp32_and_passes(tiny_weights, tmp_path):
    report = export_onnx(tiny_weights, tmp_path / "h.onnx", fp16=True, check_sizes=[(37, 37)])
    assert report.passed and all(c.psnr >= 40 for c in report.checks)
    _assert_fp16_graph(report.output)


def test_fp16_parity_on_a_real_photo(tiny_weights, real_photo, tmp_path):
    report = export_onnx(tiny_weights, tmp_path / "h.onnx", fp16=True, check_sizes=[(37, 37)],
                         check_images=[real_photo], check_max_side=160)
    assert report.passed and all(c.psnr >= 40 for c in report.checks)
    assert report.checks[-1].name == real_photo.name
    _assert_fp16_graph(report.output)


def test_onnx_backend_does_not_import_torch():
    code = "import odcr_cli.engine.onnx_backend, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(nvidia_driver_present(), reason="an NVIDIA driver is present: CUDA may really be usable here")
def test_cuda_request_fails_loudly_without_cuda(exported):
    with pytest.raises(OnnxBackendError, match="CUDA"):
        OnnxBackend(exported.output, device="cuda")
    assert OnnxBackend(exported.output, device="auto").device == "CPUExecutionProvider"


def test_parse_hw():
    assert parse_hw("512x384") == (512, 384)
    with pytest.raises(ExportError):
        parse_hw("512")


def test_cli_export(tiny_weights, tmp_path):
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app

    out = tmp_path / "cli.onnx"
    res = CliRunner().invoke(app, ["export", "--onnx", "--weights", str(tiny_weights), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file()
    res = CliRunner().invoke(app, ["export", "--onnx", "--weights", str(tiny_weights), "-o", str(out), "--static", "5x5",
                                     "--overwrite"])
    assert res.exit_code == 2 and "5x5" in res.output


def test_fp16_stored_weights_export_half_the_file_with_identical_outputs(tiny_weights, exported, tmp_path):
    import torch

    from odcr_cli.files.weights_io import load_generator, save_generator

    half = save_generator(tmp_path / "half.safetensors", load_generator(tiny_weights).generator, dtype=torch.float16)
    report = export_onnx(half, tmp_path / "half.onnx", check_sizes=ODD_SIZES)
    assert report.passed and report.metadata["weights_storage"].startswith("float16")
    assert exported.metadata["weights_storage"] == "float32"  # fp32 weights are not fp16-exact: left alone
    model = onnx.load(str(report.output))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    stored = {t.data_type for t in model.graph.initializer if t.name.endswith("__fp16_storage")}
    assert stored == {onnx.TensorProto.FLOAT16}
    # the same fp16-exact weights kept as float32 give the same outputs, to the last bit
    fp32_copy = save_generator(tmp_path / "as32.safetensors", load_generator(half).generator.float())
    plain = export_onnx(fp32_copy, tmp_path / "plain.onnx", check=False)
    assert plain.metadata["weights_storage"].startswith("float16")  # fp16-exact values, whatever the file dtype
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 36, 44)).astype(np.float32)
    y_half = OnnxBackend(report.output, device="cpu").run(x)
    gen = load_generator(half).generator.float().eval()
    with torch.inference_mode():
        y_torch = gen(torch.from_numpy(x)).numpy()
    assert np.abs(y_half - y_torch).max() < 1e-5


def test_int8_export_quantizes_the_convolutions_and_keeps_the_photo(tmp_path):
    """odcr export --int8: integer convolutions calibrated on photos, metadata kept, the dehazed
    photo within the int8 bound of PyTorch fp32 (a scattering model, as the bundled default)."""
    import onnx
    import torch
    from PIL import Image
    from conftest import make_photo
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app
    from odcr_cli.core.configs import GeneratorConfig
    from odcr_cli.core.networks import ResnetGenerator, init_weights
    from odcr_cli.files.weights_io import save_generator

    torch.manual_seed(0)
    weights = tmp_path / "scatter.safetensors"
    save_generator(weights, init_weights(ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1, output="scattering",
                                                                         t_prior="dcp"))))
    photos = tmp_path / "calib"
    photos.mkdir()
    for k in range(3):
        Image.fromarray(make_photo(60 + 8 * k, 90, seed=k)).save(photos / f"{k}.jpg")
    out = tmp_path / "q8.onnx"
    runner = CliRunner()
    assert runner.invoke(app, ["export", "--onnx", "--int8", "--weights", str(weights), "-o", str(out)]).exit_code == 2
    res = runner.invoke(app, ["export", "--onnx", "--int8", "--calibrate", str(photos), "--weights", str(weights),
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    props = {p.key: p.value for p in model.metadata_props}
    assert props["precision"] == "int8" and props["output_kind"] == "scattering"
    assert not list(tmp_path.glob("*.pre.onnx")) and not list(tmp_path.glob("*.fp32.onnx"))
    # the weights keep to 7 bits: AVX2 CPUs without VNNI sum uint8 x int8 products in saturating
    # int16, which full-range weights overflow
    weights8 = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights8 and max(int(np.abs(w.astype(np.int16)).max()) for w in weights8) <= 64


def test_int8_calibrates_on_what_the_network_sees(tmp_path):
    """A scattering model is calibrated on photos at its own side framed by the method's margin,
    exactly as ``odcr dehaze`` frames them (a student that runs at 256 px sees 320); a direct model
    keeps the generic side, unframed."""
    from PIL import Image

    from odcr_cli.haze.pipeline import network_input
    from odcr_cli.tasks.export.onnx_int8 import CALIBRATION_SIDE, calibration_framing, calibration_inputs

    assert calibration_framing({"output": "scattering"}) == (384, 32)
    assert calibration_framing({"output": "scattering", "inference_side": 256}) == (256, 32)
    assert calibration_framing({"output": "image"}) == (CALIBRATION_SIDE, 0)
    photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "p.png")
    x = next(calibration_inputs([tmp_path / "p.png"], 256, 32))
    assert x.shape == (1, 3, 192 + 2 * 32, 256 + 2 * 32)
    assert np.array_equal(x, network_input(photo.astype(np.float32) / 255.0, 256, 32))
