"""Your own dehazer (issue 31): odcr train --init (a fine-tune that runs like the model it started
from), --resume RUN alone, and --config files whose paths and keys are checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from odcr_cli.cli.app import app
from odcr_cli.core.configs import GeneratorConfig
from odcr_cli.core.networks import ResnetGenerator
from odcr_cli.files.weights_io import load_generator, save_generator

SMALL = ["--crop", "32", "--num-patches", "16", "--num-clear-patches", "16", "--log-every", "1"]
TINY = ["--ngf", "4", "--n-blocks", "1", *SMALL]


def _photo(rng: np.random.Generator, w: int, h: int, haze: float) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 7.0), np.cos(yy / 5.0), np.sin((xx + yy) / 11.0)], -1) * 0.5 + 0.5
    img = (1 - haze) * base + haze * 0.8 + rng.normal(0, 0.02, base.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


@pytest.fixture()
def pools(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    hazy, clear = tmp_path / "data" / "hazy", tmp_path / "data" / "clear"
    hazy.mkdir(parents=True)
    clear.mkdir(parents=True)
    for i in range(2):
        _photo(rng, 64, 48, 0.6).save(hazy / f"h{i}.png")
        _photo(rng, 64, 48, 0.0).save(clear / f"c{i}.png")
    return hazy, clear


def _train(*args: str) -> object:
    return CliRunner().invoke(app, ["train", *args])


def test_resume_run_alone_continues_on_the_runs_own_data_from_any_folder(pools, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path / "data")
    res = _train("--hazy", "hazy", "--clear", "clear", "--out", "../run", "--iters", "2", *TINY)
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["hazy"] == [str(pools[0])] and saved["out"] == str(tmp_path / "run")  # absolute
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = _train("--resume", "../run", "--iters", "3")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["iters"] == 3
    assert (tmp_path / "run" / "checkpoints" / "ckpt_00000003.pt").is_file()
    res = _train("--resume", "../nothing")
    assert res.exit_code == 2 and "no run there" in res.output and len(res.output.strip().splitlines()) == 1
    res = _train("--resume", "../run", "--out", "../other")
    assert res.exit_code == 2 and "two run folders" in res.output


def test_a_config_reads_its_paths_from_its_own_folder_and_says_where_a_missing_one_came_from(pools, tmp_path,
                                                                                             monkeypatch) -> None:
    recipe = tmp_path / "data" / "recipe.toml"
    recipe.write_text('hazy = ["hazy"]\nclear = ["clear"]\nngf = 4\nn-blocks = 1\n')
    monkeypatch.chdir(tmp_path)  # not the config's folder
    res = _train("--config", str(recipe), "--out", "run", "--iters", "1", *SMALL)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["clear"] == [str(pools[1])]
    # a run's own config.json reproduces it from anywhere: its paths are absolute
    monkeypatch.chdir(pools[0])
    res = _train("--config", str(tmp_path / "run" / "config.json"), "--out", str(tmp_path / "again"))
    assert res.exit_code == 0, res.output
    missing = tmp_path / "data" / "missing.toml"
    missing.write_text('hazy = ["hazy_typo"]\nclear = ["clear"]\n')
    res = _train("--config", str(missing), "--out", str(tmp_path / "x"))
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "--config" in line and "hazy_typo" in line and "no such" in line


def test_an_unknown_key_in_a_config_is_an_error_that_names_it(pools, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f'hazy = ["{pools[0]}"]\nclear = ["{pools[1]}"]\n[losses]\nlamda-dcp = 3\n')
    res = _train("--config", str(bad), "--out", str(tmp_path / "x"))
    assert res.exit_code == 2 and not (tmp_path / "x").exists()
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "'lamda-dcp'" in line and "lambda-dcp" in line, line


def _model(tmp_path: Path) -> tuple[Path, GeneratorConfig]:
    """A small scattering model that records its side, as the bundled student does."""
    torch.manual_seed(1)
    config = GeneratorConfig(ngf=4, n_blocks=1, output="scattering", t_prior="dcp", inference_side=96)
    return save_generator(tmp_path / "mine.safetensors", ResnetGenerator(config)), config


def test_init_starts_from_the_models_weights_and_keeps_its_shape_and_side(pools, tmp_path) -> None:
    model, config = _model(tmp_path)
    hazy, clear = pools
    # a learning rate too small to move the weights: the run's generator is the model's
    res = _train("--init", str(model), "--hazy", str(hazy), "--clear", str(clear), "--out", str(tmp_path / "ft"),
                 "--iters", "1", "--lr", "1e-12", *SMALL)
    assert res.exit_code == 0, res.output
    tuned, start = load_generator(tmp_path / "ft" / "generator.safetensors"), load_generator(model)
    assert tuned.generator.config == config  # width, blocks, output, prior, side
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(tuned.generator.state_dict().values(),
                                                               start.generator.state_dict().values()))
    assert tuned.metadata["fine_tuned_from"] == str(model)
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["init_weights"]["sha256"] == start.sha256 and saved["train"]["lr"] == 1e-12
    assert saved["method"]["lambda_dcp"] == 0.0  # the fine-tune's schedule: no DCP warm start
    # the fine-tune runs where the model ran, through the same engine
    photo = tmp_path / "photo.png"
    _photo(np.random.default_rng(3), 200, 150, 0.5).save(photo)
    res = CliRunner().invoke(app, ["dehaze", str(photo), "-o", str(tmp_path / "out.png"), "--weights",
                                   str(tmp_path / "ft" / "generator.safetensors"), "--json", "-", "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["output"] == "scattering" and report["max_side"] == 96, report


def test_init_moves_the_weights_and_a_resume_continues_the_fine_tune(pools, tmp_path) -> None:
    model, _ = _model(tmp_path)
    hazy, clear = pools
    run = tmp_path / "ft"
    res = _train("--init", str(model), "--hazy", str(hazy), "--clear", str(clear), "--out", str(run),
                 "--iters", "2", "--until", "1", "--ema-decay", "0", "--critic-warmup", "0", *SMALL)
    assert res.exit_code == 0, res.output
    res = _train("--resume", str(run))
    assert res.exit_code == 0, res.output
    moved = load_generator(run / "generator.safetensors").generator.state_dict()
    start = load_generator(model).generator.state_dict()
    assert any(not torch.equal(a, b) for a, b in zip(moved.values(), start.values()))
    assert (run / "checkpoints" / "ckpt_00000002.pt").is_file()


def test_a_fine_tunes_fresh_critics_learn_alone_first_and_the_generator_is_held(pools, tmp_path) -> None:
    model, _ = _model(tmp_path)
    hazy, clear = pools
    run = tmp_path / "ft"
    res = _train("--init", str(model), "--hazy", str(hazy), "--clear", str(clear), "--out", str(run),
                 "--iters", "2", "--lr", "1e-2", "--ema-decay", "0", *SMALL)  # --init's default warm-up: 50
    assert res.exit_code == 0, res.output
    assert json.loads((run / "config.json").read_text())["train"]["critic_warmup"] == 50
    held = load_generator(run / "generator.safetensors").generator.state_dict()
    start = load_generator(model).generator.state_dict()
    assert all(torch.equal(held[k], start[k]) for k in start)
    state = torch.load(run / "checkpoints" / "ckpt_00000002.pt", weights_only=True)
    assert state["optimizers"][1]["state"], "the discriminator's optimiser never stepped"


def test_init_refuses_a_shape_that_contradicts_the_model_and_asks_for_the_clear_photos(pools, tmp_path) -> None:
    model, _ = _model(tmp_path)
    hazy, clear = pools
    res = _train("--init", str(model), "--hazy", str(hazy), "--clear", str(clear), "--out", str(tmp_path / "a"),
                 "--ngf", "8", *SMALL)
    assert res.exit_code == 2 and "--ngf 8 contradicts the model (4)" in res.output, res.output
    res = _train("--init", str(model), "--hazy", str(hazy), "--out", str(tmp_path / "b"))
    assert res.exit_code == 2 and "Missing option '--clear'" in res.output
    res = _train("--init", "no-such-model", "--hazy", str(hazy), "--clear", str(clear), "--out", str(tmp_path / "c"))
    assert res.exit_code == 2 and "no bundled model called 'no-such-model'" in res.output
    assert not any((tmp_path / n).exists() for n in "abc")


def test_init_odcr_fine_tunes_the_bundled_default(pools, tmp_path) -> None:
    from odcr_cli.files.bundled import bundled_model

    hazy, clear = pools
    res = _train("--init", "odcr", "--hazy", str(hazy), "--clear", str(clear), "--out", str(tmp_path / "ft"),
                 "--iters", "1", *SMALL)
    assert res.exit_code == 0, res.output
    default = bundled_model()
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["init_weights"]["model"] == default.name
    tuned = load_generator(tmp_path / "ft" / "generator.safetensors").generator.config
    assert tuned == load_generator(default.weights_file().path).generator.config


# --- odcr distill -----------------------------------------------------------------------------

def _distill(pools: tuple[Path, Path], teacher: Path, out: Path, *extra: str) -> object:
    hazy, clear = pools
    return CliRunner().invoke(app, ["distill", "--teacher", str(teacher), "--hazy", str(hazy), "--clear", str(clear),
                                    "--out", str(out), "--ngf", "4", "--n-blocks", "1", "--sides", "64,80",
                                    "--side", "64", "--log-every", "1", *extra])


def test_distill_makes_a_student_that_dehaze_runs_at_its_side_and_export_int8_exports(pools, tmp_path) -> None:
    teacher, _ = _model(tmp_path)
    res = _distill(pools, teacher, tmp_path / "student", "--iters", "3")
    assert res.exit_code == 0, res.output
    run = tmp_path / "student"
    student = load_generator(run / "generator.safetensors")
    assert student.generator.config.inference_side == 64 and student.generator.config.output == "scattering"
    assert student.generator.config.t_prior == "dcp" and student.metadata["method"] == "distillation"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log if "t" in r] == [1, 2, 3] and all(r["t"] >= 0 and r["J"] >= 0 for r in log if "t" in r)
    assert json.loads((run / "config.json").read_text())["teacher"]["sha256"] == load_generator(teacher).sha256
    photo = tmp_path / "photo.png"
    _photo(np.random.default_rng(3), 200, 150, 0.5).save(photo)
    res = CliRunner().invoke(app, ["dehaze", str(photo), "-o", str(tmp_path / "out.png"), "--weights", str(run),
                                   "--json", "-", "-q"])
    assert res.exit_code == 0 and json.loads(res.output)["max_side"] == 64, res.output
    res = CliRunner().invoke(app, ["export", "--onnx", "--int8", "--calibrate", str(pools[0]), "--weights", str(run),
                                   "-o", str(tmp_path / "student.onnx")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["dehaze", str(photo), "-o", str(tmp_path / "out2.png"), "--onnx",
                                   str(tmp_path / "student.onnx"), "--backend", "onnx", "--json", "-", "-q"])
    assert res.exit_code == 0 and json.loads(res.output)["max_side"] == 64, res.output


def test_distill_init_truth_starts_as_the_model_and_fits_synthetic_haze_to_its_truth(pools, tmp_path) -> None:
    """Your own dehazer by odcr distill --init MODEL --truth: the student is the model (its shape, side
    and weights; the model is its own teacher), on the fine-tune's schedule (recipes/adapt.toml), and
    each synthetic copy of a clear photo is that photo under a haze whose t and airlight are its
    targets, the airlight one the teacher found on a hazy photo."""
    from odcr_cli.haze.network_input import shrink_to

    model, config = _model(tmp_path)
    hazy, clear = pools
    run = tmp_path / "mine"
    res = CliRunner().invoke(app, ["distill", "--init", str(model), "--truth", "--copies", "2", "--hazy", str(hazy),
                                   "--clear", str(clear), "--out", str(run), "--iters", "1", "--lr", "1e-12",
                                   "--sides", "64", "--log-every", "1"])
    assert res.exit_code == 0, res.output
    tuned, start = load_generator(run / "generator.safetensors"), load_generator(model)
    assert tuned.generator.config == config  # width, blocks, prior, side: --ngf, --n-blocks, --side unused
    a, b = tuned.generator.state_dict(), start.generator.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    saved = json.loads((run / "config.json").read_text())
    assert saved["teacher"]["sha256"] == start.sha256 and saved["init_weights"]["sha256"] == start.sha256
    assert saved["train"]["ema_decay"] == 0.99 and saved["train"]["checkpoint_every"] == 200  # adapt.toml
    entries = torch.load(run / "teacher_cache.pt", weights_only=False)["entries"]
    assert len(entries) == 2 + 2 + 2 * 2  # hazy, clear, two copies of each clear photo
    found = np.stack([e["A"] for e in entries[:2]])
    clear_photos = [shrink_to(np.asarray(Image.open(f).convert("RGB"), np.float32) / 255, 96)
                    for f in sorted(clear.iterdir())]
    for k, e in enumerate(entries[4:]):
        img, t, airlight = e["img"].astype(np.float32), e["t"].astype(np.float32), e["A"]
        assert np.abs(found - airlight).max(axis=1).min() < 0.1  # near one the teacher found
        assert t.min() >= config.t_min - 1e-3 and t.max() <= 1.0
        thin = t > config.t_min + 0.05  # where t is not floored, the copy is the clear photo under that haze
        rebuilt = (img - airlight * (1 - t[..., None])) / t[..., None]
        assert np.abs(rebuilt - clear_photos[k % 2])[thin].mean() < 0.02
    res = CliRunner().invoke(app, ["distill", "--init", str(model), "--truth", "--hazy", str(hazy),
                                   "--out", str(tmp_path / "no_clear")])
    assert res.exit_code == 2 and "--clear" in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_a_resumed_distillation_follows_the_same_trajectory(pools, tmp_path) -> None:
    teacher, _ = _model(tmp_path)
    assert _distill(pools, teacher, tmp_path / "straight", "--iters", "4").exit_code == 0
    res = _distill(pools, teacher, tmp_path / "parts", "--iters", "4", "--until", "2")
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["distill", "--resume", str(tmp_path / "parts")])
    assert res.exit_code == 0 and "resumed from iteration 2" in res.output, res.output
    a = load_generator(tmp_path / "straight" / "generator.safetensors").generator.state_dict()
    b = load_generator(tmp_path / "parts" / "generator.safetensors").generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_distill_refuses_a_teacher_without_a_transmission_and_a_gan_run_to_resume(pools, tmp_path, tiny_weights) -> None:
    res = _distill(pools, tiny_weights, tmp_path / "s", "--iters", "1")  # an image-output generator
    assert res.exit_code == 2 and "scattering" in res.output and len(res.output.strip().splitlines()) == 1
    hazy, clear = pools
    assert _train("--hazy", str(hazy), "--clear", str(clear), "--out", str(tmp_path / "gan"), "--iters", "1",
                  *TINY).exit_code == 0
    res = CliRunner().invoke(app, ["distill", "--resume", str(tmp_path / "gan")])
    assert res.exit_code == 2 and "not a distillation" in res.output, res.output
