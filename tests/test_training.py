"""Training: end-to-end runs of every method, exact resume, checkpoints, errors, DDP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from odcr_cli.cli.app import app
from odcr_cli.core.configs import GeneratorConfig, method_config
from odcr_cli.errors import TrainingDiverged, TrainingError
from odcr_cli.files.weights_io import load_generator
from odcr_cli.tasks.train import training
from odcr_cli.tasks.train.run_folder import RunFolder
from odcr_cli.tasks.train.state import TrainingState, WeightAverage, lr_factor
from odcr_cli.tasks.train.training import TrainConfig, run_iterations, train, train_step

TINY = ["--ngf", "4", "--n-blocks", "1", "--crop", "32", "--num-patches", "16", "--num-clear-patches", "16"]


def _photo(rng: np.random.Generator, w: int, h: int, haze: float) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 7.0), np.cos(yy / 5.0), np.sin((xx + yy) / 11.0)], -1) * 0.5 + 0.5
    img = (1 - haze) * base + haze * 0.8 + rng.normal(0, 0.02, base.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


@pytest.fixture()
def pools(tmp_path: Path) -> tuple[Path, Path]:
    """Small folders of 'photos' in awkward sizes and modes, plus one unreadable file."""
    rng = np.random.default_rng(0)
    hazy, clear = tmp_path / "hazy", tmp_path / "clear"
    (hazy / "sub").mkdir(parents=True)
    clear.mkdir()
    _photo(rng, 60, 45, 0.6).save(hazy / "a.jpg")
    _photo(rng, 20, 30, 0.5).save(hazy / "tiny.png")                 # smaller than the crop
    _photo(rng, 50, 70, 0.7).convert("L").save(hazy / "sub" / "grey.png")
    (hazy / "broken.jpg").write_bytes(b"this is not a jpeg")
    _photo(rng, 64, 48, 0.0).save(clear / "c1.png")
    _photo(rng, 40, 80, 0.1).convert("P").save(clear / "c2.png")
    return hazy, clear


def _cli_train(hazy: Path, clear: Path, out: Path, *extra: str) -> object:
    """A tiny run; on the paper's recipe unless ``extra`` names another (the tests were sized for it)."""
    recipe = () if "--recipe" in extra else ("--recipe", "paper")
    args = ["train", "--hazy", str(hazy), "--clear", str(clear), "--out", str(out), *TINY, "--log-every", "1",
            "--sample-every", "2", *recipe, *extra]
    return CliRunner().invoke(app, args)


def test_plain_train_uses_the_recommended_recipe_and_flags_override_it(pools, tmp_path) -> None:
    """`odcr train --hazy D --clear D` trains the bundled default's recipe (a scattering model
    refining the DCP prior), not the paper's full-size generator; typed flags and --config win."""
    hazy, clear = pools
    res = _cli_train(hazy, clear, tmp_path / "plain", "--recipe", "scattering", "--iters", "1")
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["generator"]["output"] == "scattering" and config["generator"]["ngf"] == 4  # TINY's --ngf 4 wins
    assert (config["method"]["lambda_dcp"], config["method"]["lambda_tv"], config["method"]["lambda_synth"],
            config["method"]["synth_beta"], config["train"]["load_size"]) == (10.0, 5.0, 3.0, [0.0, 2.0], 256)
    toml = tmp_path / "mine.toml"
    toml.write_text("lambda-tv = 2.5\n")
    res = CliRunner().invoke(app, ["train", "--hazy", str(hazy), "--clear", str(clear), "--out", str(tmp_path / "cfg"),
                                   *TINY, "--iters", "1", "--config", str(toml)])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "cfg" / "config.json").read_text())
    assert config["generator"]["output"] == "scattering" and config["method"]["lambda_tv"] == 2.5
    paper = _cli_train(hazy, clear, tmp_path / "paper", "--iters", "1")
    assert paper.exit_code == 0, paper.output
    paper_config = json.loads((tmp_path / "paper" / "config.json").read_text())
    assert paper_config["generator"]["output"] == "image" and paper_config["method"]["lambda_synth"] == 0.0


@pytest.mark.parametrize("method", ["odcr", "cut", "fastcut"])
def test_end_to_end_run_leaves_everything_behind(pools, tmp_path, method) -> None:
    hazy, clear = pools
    out = tmp_path / f"run_{method}"
    res = _cli_train(hazy, clear, out, "--method", method, "--iters", "3")
    assert res.exit_code == 0, res.output
    assert "broken.jpg" in res.output  # unreadable files are reported, not fatal
    assert (out / "checkpoints" / "ckpt_00000003.pt").is_file()
    assert (out / "samples" / "iter_00000002.jpg").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"]["name"] == method and cfg["train"]["iters"] == 3
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [rec for rec in lines if "G_total" in rec]
    assert [rec["iter"] for rec in losses] == [1, 2, 3]
    assert all(np.isfinite(rec["G_gan"]) and np.isfinite(rec["D"]) and np.isfinite(rec["G_nce"]) for rec in losses)
    if method == "odcr":
        assert "G_ce" in losses[0] and "G_w_entropy" in losses[0]
    gen = load_generator(out / "generator.safetensors")
    assert gen.metadata["method"] == method and gen.generator.config.ngf == 4
    page = (out / "report.html").read_text()   # rewritten at the last checkpoint (browser: test_report.py)
    assert f"report: {out / 'report.html'}" in res.output
    assert "iteration 3 of 3" in page and "G_nce" in page and "samples/iter_00000002.jpg" in page


def test_resume_follows_the_same_trajectory(pools, tmp_path) -> None:
    hazy, clear = pools
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _cli_train(hazy, clear, straight, "--iters", "4").exit_code == 0
    assert _cli_train(hazy, clear, split, "--iters", "4", "--until", "2").exit_code == 0
    assert not (split / "checkpoints" / "ckpt_00000004.pt").exists()
    res = _cli_train(hazy, clear, split, "--iters", "4", "--resume")
    assert res.exit_code == 0, res.output
    a = load_file(straight / "generator.safetensors")
    b = load_file(split / "generator.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(straight / "checkpoints" / "ckpt_00000004.pt", weights_only=True)
    sb = torch.load(split / "checkpoints" / "ckpt_00000004.pt", weights_only=True)
    assert all(torch.equal(sa["generator"][k], sb["generator"][k]) for k in sa["generator"])  # raw and EMA
    assert all(torch.equal(sa["head"][k], sb["head"][k]) for k in sa["head"])  # Stiefel matrices too
    assert all(torch.equal(sa["discriminator"][k], sb["discriminator"][k]) for k in sa["discriminator"])


def test_resume_extends_the_budget_and_skips_a_damaged_checkpoint(pools, tmp_path) -> None:
    hazy, clear = pools
    out = tmp_path / "run"
    assert _cli_train(hazy, clear, out, "--iters", "4", "--checkpoint-every", "2", "--keep-checkpoints", "5").exit_code == 0
    (out / "checkpoints" / "ckpt_00000004.pt").write_bytes(b"truncated")
    res = _cli_train(hazy, clear, out, "--iters", "5", "--resume")
    assert res.exit_code == 0, res.output
    assert "unreadable" in res.output and "resumed from iteration 2" in res.output
    assert (out / "checkpoints" / "ckpt_00000005.pt").is_file()


def test_only_the_last_k_checkpoints_are_kept(pools, tmp_path) -> None:
    hazy, clear = pools
    out = tmp_path / "run"
    assert _cli_train(hazy, clear, out, "--iters", "4", "--checkpoint-every", "1", "--keep-checkpoints", "2").exit_code == 0
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["ckpt_00000003.pt", "ckpt_00000004.pt",
                     "generator_00000003.safetensors", "generator_00000004.safetensors"]
    assert not [p for p in out.rglob("*.tmp*")]  # no temporary files left behind


def test_refuses_to_clobber_an_existing_run(pools, tmp_path) -> None:
    hazy, clear = pools
    out = tmp_path / "run"
    assert _cli_train(hazy, clear, out, "--iters", "1").exit_code == 0
    res = _cli_train(hazy, clear, out, "--iters", "1")
    assert res.exit_code == 2 and "--resume" in res.output  # refused before it starts: a usage error


def test_single_hazy_image_is_accepted(pools, tmp_path) -> None:
    hazy, clear = pools
    res = _cli_train(hazy / "a.jpg", clear, tmp_path / "single", "--iters", "2")
    assert res.exit_code == 0, res.output
    assert "single-image" in res.output


def test_bad_arguments_are_one_line_errors(pools, tmp_path) -> None:
    hazy, clear = pools
    res = _cli_train(hazy, clear, tmp_path / "r", "--method", "cyclegan")
    assert res.exit_code == 2 and "unknown method" in res.output
    res = _cli_train(tmp_path / "missing", clear, tmp_path / "r2")
    assert res.exit_code == 2 and "no such file" in res.output


@pytest.mark.parametrize("flag, value, says", [("--iters", "0", "--iters 0: must be at least 1"),
                                               ("--batch", "0", "--batch 0: must be at least 1"),
                                               ("--crop", "30", "--crop 30: must be a multiple of 4")])
def test_a_bad_size_option_is_named_alone(pools, tmp_path, flag, value, says) -> None:
    hazy, clear = pools
    res = _cli_train(hazy, clear, tmp_path / "r", flag, value)
    assert res.exit_code == 2 and says in res.output
    assert not any(other in res.output for other in ("--iters", "--batch", "--crop") if other != flag)


def _tiny_state(out: Path, **config: object) -> TrainingState:
    """The CPU training state of the tiny CUT network on 32x32 crops (no data: the test hands it batches)."""
    cfg = TrainConfig(hazy="", clear="", out=str(out), crop=32, **config)
    return TrainingState(cfg, method_config("cut", num_patches=16), GeneratorConfig(ngf=4, n_blocks=1), torch.device("cpu"))


def _crops(value: float | None = None) -> torch.Tensor:
    """A (1, 3, 32, 32) batch in [-1, 1], or filled with ``value`` (NaN: data that poisons the losses)."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return x if value is None else torch.full_like(x, value)


def test_non_finite_loss_stops_with_iteration_and_checkpoint(tmp_path) -> None:
    state = _tiny_state(tmp_path, iters=4, checkpoint_every=1, sample_every=100)
    folder = RunFolder(tmp_path)

    def batches(iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        # the third iteration (index 2) gets a NaN hazy batch: its losses are NaN
        return (_crops(float("nan")) if iteration == 2 else _crops()), _crops()

    with pytest.raises(TrainingDiverged, match=r"iteration 3.*ckpt_00000002\.pt"):
        run_iterations(state, folder, batches, fixed=_crops())
    # the run stopped before writing anything of the bad iteration: checkpoint 2 is the last, and finite
    assert [it for it, _ in folder.checkpoints()] == [1, 2]
    saved = load_file(tmp_path / "generator.safetensors")
    state = torch.load(tmp_path / "checkpoints" / "ckpt_00000002.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["generator"].values())
    assert all(torch.equal(saved[k], v) for k, v in state["generator_ema"]["module"].items())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --device cuda is usable here")
def test_unusable_gpu_is_an_error(pools, tmp_path) -> None:
    hazy, clear = pools
    cfg = TrainConfig(hazy=str(hazy), clear=str(clear), out=str(tmp_path / "gpu"), iters=1, crop=32, device="cuda")
    with pytest.raises(TrainingError, match="CUDA"):
        train(cfg, method_config("cut"), GeneratorConfig(ngf=4, n_blocks=1))


def test_schedule_shape_is_constant_then_linear_decay() -> None:
    f = [lr_factor(i, 10, 0.5) for i in range(10)]
    assert f[:4] == [1.0] * 4
    assert all(a > b for a, b in zip(f[4:], f[5:])) and f[-1] > 0


@pytest.mark.slow
def test_ddp_two_gloo_ranks_stay_identical(pools, tmp_path) -> None:
    hazy, clear = pools
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "odcr_cli",
           "train", "--hazy", str(hazy), "--clear", str(clear), "--out", str(out), *TINY, "--iters", "3",
           "--checkpoint-every", "1", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    errors = [line for line in proc.stderr.splitlines() if "rror" in line or "terminate" in line or "Abort" in line]
    assert proc.returncode == 0, "\n".join(errors[:20]) + "\n" + proc.stderr[-1500:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    syncs = [r for r in records if "ranks_in_sync" in r]
    assert [r["iter"] for r in syncs] == [1, 2, 3]
    assert all(r["world_size"] == 2 and r["ranks_in_sync"] for r in syncs)


def test_paired_validation_is_logged(pools, tmp_path) -> None:
    hazy, clear = pools
    val_h, val_g = tmp_path / "val_hazy", tmp_path / "val_gt"
    val_h.mkdir()
    val_g.mkdir()
    rng = np.random.default_rng(3)
    for name in ("x1", "x2"):
        _photo(rng, 36, 28, 0.6).save(val_h / f"{name}.png")
        _photo(rng, 36, 28, 0.0).save(val_g / f"{name}.png")
    out = tmp_path / "val_run"
    res = _cli_train(hazy, clear, out, "--iters", "2", "--val-hazy", str(val_h), "--val-gt", str(val_g),
                     "--val-every", "1")
    assert res.exit_code == 0, res.output
    vals = [json.loads(line)["val"] for line in (out / "log.jsonl").read_text().splitlines() if '"val"' in line]
    assert len(vals) == 2 and all(v["n"] == 2 and 0 < v["ssim"] <= 1 and v["psnr"] > 0 for v in vals)
    assert "validation at 2: PSNR" in res.output
    assert "validation PSNR" in (out / "report.html").read_text()


def test_synthetic_hazy_set_joins_the_hazy_pool_and_its_sources_leave_the_clear_pool(pools, tmp_path) -> None:
    hazy, clear = pools
    synth = tmp_path / "synth"
    assert CliRunner().invoke(app, ["synth", str(clear), "-o", str(synth), "--fraction", "0.5"]).exit_code == 0
    out = tmp_path / "run"
    args = ["train", "--hazy", str(hazy), "--hazy", str(synth / "hazy"), "--clear", str(clear),
            "--exclude-clear", str(synth / "sources.txt"), "--out", str(out), *TINY, "--iters", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "left 1 clear image(s) out" in res.output
    cfg = json.loads((out / "config.json").read_text())["train"]
    assert cfg["hazy"] == [str(hazy), str(synth / "hazy")] and cfg["exclude_clear"] == [str(synth / "sources.txt")]


def test_weight_average_follows_its_closed_form() -> None:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = WeightAverage(net, decay=0.5)
    expected = 0.0
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            net.weight.fill_(value)
        ema.update(net)
        d = min(0.5, (1 + n) / (10 + n))  # ramp: 0.1, 0.18..., then capped at 0.5
        expected = d * expected + (1 - d) * value
        assert torch.allclose(ema.module.weight, torch.full((1, 2), expected))
    assert not ema.module.weight.requires_grad
    with pytest.raises(ValueError):
        WeightAverage(net, decay=1.0)


@pytest.mark.parametrize("decay", ["0.999", "0"])
def test_saved_generator_is_the_weight_average_unless_disabled(pools, tmp_path, decay) -> None:
    hazy, clear = pools
    out = tmp_path / "run"
    assert _cli_train(hazy, clear, out, "--iters", "3", "--ema-decay", decay).exit_code == 0
    saved = load_file(out / "generator.safetensors")
    state = torch.load(out / "checkpoints" / "ckpt_00000003.pt", weights_only=True)
    raw = state["generator"]
    if decay == "0":
        assert "generator_ema" not in state and all(torch.equal(saved[k], raw[k]) for k in raw)
        assert load_generator(out / "generator.safetensors").metadata["weights"] == "raw generator weights"
    else:
        ema = state["generator_ema"]["module"]
        assert all(torch.equal(saved[k], ema[k]) for k in ema)
        assert not all(torch.equal(saved[k], raw[k]) for k in raw)
        assert "EMA" in load_generator(out / "generator.safetensors").metadata["weights"]
    # a checkpoint passed as --weights gives the same generator as the saved safetensors
    from_ckpt = load_generator(out / "checkpoints" / "ckpt_00000003.pt").generator.state_dict()
    assert all(torch.equal(saved[k], from_ckpt[k]) for k in saved)


def test_max_minutes_stops_with_a_resumable_checkpoint(pools, tmp_path) -> None:
    hazy, clear = pools
    out = tmp_path / "timed"
    res = _cli_train(hazy, clear, out, "--iters", "50", "--max-minutes", "0", "--checkpoint-every", "100")
    assert res.exit_code == 0, res.output
    assert "--max-minutes 0 reached" in res.output and "iteration 1 of 50" in res.output
    assert (out / "checkpoints" / "ckpt_00000001.pt").is_file() and (out / "generator.safetensors").is_file()
    res = _cli_train(hazy, clear, out, "--iters", "50", "--until", "3", "--resume")
    assert res.exit_code == 0, res.output
    assert "iteration 3 of 50" in res.output


def test_deferred_finite_check_names_the_first_bad_iteration(tmp_path) -> None:
    state = _tiny_state(tmp_path, iters=10)
    state.defer_finite_checks = True  # the GPU behaviour: no read-back inside a step
    train_step(state, _crops(), _crops())
    state.check_finite()
    for _ in range(3):
        train_step(state, _crops(float("inf")), _crops())  # iterations 2 to 4: no exception inside the steps
    with pytest.raises(TrainingDiverged, match="iteration 2$"):
        state.check_finite()


def test_synthetic_batches_are_a_function_of_the_sample_and_follow_the_scattering_model(pools) -> None:
    from odcr_cli.imaging.haze_synthesis import SynthConfig
    from odcr_cli.tasks.train.data import CropSpec, ImageFolder, UnpairedSampler, gather_images

    hazy, clear = pools
    spec = CropSpec(crop=32, load_size=40)
    sampler = UnpairedSampler(ImageFolder(gather_images([hazy])[0], spec), ImageFolder(gather_images([clear])[0], spec),
                              seed=3, synthetic=SynthConfig())
    first, again = sampler.batch(5, 2), sampler.batch(5, 2)
    assert len(first) == 4 and all(torch.equal(a, b) for a, b in zip(first, again))
    _, clear_crops, syn, t = first
    assert syn.shape == clear_crops.shape and t.shape == (2, 1, 32, 32)
    assert float(t.min()) > 0 and float(t.max()) <= 1
    # I = J t + A (1 - t): where t < 1 the hazy crop is pulled towards one airlight colour
    j, i = (clear_crops + 1) / 2, (syn + 1) / 2
    a = (i - j * t) / (1 - t).clamp_min(1e-3)
    far = (t < 0.5).expand_as(a)
    assert far.any() and float(a[far].std()) < 0.05


def test_synth_beta_sets_how_thick_the_synthetic_haze_is(pools) -> None:
    """--synth-beta 0,0 gives haze-free synthetic crops (t = 1: the clear crop itself); a range
    of thick haze gives a far end near exp(-beta)."""
    from odcr_cli.core.configs import method_config
    from odcr_cli.imaging.haze_synthesis import SynthConfig
    from odcr_cli.tasks.train.data import CropSpec, ImageFolder, UnpairedSampler, gather_images

    hazy, clear = pools
    spec = CropSpec(crop=32, load_size=40)
    folders = ImageFolder(gather_images([hazy])[0], spec), ImageFolder(gather_images([clear])[0], spec)
    beta = method_config("odcr", synth_beta=(0.0, 0.0)).synth_beta
    _, clear_crops, syn, t = UnpairedSampler(*folders, seed=3, synthetic=SynthConfig(beta=beta)).batch(5, 2)
    assert torch.all(t == 1) and torch.allclose(syn, clear_crops, atol=1e-5)
    _, _, _, thick = UnpairedSampler(*folders, seed=3, synthetic=SynthConfig(beta=(4.0, 4.0))).batch(5, 2)
    assert float(thick.min()) == pytest.approx(math.exp(-4.0), rel=0.05)
    with pytest.raises(ValueError, match="synth-beta"):
        method_config("odcr", synth_beta=(3.0, 1.0))


@pytest.mark.parametrize("typed", ["0,2.5", "0:2.5"])
def test_synth_beta_is_typed_as_a_range(typed: str) -> None:
    """--synth-beta takes LO,HI and also LO:HI, the form odcr synth's --beta takes."""
    from odcr_cli.core.configs import MethodConfig, field_values, flag_fields, parameter_name

    given = {parameter_name(f): None for f in flag_fields(MethodConfig)} | {"synth_beta": typed}
    assert field_values(MethodConfig, given)["synth_beta"] == (0.0, 2.5)


def _short_scattering_runs(hazy: Path, clear: Path, tmp_path: Path, iters: int, term: str,
                           weight: str) -> tuple[Path, Path]:
    """Two small scattering runs, the same but for the training term ``term`` (``weight``, then 0):
    raw weights (no average), a warm start of 5 iterations. Returns their folders."""
    common = ("--iters", str(iters), "--output", "scattering", "--ema-decay", "0", "--ngf", "8", "--lambda-dcp", "10",
              "--dcp-warm-iters", "5")
    for name, w in (("with", weight), ("without", "0")):
        res = _cli_train(hazy, clear, tmp_path / name, *common, term, w)
        assert res.exit_code == 0, res.output
    return tmp_path / "with", tmp_path / "without"


def test_density_consistency_asks_for_the_first_answer_at_k_1_and_for_t_to_the_k_beyond() -> None:
    """The density term re-hazes the output with t**k: at k = 1 that is the input again, so the
    term is (nearly: J is clipped to [0, 1]) zero; at k = 2 or 1/2 an untrained network does not
    give t**k back. Its gradient reaches the network through the re-hazed image only."""
    from odcr_cli.core.methods import ContrastiveModel

    torch.manual_seed(0)
    model = ContrastiveModel(method_config("odcr", lambda_density=1.0),
                             GeneratorConfig(ngf=8, n_blocks=1, output="scattering", t_prior="dcp"))
    x = (torch.rand(2, 3, 48, 48) * 0.2 + 0.5) * 2 - 1
    est = model.generator.haze_estimate(x, model.generator.raw_outputs(x))

    def loss(k: float) -> torch.Tensor:
        return model.density_consistency_loss(x, est["t"], est["airlight"], torch.full((2, 1, 1, 1), k))

    same, thicker, thinner = (float(loss(k).detach()) for k in (1.0, 2.0, 0.5))
    assert same < 1e-3 and thicker > 10 * same and thinner > 10 * same
    t_grad = torch.autograd.grad(loss(2.0), [est["t"], *model.generator.parameters()], allow_unused=True)
    assert t_grad[0] is None and any(g is not None and float(g.abs().sum()) > 0 for g in t_grad[1:])
    with pytest.raises(ValueError, match="density-k"):
        method_config("odcr", density_k=(0.0, 2.0))


@pytest.mark.parametrize("term", ["--lambda-density", "--lambda-synth", "--lambda-tv"])
def test_a_transmission_term_on_the_image_output_is_refused_in_one_line(pools, tmp_path, term) -> None:
    """The paper's generator writes J and has no t: a term on t is a usage error, said before any
    photo is read, and nothing is written."""
    hazy, clear = pools
    res = _cli_train(hazy, clear, tmp_path / "run", "--iters", "2", term, "1")
    assert res.exit_code != 0 and "need --output scattering" in res.output
    assert not (tmp_path / "run" / "generator.safetensors").exists()


@pytest.mark.slow
def test_the_density_term_teaches_the_network_to_give_t_to_the_k_back(pools, tmp_path) -> None:
    """The density term is a regression on a target the network's first answer fixes: steps on it
    alone bring the network's t of its own output, re-hazed with t**k, to within a fraction of
    where it started (a large effect by design, unlike the difference between two short GAN runs,
    which is within what the CPU's floating-point path changes). A run with --lambda-density
    logs the term."""
    from odcr_cli.core.methods import ContrastiveModel
    from odcr_cli.haze.network_input import to_signed
    from tests.conftest import make_photo

    torch.manual_seed(0)
    model = ContrastiveModel(method_config("odcr"), GeneratorConfig(ngf=8, n_blocks=1, output="scattering",
                                                                     t_prior="dcp"))
    gen = model.generator
    x = torch.stack([torch.from_numpy(to_signed(make_photo(48, 48, seed=s).astype(np.float32) / 255)).permute(2, 0, 1)
                     for s in range(4)])
    k = torch.tensor([2.0, 0.5, 2.0, 0.5]).view(4, 1, 1, 1)
    with torch.no_grad():
        first = gen.haze_estimate(x, gen.raw_outputs(x))  # the first answer, held fixed
    opt = torch.optim.Adam(gen.parameters(), lr=2e-3)
    values = []
    for _ in range(150):
        loss = model.density_consistency_loss(x, first["t"], first["airlight"], k)
        values.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert values[-1] < 0.5 * values[0]  # 0.15 to 0.29 over four seeds, on AVX-512 and on AVX2 kernels

    hazy, clear = pools
    res = _cli_train(hazy, clear, tmp_path / "run", "--iters", "2", "--output", "scattering", "--lambda-density", "30")
    assert res.exit_code == 0, res.output
    assert "G_density=" in res.output


@pytest.mark.slow
def test_the_synthetic_transmission_term_teaches_how_thick_the_haze_is(pools, tmp_path) -> None:
    """A short run with --lambda-synth predicts the known t of unseen synthetic haze better than
    the same run without it (the network alone: raw weights, no average)."""
    from odcr_cli.haze.network_input import to_signed
    from odcr_cli.imaging.haze_synthesis import synthesize

    hazy, clear = pools
    rng = np.random.default_rng(11)
    scenes = [np.asarray(_photo(rng, 48, 48, 0.0), np.float32) / 255 for _ in range(4)]
    tests = [synthesize(s, np.random.default_rng(100 + k)) for k, s in enumerate(scenes)]

    def t_error(run: Path) -> float:
        gen = load_generator(run / "generator.safetensors").generator.eval()
        errs = []
        with torch.no_grad():
            for hz, t_true, _ in tests:
                x = torch.from_numpy(to_signed(hz).transpose(2, 0, 1)[None].copy())
                t = gen.haze_estimate(x, gen.raw_outputs(x))["t"][0, 0].numpy()
                errs.append(float(np.abs(t - t_true).mean()))
        return float(np.mean(errs))

    with_it, without = _short_scattering_runs(hazy, clear, tmp_path, 40, "--lambda-synth", "20")
    assert t_error(with_it) < 0.8 * t_error(without)


def test_ctrl_c_stops_after_the_iteration_with_a_checkpoint_and_says_how_to_resume(pools, tmp_path, monkeypatch) -> None:
    import signal

    hazy, clear = pools
    real_step, calls = train_step, []

    def step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - train_step's signature
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", step)
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)
    res = _cli_train(hazy, clear, out, "--iters", "6", "--checkpoint-every", "100")
    assert res.exit_code == 130, res.output
    assert "interrupted" in res.output and "--resume" in res.output
    assert RunFolder(out).latest_checkpoint().name == "ckpt_00000002.pt" and len(calls) == 2
    assert signal.getsignal(signal.SIGINT) == before
    monkeypatch.setattr(training, "train_step", real_step)
    res = _cli_train(hazy, clear, out, "--iters", "6", "--checkpoint-every", "100", "--resume")
    assert res.exit_code == 0 and "done: iteration 6 of 6" in res.output, res.output


def test_a_run_logged_to_a_pipe_prints_speed_eta_and_losses(pools, tmp_path) -> None:
    hazy, clear = pools
    res = _cli_train(hazy, clear, tmp_path / "run", "--iters", "3")  # CliRunner's output is not a terminal
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("iter ")]
    assert [ln.split(":")[0] for ln in lines] == ["iter 1/3", "iter 2/3", "iter 3/3"]
    assert all(" s/it, ETA " in ln and "G_total=" in ln and "D=" in ln for ln in lines)


def test_resume_keeps_the_runs_settings_applies_budget_changes_and_refuses_contradictions(pools, tmp_path) -> None:
    hazy, clear = pools
    out = tmp_path / "run"
    assert _cli_train(hazy, clear, out, "--iters", "2", "--lr", "0.001", "--seed", "5").exit_code == 0
    res = _cli_train(hazy, clear, out, "--iters", "3", "--resume")  # --lr and --seed not repeated
    assert res.exit_code == 0 and "iters = 3 (was 2)" in res.output, res.output
    effective = json.loads((out / "config.json").read_text())["train"]
    assert effective["lr"] == 0.001 and effective["seed"] == 5 and effective["iters"] == 3
    for flags, named in ((["--ngf", "16"], "--ngf"), (["--lr", "0.01"], "--lr"), (["--method", "cut"], "--method")):
        res = _cli_train(hazy, clear, out, "--iters", "4", "--resume", *flags)
        assert res.exit_code == 2 and named in res.output and "contradicts the run" in res.output, res.output


def test_a_run_is_reproduced_from_its_config_and_flags_override_it(pools, tmp_path) -> None:
    hazy, clear = pools
    first = tmp_path / "first"
    assert _cli_train(hazy, clear, first, "--iters", "2", "--lr", "0.001", "--output", "scattering",
                      "--lambda-dcp", "3").exit_code == 0
    res = CliRunner().invoke(app, ["train", "--config", str(first / "config.json"), "--out", str(tmp_path / "again"),
                                   "--iters", "1"])
    assert res.exit_code == 0, res.output
    a = json.loads((first / "config.json").read_text())
    b = json.loads((tmp_path / "again" / "config.json").read_text())
    assert b["train"]["iters"] == 1 and b["train"]["lr"] == 0.001 and b["train"]["crop"] == a["train"]["crop"]
    assert b["method"] == a["method"] and b["generator"] == a["generator"]
    toml = tmp_path / "recipe.toml"
    toml.write_text(f'hazy = ["{hazy}"]\nclear = ["{clear}"]\n[model]\nngf = 4\nn-blocks = 1\ncrop = 32\n'
                    'num-patches = 16\nnum-clear-patches = 16\n')
    res = CliRunner().invoke(app, ["train", "--config", str(toml), "--out", str(tmp_path / "t"), "--iters", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "t" / "config.json").read_text())["generator"]["ngf"] == 4
    bad = tmp_path / "bad.toml"
    bad.write_text("ngf = [unclosed")
    res = CliRunner().invoke(app, ["train", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not valid TOML" in res.output


def test_the_train_flags_are_the_settings_fields_with_a_help_text() -> None:
    """A setting is declared once, as a dataclass field with a help text: odcr train has exactly
    those flags (beside its own --config, --recipe, --init, --resume and RUN), each with that help."""
    import typer

    from odcr_cli.core.configs import MethodConfig, flag_fields, parameter_name

    params = {p.name: p for p in typer.main.get_command(app).commands["train"].params}
    fields = [f for cls in (TrainConfig, GeneratorConfig, MethodConfig) for f in flag_fields(cls)]
    assert set(params) - {"config", "recipe", "init", "resume", "run", "help"} == {parameter_name(f) for f in fields}
    for f in fields:
        assert params[parameter_name(f)].help.startswith(f.metadata["help"].removesuffix(".")), f.name
    assert params["method"].opts == ["--method"] and params["learned_airlight"].secondary_opts == ["--rule-airlight"]


def test_a_field_with_a_help_text_becomes_a_flag_with_its_type_and_default() -> None:
    from dataclasses import dataclass

    import typer

    from odcr_cli.cli.field_options import options, with_options
    from odcr_cli.core.configs import field_values, flag

    @dataclass(frozen=True)
    class Settings:
        lambda_new: float = flag(0.5, help="A new loss weight.")
        layers: tuple[int, ...] = flag((1, 2), help="Layer indices.")
        folder: str | None = flag(None, help="A folder.", path=True)
        switch: bool = flag(False, help="A switch.")
        hidden: int = 3

    seen: list[dict] = []

    def command(**settings: object) -> None:
        seen.append(field_values(Settings, settings))

    cli = typer.Typer()
    cli.command()(with_options(command, options(Settings, "Settings")))
    assert CliRunner().invoke(cli, []).exit_code == 0
    res = CliRunner().invoke(cli, ["--lambda-new", "2", "--layers", "4,5", "--folder", "x/", "--switch"])
    assert res.exit_code == 0, res.output
    assert seen == [{"lambda_new": 0.5, "layers": (1, 2), "switch": False},
                    {"lambda_new": 2.0, "layers": (4, 5), "folder": "x", "switch": True}]
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert "A new loss weight." in help_text and "--hidden" not in help_text
