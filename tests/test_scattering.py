"""The scattering-model output: the inversion, t from a logit, the airlight rule (torch and numpy
agree), the DCP transmission target, the priors, and a scattering generator end to end
(training losses, saved config, inference on a reduced copy, ONNX export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odcr_cli.core import losses
from odcr_cli.core.configs import GeneratorConfig, method_config
from odcr_cli.core.methods import ContrastiveModel, prior_weight
from odcr_cli.core.networks import ResnetGenerator
from odcr_cli.haze import pipeline
from odcr_cli.haze import prior_torch as haze
from odcr_cli.haze.dcp import dehaze_dcp
from odcr_cli.haze.filters import upsample_transmission
from odcr_cli.haze.network_input import shrink_to, to_signed
from odcr_cli.haze.prior import atmospheric_light, dark_channel, dcp_transmission
from odcr_cli.haze.readout import ImageReadout, ScatteringReadout, output_names, readout_for
from odcr_cli.haze.scattering import add_haze, remove_haze
from odcr_cli.haze.transmission_torch import transmission_from_logit
from tests.conftest import make_photo


def _scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, size=(h, w, 3)).astype(np.float64)


def test_inversion_reproduces_the_scene_from_synthesised_haze() -> None:
    clear = _scene()
    t = np.linspace(0.1, 1.0, clear.shape[1])[None, :, None] * np.ones((clear.shape[0], 1, 1))
    A = np.array([0.8, 0.85, 0.9])
    hazy = add_haze(clear, t, A)
    np.testing.assert_allclose(remove_haze(hazy, t, A), clear, atol=1e-12)
    # the same code on torch tensors, (B, 3, H, W) layout
    ct = torch.from_numpy(clear).permute(2, 0, 1)[None]
    tt = torch.from_numpy(t).permute(2, 0, 1)[None]
    At = torch.tensor(A).view(1, 3, 1, 1)
    torch.testing.assert_close(remove_haze(add_haze(ct, tt, At), tt, At), ct, atol=1e-12, rtol=0)


def test_clear_image_with_unit_transmission_is_unchanged() -> None:
    clear = _scene()
    assert np.array_equal(remove_haze(clear, np.ones_like(clear[..., :1]), np.array([0.7, 0.7, 0.7])), clear)


def test_transmission_floor_bounds_amplification() -> None:
    logit = torch.linspace(-50, 50, 101)
    t = transmission_from_logit(logit, t_min=0.1)
    assert float(t.min()) >= 0.1 and float(t.max()) <= 1.0
    # a difference d in the input becomes at most d / t_min in the output
    A = torch.tensor(0.5)
    i1, i2 = torch.tensor(0.50), torch.tensor(0.51)
    gain = (remove_haze(i2, t, A) - remove_haze(i1, t, A)).abs().max() / 0.01
    assert float(gain) <= 1 / 0.1 + 1e-4
    assert float(gain) == pytest.approx(10.0, rel=1e-3)  # the floor is reached at very negative logits


def test_airlight_rule_agrees_between_torch_and_numpy() -> None:
    def both(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a_np = atmospheric_light(rgb, dark_channel(rgb, 15), 0.01)
        a_t = haze.estimate_airlight(torch.from_numpy(rgb).permute(2, 0, 1)[None], 15, 0.01)[0].numpy()
        return a_t, a_np

    rgb = make_photo(80, 96, seed=3).astype(np.float32) / 255.0
    a_t, a_np = both(rgb)
    np.testing.assert_allclose(a_t, a_np, atol=5e-3)  # only the border rule differs (see prior_torch.py)
    rgb[10:40, 50:90] = [0.9, 0.92, 0.95]  # a bright hazy region wider than the window
    a_t, a_np = both(rgb)
    np.testing.assert_allclose(a_t, [0.9, 0.92, 0.95], atol=1e-6)
    np.testing.assert_allclose(a_np, [0.9, 0.92, 0.95], atol=1e-6)


def test_dcp_transmission_target_matches_the_numpy_baseline() -> None:
    rgb = make_photo(64, 80, seed=1).astype(np.float32) / 255.0
    t_np, A_np = dcp_transmission(rgb)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    t_t = haze.dcp_transmission(x, torch.from_numpy(A_np)[None])[0, 0].numpy()
    # borders differ (OpenCV reflects with the edge pixel, torch without); the interior agrees
    np.testing.assert_allclose(t_t[12:-12, 12:-12], np.clip(t_np, 0, 1)[12:-12, 12:-12], atol=0.03)


def test_priors_are_pure_and_respond_to_what_they_measure() -> None:
    flat_t = torch.full((1, 1, 32, 32), 0.5)
    noisy_t = flat_t + 0.1 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    guide = torch.full((1, 3, 32, 32), 0.5)
    assert float(losses.edge_aware_smoothness(flat_t, guide)) == 0.0
    assert float(losses.edge_aware_smoothness(noisy_t, guide)) > 0.05
    # a step in t is cheap where the hazy image has an edge at the same place
    step_t = torch.cat([torch.full((1, 1, 32, 16), 0.2), torch.full((1, 1, 32, 16), 0.9)], dim=3)
    step_img = torch.cat([torch.zeros(1, 3, 32, 16), torch.ones(1, 3, 32, 16)], dim=3)
    assert float(losses.edge_aware_smoothness(step_t, step_img)) < 0.01 * float(losses.edge_aware_smoothness(step_t, guide))
    hazy_like = torch.full((1, 3, 32, 32), 0.6)
    assert float(losses.dark_channel_loss(hazy_like)) == pytest.approx(0.6)
    assert float(losses.dark_channel_loss(torch.rand(1, 3, 32, 32) * torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1))) == 0.0
    assert float(losses.transmission_fit_loss(flat_t, flat_t + 0.25)) == pytest.approx(0.25)


def test_distillation_costs_an_error_of_t_more_where_the_haze_is_thick() -> None:
    """The student's loss (odcr distill): zero on the teacher's own t; the same error
    of t costs the same in t everywhere, but more in the image where t is small, as it does in the
    output; the teacher gets no gradient."""
    photo = torch.full((1, 3, 16, 16), 0.7)
    airlight = torch.full((1, 3, 1, 1), 0.9)
    thick, thin = torch.full((1, 1, 16, 16), 0.3), torch.full((1, 1, 16, 16), 0.8)
    lt, lj = losses.distillation_loss(thick, thick, photo, airlight)
    assert float(lt) == 0.0 and float(lj) == 0.0
    lt_thick, lj_thick = losses.distillation_loss(thick + 0.05, thick, photo, airlight)
    lt_thin, lj_thin = losses.distillation_loss(thin + 0.05, thin, photo, airlight)
    assert float(lt_thick) == pytest.approx(float(lt_thin)) == pytest.approx(0.05)
    assert float(lj_thick) > 3 * float(lj_thin)  # |I - A| dt / t^2: (0.8/0.3)^2 ~ 7 before clipping
    teacher = thick.clone().requires_grad_(True)
    student = (thick + 0.05).requires_grad_(True)
    sum(losses.distillation_loss(student, teacher, photo, airlight)).backward()
    assert teacher.grad is None and student.grad is not None


def test_channel_weight_scale_sharpens_the_printed_flat_softmax() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(64, 256, generator=g), dim=-1)
    theta = torch.randn(256, generator=g) / 16
    log_d = float(np.log(256))
    printed = float(losses.weight_entropy(losses.channel_weights(theta, x, "printed")))
    scaled = float(losses.weight_entropy(losses.channel_weights(theta, x, "std")))
    assert printed == pytest.approx(log_d, abs=1e-3)  # the paper's form: exactly flat in practice
    assert scaled < log_d - 0.5
    w = losses.channel_weights(theta, x, "max", temperature=0.1)
    torch.testing.assert_close(w.sum(-1), torch.ones(64))
    with pytest.raises(ValueError, match="scale"):
        losses.channel_weights(theta, x, "bogus")


def _scattering(**kw) -> GeneratorConfig:
    return GeneratorConfig(ngf=8, n_blocks=1, output="scattering", **kw)


def test_scattering_generator_shapes_and_identity_at_unit_transmission() -> None:
    torch.manual_seed(0)
    g = ResnetGenerator(_scattering(learned_airlight=True)).eval()
    x = torch.rand(2, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        raw, out = g.raw_outputs(x), g(x)
    assert set(raw) == {"t", "airlight_correction"} == set(output_names(g.config.output, g.config.t_prior))
    assert raw["t"].shape == (2, 1, 32, 40) and raw["airlight_correction"].shape == (2, 3)
    assert float(raw["t"].min()) >= 0.1
    assert out.shape == x.shape and float(out.abs().max()) <= 1.0
    one = {"t": torch.ones(2, 1, 32, 40), "airlight_correction": torch.zeros(2, 3)}
    torch.testing.assert_close(g.compose(x, one), x)
    # the trunk is CUT's: every NCE layer and its width are the direct generator's
    direct = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=1))
    assert g.layer_channels() == direct.layer_channels()


def test_dcp_prior_at_zero_residual_is_the_dark_channel_prior() -> None:
    """With t_prior="dcp" an untrained network starts at the classical estimate (in training, in
    torch) and the numpy readout of inference computes the same t from the same outputs."""
    g = ResnetGenerator(_scattering(t_prior="dcp")).eval()
    assert output_names(g.config.output, g.config.t_prior) == ("t_residual", "airlight_correction")
    rgb = make_photo(64, 80, seed=4).astype(np.float32) / 255.0
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None] * 2 - 1
    zero = {"t_residual": torch.zeros(1, 1, 64, 80), "airlight_correction": torch.zeros(1, 3)}
    t_torch = g.haze_estimate(x, zero)["t"][0, 0].numpy()
    t_dcp, _ = dcp_transmission(rgb)
    inner = (slice(12, -12), slice(12, -12))  # the two border rules differ (see prior_torch.py)
    expected = np.clip(t_dcp, 0.1 + 0.009, 1.0 - 0.009)[inner]
    np.testing.assert_allclose(t_torch[inner], expected, atol=0.03)
    readout = readout_for(g.config.to_dict())
    t_numpy = readout.estimate(rgb, {k: v.numpy() for k, v in zero.items()})[0]
    np.testing.assert_allclose(t_numpy[inner], t_torch[inner], atol=0.03)
    # a positive residual means thinner haze than DCP says: t goes up everywhere
    up = readout.estimate(rgb, {"t_residual": np.ones((1, 1, 64, 80), np.float32), "airlight_correction": np.zeros((1, 3))})[0]
    assert (up >= t_numpy - 1e-6).all() and up.mean() > t_numpy.mean() + 0.05


def test_priors_need_the_scattering_output() -> None:
    with pytest.raises(ValueError, match="scattering"):
        ContrastiveModel(method_config("odcr", lambda_dcp=1.0), GeneratorConfig(ngf=8, n_blocks=1))
    m = method_config("odcr", lambda_dcp=10.0, dcp_warm_iters=100)
    assert prior_weight(m, 0) == 10.0 and prior_weight(m, 50) == 5.0 and prior_weight(m, 200) == 0.0
    assert prior_weight(method_config("odcr", lambda_dcp=2.0), 10_000) == 2.0


def test_warm_start_gradient_moves_t_towards_the_dcp_transmission() -> None:
    torch.manual_seed(0)
    method = method_config("odcr", lambda_gan=0.0, lambda_nce=0.0, lambda_idt=0.0, lambda_ce=0.0,
                           lambda_dcp=1.0, num_patches=16, num_clear_patches=16)
    model = ContrastiveModel(method, _scattering())
    hazy = torch.from_numpy(to_signed(make_photo(32, 32).astype(np.float32) / 255.0)).permute(2, 0, 1)[None]
    clear = torch.rand(1, 3, 32, 32) * 2 - 1
    opt = torch.optim.Adam(model.generator.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    first = None
    for it in range(30):
        state = model.translate(hazy, clear, flip=False)
        out = model.generator_objective(hazy, clear, state, rng, flip=False, iteration=it)
        first = float(out.terms["dcp"].detach()) if first is None else first
        opt.zero_grad()
        out.total.backward()
        opt.step()
    assert float(out.terms["dcp"].detach()) < 0.5 * first
    assert {"gan", "nce", "idt", "ce", "dcp", "w_entropy", "w_entropy_0"} <= set(out.terms)


def test_saved_scattering_generator_rebuilds_with_its_config(tmp_path) -> None:
    from odcr_cli.files.weights_io import infer_generator_config, load_generator, save_generator

    g = ResnetGenerator(_scattering(t_min=0.05, learned_airlight=True))
    save_generator(tmp_path / "s.safetensors", g)
    loaded = load_generator(tmp_path / "s.safetensors")
    assert loaded.generator.config == g.config
    g_dcp = ResnetGenerator(_scattering(t_prior="dcp"))
    save_generator(tmp_path / "d.safetensors", g_dcp)
    assert load_generator(tmp_path / "d.safetensors").generator.config.t_prior == "dcp"
    inferred = infer_generator_config(g.state_dict())  # a bare state_dict: the shape tells the kind
    assert inferred.output == "scattering" and inferred.learned_airlight
    assert infer_generator_config(ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=1)).state_dict()).output == "image"


def test_readout_for_config() -> None:
    assert isinstance(readout_for(None), ImageReadout)
    assert isinstance(readout_for({"ngf": 64}), ImageReadout)  # saved before output kinds existed
    r = readout_for({"output": "scattering", "t_min": 0.05})
    assert isinstance(r, ScatteringReadout) and r.t_min == 0.05 and not r.writes_image
    assert r.output_names == ("t", "airlight_correction")
    assert readout_for({"output": "scattering", "t_prior": "dcp"}).output_names == ("t_residual", "airlight_correction")


def test_upsampled_transmission_follows_the_photo_edges() -> None:
    h, w = 120, 160
    full = np.full((h, w, 3), 0.8, np.float32)
    full[:, 90:] = 0.2  # a depth edge at column 90
    t_true = np.where(np.arange(w)[None, :] < 90, 0.3, 0.9).astype(np.float32) * np.ones((h, 1), np.float32)
    small = t_true[::4, ::4].copy()
    up = upsample_transmission(small, full)
    assert up.shape == (h, w)
    bilinear_err = np.abs(np.repeat(np.repeat(small, 4, 0), 4, 1) - t_true)[:, 84:96].mean()
    assert np.abs(up - t_true)[:, 84:96].mean() <= bilinear_err + 1e-6
    assert np.abs(up - t_true)[:, :70].max() < 0.02 and np.abs(up - t_true)[:, 110:].max() < 0.02


def test_dcp_on_a_reduced_copy_keeps_full_resolution() -> None:
    rgb = make_photo(200, 300).astype(np.float32) / 255.0
    out = dehaze_dcp(rgb, max_side=64)
    assert out.shape == rgb.shape and out.dtype == np.float32
    full = dehaze_dcp(rgb)
    # the same algorithm estimated on a smaller copy: nearer the classical result than the input is
    assert np.abs(out - full).mean() < np.abs(rgb - full).mean()


def test_the_pipeline_runs_any_network_on_the_framed_small_copy() -> None:
    """The method's one pipeline with a network that answers a zero residual: the network is given
    the photo's small copy framed by the margin, and the t it estimates is the dark channel prior's
    of that copy; the strength rule scales the haze removed; J and t come back at full resolution."""
    rgb = make_photo(300, 400).astype(np.float32) / 255.0
    seen = []

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(x)
        return {"t_residual": np.zeros((1, 1) + x.shape[2:], np.float32), "airlight_correction": np.zeros((1, 3))}

    readout = ScatteringReadout(t_prior="dcp")
    done = pipeline.dehaze(rgb, run, readout, side=200, margin=16)
    assert seen[0].shape == (1, 3, 184, 232)  # 150 x 200 framed by 16 px, padded to a multiple of 4
    np.testing.assert_array_equal(seen[0], pipeline.network_input(rgb, 200, 16))
    t_dcp, airlight = dcp_transmission(shrink_to(rgb, 200))
    inside = (t_dcp > 0.12) & (t_dcp < 0.98)  # outside, the logit's clamp holds t off the ends
    assert inside.mean() > 0.5 and np.abs(done.haze.t_small - t_dcp)[inside].max() < 1e-4
    np.testing.assert_allclose(done.haze.airlight, airlight, atol=1e-6)
    assert done.image.shape == rgb.shape and done.t.shape == rgb.shape[:2] and done.t.min() >= readout.t_min
    half = pipeline.estimate(rgb, run, readout, side=200, margin=16, strength=0.5)
    np.testing.assert_allclose(half.t_small, 1.0 - 0.5 * (1.0 - done.haze.t_small), atol=1e-6)


# --- inference and export ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def scattering_weights(tmp_path_factory):
    from odcr_cli.files.weights_io import save_generator

    torch.manual_seed(0)
    g = ResnetGenerator(_scattering(learned_airlight=True, t_prior="dcp"))
    with torch.no_grad():  # a residual that varies visibly, not the init's ~0
        g.model[-1].weight.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("scat") / "scattering.safetensors"
    save_generator(path, g)
    return path


def test_scattering_dehazer_runs_the_network_on_a_reduced_copy(scattering_weights) -> None:
    from odcr_cli.engine.dehazer import Dehazer

    d = Dehazer(weights=str(scattering_weights), backend="torch", device="cpu", max_side=64, tile=32)
    photo = make_photo(150, 200)
    out, plan = d.dehaze_with_record(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert plan.mode == "fast" and max(plan.net_size) == 64 and plan.tile is None  # never tiled
    assert d.describe()["output"] == "scattering"
    # a photo no larger than max_side is inverted with the network's own t, at full resolution
    small = make_photo(48, 60)
    out, plan = d.dehaze_with_record(small)
    assert out.shape == small.shape and plan.mode == "whole"
    # the default side is the scattering one, on every device
    from odcr_cli.haze.constants import MODEL_SIDE
    assert Dehazer(weights=str(scattering_weights), backend="torch", device="cpu").max_side == MODEL_SIDE


def test_a_model_that_records_its_side_runs_there_unless_told(tmp_path) -> None:
    """A student distilled to run at a smaller side records it (``inference_side``): `odcr dehaze`
    runs it there by default, in PyTorch and in its ONNX export alike, and --max-side still wins."""
    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.files.weights_io import load_generator, save_generator
    from odcr_cli.tasks.export.export import export_onnx

    torch.manual_seed(0)
    student = ResnetGenerator(_scattering(t_prior="dcp", inference_side=96))
    # saved with the metadata of the run it came from, whose config says nothing of a side: the
    # generator's own config is what the file records
    stale = load_generator(save_generator(tmp_path / "run.safetensors", ResnetGenerator(_scattering(t_prior="dcp")))).metadata
    path = save_generator(tmp_path / "student.safetensors", student, stale)
    assert load_generator(path).generator.config.inference_side == 96
    export_onnx(path, tmp_path / "student.onnx")
    for d in (Dehazer(weights=str(path), backend="torch", device="cpu"),
              Dehazer(onnx_path=str(tmp_path / "student.onnx"), device="cpu")):
        assert d.max_side == 96
        _, plan = d.dehaze_with_record(make_photo(150, 200))
        assert max(plan.net_size) == 96
    assert Dehazer(weights=str(path), backend="torch", device="cpu", max_side=64).max_side == 64
    with pytest.raises(ValueError, match="inference_side"):
        _scattering(inference_side=-1)


def test_scattering_output_keeps_the_photos_detail(tmp_path) -> None:
    """J = (I - A)/t + A: where the photo is flat fog at the airlight nothing can be painted in,
    whatever the network's t; elsewhere J is an affine map of the photo with a smooth gain."""
    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.files.weights_io import save_generator

    torch.manual_seed(1)
    g = ResnetGenerator(_scattering(t_prior="dcp"))
    with torch.no_grad():
        g.model[-1].weight.normal_(0, 0.2)  # a wildly varying residual
    save_generator(tmp_path / "g.safetensors", g)
    d = Dehazer(weights=str(tmp_path / "g.safetensors"), backend="torch", device="cpu", max_side=64)
    fog = np.full((160, 160, 3), 170, np.uint8)
    assert np.array_equal(d.dehaze(fog), fog)


def test_scattering_export_and_onnx_backend_match_torch(scattering_weights, tmp_path) -> None:
    import onnx

    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.tasks.export.export import export_onnx

    out = tmp_path / "s.onnx"
    report = export_onnx(scattering_weights, out, check_sizes=[(64, 80), (61, 77)])
    assert report.passed and out.is_file()
    model = onnx.load(str(out))
    assert [o.name for o in model.graph.output] == ["t_residual", "airlight_correction"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["output_kind"] == "scattering"
    photo = make_photo(150, 200, seed=2)
    ref = Dehazer(weights=str(scattering_weights), backend="torch", device="cpu", max_side=96).dehaze(photo)
    got = Dehazer(backend="onnx", onnx_path=str(out), device="cpu", max_side=96).dehaze(photo)
    assert np.abs(ref.astype(int) - got.astype(int)).max() <= 1
