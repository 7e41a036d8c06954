import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from conftest import make_photo
from odcr_cli.core.configs import GeneratorConfig
from odcr_cli.core.networks import ResnetGenerator
from odcr_cli.files.fsutil import sha256_file
from odcr_cli.engine.dehazer import Dehazer
from odcr_cli.imaging.metrics import psnr
from odcr_cli.errors import InferenceError, WeightsError
from odcr_cli.engine.tiling import guided_upsample
from odcr_cli.engine.backend_base import Backend
from odcr_cli.engine.options import Device, Method, parse_max_side
from odcr_cli.engine.torch_backend import TorchBackend, finite_or_fp32, resolve_torch_device


@pytest.fixture(scope="module")
def dh(tiny_weights):
    return Dehazer(weights=str(tiny_weights), device="cpu", max_side=0)


def test_inference_module_does_not_import_torch():
    code = "import sys, odcr_cli.engine.dehazer, odcr_cli.tasks.dehaze.dehazing, odcr_cli.files.imageio; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (17, 30, 3), (64, 48, 3), (5, 7), (9, 11, 4), (6, 6, 1)])
def test_any_size_same_shape_and_dtype(dh, shape):
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16, np.float32):
        hi = {np.uint8: 255, np.uint16: 65535, np.float32: 1}[dtype]
        img = (rng.random(shape) * hi).astype(dtype)
        out = dh.dehaze(img)
        assert out.shape == img.shape and out.dtype == img.dtype
        if len(shape) == 3 and shape[2] == 4:
            assert np.array_equal(out[..., 3], img[..., 3])  # alpha passed through


def test_tiled_matches_whole_image(tiny_weights):
    img = make_photo(200, 232)
    whole = Dehazer(weights=str(tiny_weights), device="cpu", max_side=0).dehaze(img.astype(np.float32) / 255)
    tiled_d = Dehazer(weights=str(tiny_weights), device="cpu", max_side=0, tile=64, halo=32)
    tiled, plan = tiled_d.dehaze_with_record(img.astype(np.float32) / 255)
    assert plan.mode == "tiled" and plan.stats_scale == 1.0
    assert psnr(whole, tiled, peak=1.0) >= 40.0
    # above the memory budget the statistics come from a downscaled copy (an approximation)
    approx_d = Dehazer(weights=str(tiny_weights), device="cpu", max_side=0, tile=64, halo=32,
                       stats_max_pixels=200 * 232 // 4)
    approx, plan = approx_d.dehaze_with_record(img.astype(np.float32) / 255)
    assert plan.stats_scale == 0.5 and np.isfinite(approx).all()


def test_auto_tiling_above_memory_budget(tiny_weights):
    d = Dehazer(weights=str(tiny_weights), device="cpu", max_side=0, memory_budget_gb=0.3004)
    assert d.estimate_bytes(160, 160) > d.memory_budget
    out, plan = d.dehaze_with_record(make_photo(160, 160))
    assert out.shape == (160, 160, 3) and plan.mode == "tiled"
    d2 = Dehazer(weights=str(tiny_weights), device="cpu", max_side=0)
    assert d2.dehaze_with_record(make_photo(160, 160))[1].mode == "whole"


class SmoothBackend(Backend):
    """A stand-in network whose correction varies slowly across the image, as haze does."""
    name = "smooth"

    def run(self, x):
        h, w = x.shape[2:]
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        gain = 1.3 + 0.3 * np.sin(3 * xx) * np.cos(2 * yy)
        return np.clip((x - 0.3 * yy) * gain, -1, 1).astype(np.float32)


def test_fast_mode_carries_correction_to_full_resolution(tiny_weights):
    img = make_photo(240, 320).astype(np.float32) / 255
    full = Dehazer.from_backend(SmoothBackend(), max_side=0).dehaze(img)
    fast_d = Dehazer.from_backend(SmoothBackend(), max_side=160)
    fast, plan = fast_d.dehaze_with_record(img)
    assert plan.mode == "fast" and plan.net_size == (120, 160)
    assert fast.shape == img.shape and psnr(full, fast, peak=1.0) > 32
    # with a real (tiny, random) generator too: runs and keeps the size
    d = Dehazer(weights=str(tiny_weights), device="cpu", max_side=100)
    out, plan = d.dehaze_with_record(make_photo(150, 201))
    assert out.shape == (150, 201, 3) and plan.mode == "fast"
    # auto: fast mode on CPU only above the threshold side
    assert Dehazer(weights=str(tiny_weights), device="cpu").max_side is not None


def test_guided_upsample_reproduces_affine_mapping():
    rng = np.random.default_rng(0)
    full = rng.random((64, 80, 3)).astype(np.float32)
    M = np.array([[0.8, 0.1, 0.0], [0.05, 0.9, 0.0], [0.0, 0.1, 0.7]], np.float32)
    f = lambda x: np.clip(x @ M.T + 0.05, 0, 1)  # noqa: E731
    import cv2
    low = cv2.resize(full, (40, 32), interpolation=cv2.INTER_AREA)
    assert psnr(guided_upsample(low, f(low), full), f(full), peak=1.0) > 40


def test_devices_are_parsed_once_and_checked_honestly():
    assert resolve_torch_device(Device.parse("cpu")) == "cpu"
    assert Device.parse("CUDA:1") == Device("cuda", 1) and Device.parse("trt") == Device("tensorrt")
    with pytest.raises(InferenceError, match="unknown device 'tpu'"):
        Device.parse("tpu")
    with pytest.raises(InferenceError, match="cuda:N"):
        Device.parse("cuda:x")
    with pytest.raises(InferenceError, match="ONNX Runtime"):
        resolve_torch_device(Device("tensorrt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available: a CUDA request succeeds here")
def test_an_unusable_cuda_request_is_an_error():
    with pytest.raises(InferenceError, match="CUDA is not available"):
        resolve_torch_device(Device.parse("cuda:0"))


def test_half_needs_cuda(tiny_weights):
    with pytest.raises(InferenceError, match="--half needs a CUDA device"):
        Dehazer(weights=str(tiny_weights), device="cpu", half=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 inference needs a CUDA device")
def test_an_overflowing_fp16_pass_is_redone_in_fp32():
    """Weights far past float16's range: the fp16 pass is not finite, the image comes from fp32."""
    torch.manual_seed(0)
    generator = ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1))
    with torch.no_grad():
        generator.model[1].weight.mul_(1e8)
    d = Dehazer.from_backend(TorchBackend(generator, "cuda", half=True), max_side=0)
    out, plan = d.dehaze_with_record(make_photo(32, 32))
    assert plan.notes == ["fp16 output was not finite; redone in fp32"] and out.shape == (32, 32, 3)


@pytest.mark.skipif(torch.backends.mps.is_available(),
                    reason="MPS is available: an MPS request succeeds here")
def test_an_unusable_mps_request_is_an_error():
    with pytest.raises(InferenceError, match="MPS"):
        resolve_torch_device(Device("mps"))


def test_options_are_typed_at_the_boundary(tiny_weights):
    d = Dehazer(weights=str(tiny_weights), method="odcr", backend="torch", device="cpu", max_side="0")
    assert d.method is Method.ODCR and d.max_side is None and d.describe()["method"] == "odcr"
    assert parse_max_side("auto") == "auto" and parse_max_side(0) is None and parse_max_side("640") == 640
    with pytest.raises(InferenceError, match="at least 16"):
        parse_max_side(8)
    with pytest.raises(InferenceError, match="use odcr or dcp"):
        Dehazer(method="cut")
    with pytest.raises(InferenceError, match="use auto, torch or onnx"):
        Dehazer(weights=str(tiny_weights), backend="tensorflow")


def test_non_finite_fp16_output_is_redone_in_fp32():
    calls = []

    def run(half: bool):
        calls.append(half)
        return np.full((1, 3, 4, 4), np.nan if half else 0.5, np.float32)

    y, retried = finite_or_fp32(lambda: run(True), lambda: run(False))
    assert calls == [True, False] and retried and np.isfinite(y).all()
    calls.clear()
    y, retried = finite_or_fp32(lambda: run(False), lambda: run(True))
    assert calls == [False] and not retried


class RetryingBackend(Backend):
    """A runtime whose fp16 pass fails once per call, as TorchBackend(half=True) reports it."""
    name = "retrying"

    def run(self, x):
        self.fp32_retries += 1
        return x


def test_an_fp32_retry_is_a_note_of_the_image_plan():
    d = Dehazer.from_backend(RetryingBackend(), max_side=0)  # a note of the plan, not a Python warning
    out, plan = d.dehaze_with_record(np.zeros((16, 16, 3), np.uint8))
    assert plan.notes == ["fp16 output was not finite; redone in fp32"] and out.shape == (16, 16, 3)


def test_thread_safe_reuse_and_ray_batch(dh):
    imgs = [make_photo(32, 40, seed=s) for s in range(4)]
    expected = [dh.dehaze(i) for i in imgs]
    got = [None] * 4

    def work(k):
        got[k] = dh.dehaze(imgs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
    batch = dh({"image": np.stack(imgs), "path": np.array(["a", "b", "c", "d"])})
    assert batch["image"].shape == (4, 32, 40, 3) and list(batch["path"]) == ["a", "b", "c", "d"]
    assert dh({"image": [imgs[0], imgs[1][:20]]})["image"][1].shape == (20, 40, 3)


def test_describe_and_weights_errors(tiny_weights, dh, tmp_path):
    info = dh.describe()
    assert info["backend"] == "torch" and info["device"] == "cpu"
    assert info["weights_sha256"] == sha256_file(tiny_weights)
    assert info["parameters"] == sum(p.numel() for p in ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)).parameters())
    with pytest.raises(WeightsError):
        Dehazer(weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(InferenceError, match="--onnx"):
        Dehazer(weights=str(tiny_weights), backend="onnx")
    with pytest.raises(InferenceError, match="use auto, torch or onnx"):
        Dehazer(weights=str(tiny_weights), backend="tensorflow")


def test_half_runs_the_fp16_scattering_generator_and_redoes_non_finite_outputs_in_fp32():
    """--half on a scattering model runs the half copy (it used to run the fp32 one while keeping
    the half copy idle); a non-finite fp16 output is redone in fp32 and counted."""
    import torch

    from odcr_cli.core.configs import GeneratorConfig
    from odcr_cli.core.networks import ResnetGenerator

    torch.manual_seed(0)
    gen = ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1, output="scattering", t_prior="dcp"))
    backend = TorchBackend(gen, device="cpu")  # --half needs CUDA: its half copy is faked below

    class FakeHalf(torch.nn.Module):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value, self.inputs = value, []

        def raw_outputs(self, x):
            self.inputs.append(x.dtype)
            return {"t_residual": torch.full((1, 1, *x.shape[2:]), self.value, dtype=x.dtype),
                    "airlight_correction": torch.zeros(1, 3, dtype=x.dtype)}

    x = np.zeros((1, 3, 16, 16), np.float32)
    fp32 = backend.run_outputs(x)
    backend.half, backend._half_generator = True, FakeHalf(0.25)
    out = backend.run_outputs(x)
    assert backend._half_generator.inputs == [torch.float16] and np.allclose(out["t_residual"], 0.25)
    assert backend.fp32_retries == 0
    backend._half_generator = FakeHalf(float("nan"))
    out = backend.run_outputs(x)
    assert backend.fp32_retries == 1 and np.array_equal(out["t_residual"], fp32["t_residual"])


class FlatScatteringBackend(Backend):
    """A scattering model that leaves the prior's t as it is; records the sizes it ran at."""
    name = "flat-scattering"
    generator_config = {"output": "scattering", "t_prior": "dcp", "ngf": 32}

    def __init__(self):
        self.shapes = []

    def run_outputs(self, x):
        self.shapes.append(x.shape[2:])
        return {"t_residual": np.zeros((1, 1) + x.shape[2:], np.float32),
                "airlight_correction": np.zeros((1, 3), np.float32)}


def test_max_side_0_keeps_a_scattering_network_within_the_memory_budget():
    """--max-side 0 asks for the network at full resolution; a scattering model never tiles, so a
    photo whose estimate exceeds the budget runs at the largest side that fits, and says so."""
    img = make_photo(300, 400)
    roomy = FlatScatteringBackend()
    _, plan = Dehazer.from_backend(roomy, max_side=0).dehaze_with_record(img)
    assert plan.mode == "whole" and plan.net_size == (300, 400) and not plan.notes
    tight = FlatScatteringBackend()
    d = Dehazer.from_backend(tight, max_side=0, memory_budget_gb=0.42)  # ~0.12 GB for the network
    out, plan = d.dehaze_with_record(img)
    assert out.shape == img.shape and plan.mode == "fast" and max(plan.net_size) < 400
    assert d.estimate_bytes(*(s + 64 for s in plan.net_size)) <= d.memory_budget
    assert "memory budget" in plan.notes[0]
    # a video's frames run at the same side (chosen at the first frame)
    from odcr_cli.engine.stream import DehazeStream

    stream = DehazeStream(d)
    stream.push(img)
    assert stream.side == max(plan.net_size) and tight.shapes[-1] == tight.shapes[-2]
