"""Recipes as files (issue 30, item 3): the command line and the Python API build a run's settings
from the same recipe files, in the same layers, and `odcr train --help` shows the values they give."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from odcr_cli.cli.app import app
from odcr_cli.tasks.train import recipe as recipes
from odcr_cli.tasks.train.recipe import configs


@pytest.fixture()
def caught(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """`odcr train`'s settings, caught where the training would start."""
    import odcr_cli.tasks.train.training as training

    seen: list[tuple] = []

    def fake_train(cfg, method, generator, **_kw):
        seen.append((cfg, method, generator))
        raise SystemExit(0)

    monkeypatch.setattr(training, "train", fake_train)
    return seen


@pytest.fixture()
def data(tmp_path: Path) -> dict[str, str]:
    for name in ("hazy", "clear"):
        (tmp_path / name).mkdir()
    return {"hazy": str(tmp_path / "hazy"), "clear": str(tmp_path / "clear"), "out": str(tmp_path / "run")}


def _cli(caught: list, data: dict[str, str], *extra: str) -> tuple:
    res = CliRunner().invoke(app, ["train", "--hazy", data["hazy"], "--clear", data["clear"], "--out", data["out"],
                                   *extra])
    assert res.exit_code == 0 and caught, res.output
    return caught.pop()


def test_every_whole_recipe_sets_the_shape_losses_and_schedule_and_nothing_of_the_run():
    # a setting a recipe leaves out would come from a dataclass default that --help does not show
    for name in recipes.RECIPES:
        assert set(recipes.load(name)) == recipes.recipe_keys(), name
    assert {"iters", "crop", "lr", "ngf", "output", "t_prior", "lambda_synth", "method"} <= recipes.recipe_keys()
    assert not {"hazy", "out", "device", "log_every"} & recipes.recipe_keys()
    for overlay in (recipes.FINE_TUNE, recipes.DISTILL):  # schedules laid over a recipe
        assert recipes.load(overlay) and not {"ngf", "output", "hazy"} & set(recipes.load(overlay)), overlay


@pytest.mark.parametrize("flags, api", [
    ((), {}),
    (("--recipe", "paper"), {"recipe": "paper"}),
    (("--init", "odcr", "--iters", "40"), {"init": "odcr", "iters": 40}),
    (("--method", "cut", "--synth-beta", "0,3", "--crop", "64"), {"method": "cut", "synth_beta": (0, 3), "crop": 64}),
])
def test_the_api_and_the_command_line_build_the_same_run_from_the_same_recipe(caught, data, flags, api):
    assert _cli(caught, data, *flags) == configs(**data, **api)


def test_a_plain_run_is_the_scattering_recipe_and_the_layers_override_it_in_order(caught, data, tmp_path):
    scattering, fine_tune = recipes.load("scattering"), recipes.load(recipes.FINE_TUNE)
    cfg, method, generator = configs(**data)
    assert (cfg.iters, cfg.crop, generator.ngf, generator.output) == (scattering["iters"], scattering["crop"],
                                                                       scattering["ngf"], "scattering")
    assert method.lambda_synth == scattering["lambda_synth"] > 0
    cfg, method, _ = configs(**data, init="odcr")  # the fine-tune's schedule over the recipe
    assert (cfg.iters, cfg.lr, method.lambda_dcp, cfg.crop) == (fine_tune["iters"], fine_tune["lr"], 0.0,
                                                               scattering["crop"])
    config = tmp_path / "mine.toml"
    config.write_text("iters = 77\nlr = 1e-5\n")
    cfg, _, _ = configs(**data, init="odcr", config=config, lr=3e-5)  # a file over --init, a typed value over all
    assert (cfg.iters, cfg.lr) == (77, 3e-5)
    assert _cli(caught, data, "--init", "odcr", "--config", str(config), "--lr", "3e-5")[0].iters == 77
    with pytest.raises(TypeError, match="did you mean iters"):
        configs(**data, iter=5)


def test_a_recipe_file_of_ones_own_is_a_recipe_and_a_bad_one_is_one_line(caught, data, tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text((recipes.RECIPE_DIR / "scattering.toml").read_text().replace("iters = 2400", "iters = 12"))
    assert _cli(caught, data, "--recipe", str(mine))[0].iters == 12 == configs(**data, recipe=mine)[0].iters
    for bad in ("papr", str(tmp_path / "missing.toml")):
        res = CliRunner().invoke(app, ["train", "--recipe", bad, "--hazy", data["hazy"], "--clear", data["clear"],
                                       "--out", data["out"]])
        assert res.exit_code == 2 and "--recipe" in res.output and "scattering or paper" in res.output, res.output
    mine.write_text("iters = 12\nlamda_tv = 1\n")
    res = CliRunner().invoke(app, ["train", "--recipe", str(mine), "--hazy", data["hazy"]])
    assert res.exit_code == 2 and "lamda_tv" in res.output and "lambda-tv" in res.output, res.output


def test_help_shows_the_values_the_recipe_gives(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for flags, name in (((), "scattering"), (("--recipe", "paper"), "paper")):
        res = CliRunner().invoke(app, ["train", *flags, "--help"])
        assert res.exit_code == 0
        lines = {line.split()[1]: line for line in res.output.splitlines() if line.startswith("│ --")}
        values = recipes.load(name)
        for flag in ("iters", "crop", "ngf", "lambda_tv"):
            assert f"[default: {values[flag]}]" in lines["--" + flag.replace("_", "-")], (name, flag)
