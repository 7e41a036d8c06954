"""Synthetic haze: the scattering model, plausible depth, and ``odcr synth``'s folder task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from odcr_cli.cli.app import app
from odcr_cli.errors import SynthesisError
from odcr_cli.imaging.haze_synthesis import HazeParams, SynthConfig, plausible_depth, scatter, synthesize
from odcr_cli.tasks.synthesis import choose_sources, make_synthetic_set


def _scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A textured 'photo' in [0, 1]: coloured stripes plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 3.0), np.cos(yy / 4.0), np.sin((xx + yy) / 5.0)], -1) * 0.35 + 0.4
    return np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1).astype(np.float32)


def test_scatter_follows_the_model_exactly() -> None:
    clear = _scene()
    depth = np.linspace(0, 1, clear.shape[1], dtype=np.float32)[None].repeat(clear.shape[0], 0)
    a = (0.9, 0.85, 0.8)
    hazy, t = scatter(clear, depth, 1.7, a)
    assert np.allclose(t, np.exp(-1.7 * depth), atol=1e-6)
    assert np.allclose(hazy, clear * t[..., None] + np.asarray(a) * (1 - t[..., None]), atol=1e-6)
    # no scattering: the photo itself; dense scattering: the airlight everywhere but at depth 0
    same, _ = scatter(clear, depth, 0.0, a)
    assert np.array_equal(same, clear)
    veil, _ = scatter(clear, depth + 1, 50.0, a)
    assert np.allclose(veil, np.broadcast_to(np.asarray(a, np.float32), veil.shape), atol=1e-6)
    with pytest.raises(ValueError, match="expected clear"):
        scatter(clear, depth[:, :10], 1.0, a)


def test_plausible_depth_recedes_towards_the_horizon_and_is_reproducible() -> None:
    clear = _scene(96, 128)
    params = HazeParams(beta=1.0, airlight=(0.9, 0.9, 0.9), horizon=0.4, near_depth=0.1)
    d1 = plausible_depth(clear, params, np.random.default_rng(5))
    d2 = plausible_depth(clear, params, np.random.default_rng(5))
    assert d1.shape == (96, 128) and d1.dtype == np.float32
    assert np.array_equal(d1, d2)
    assert d1.min() >= 0 and d1.max() <= 1
    top, bottom = d1[: int(0.4 * 96)].mean(), d1[-10:].mean()
    assert top > 0.8 and bottom < 0.35 and top > bottom + 0.5
    # depth decreases (on average) from the horizon down to the bottom row
    rows = d1.mean(axis=1)[int(0.45 * 96):]
    assert np.all(np.diff(rows) < 0.02) and rows[0] > rows[-1]


def test_synthesized_haze_has_the_haze_signature() -> None:
    clear = _scene(96, 128)
    hazy, t, params = synthesize(clear, np.random.default_rng(1), SynthConfig(beta=(2.0, 2.0)))
    assert params.beta == 2.0 and 0 < t.min() and t.max() <= 1
    # haze lowers contrast and raises the dark channel (He et al.'s prior, the other way round)
    assert hazy.std() < clear.std()
    assert hazy.min(axis=2).mean() > clear.min(axis=2).mean() + 0.1
    # and it is a pure function of the generator's state
    again, _, _ = synthesize(clear, np.random.default_rng(1), SynthConfig(beta=(2.0, 2.0)))
    assert np.array_equal(hazy, again)


@pytest.mark.parametrize("kwargs", [{"beta": (2.0, 1.0)}, {"airlight": (0.5, 1.2)}, {"horizon": (0.2, 1.0)}])
def test_config_ranges_are_checked(kwargs: dict) -> None:
    with pytest.raises(SynthesisError, match=next(iter(kwargs))):
        SynthConfig(**kwargs)


def test_choose_sources_is_a_seeded_subset() -> None:
    files = [Path(f"f{i}.jpg") for i in range(10)]
    a = choose_sources(files, 0.4, seed=3)
    assert len(a) == 4 and a == choose_sources(files, 0.4, seed=3) and set(a) <= set(files)
    assert a != choose_sources(files, 0.4, seed=4)
    assert choose_sources(files, 1.0, seed=0) == files
    assert len(choose_sources(files, 0.01, seed=0)) == 1
    with pytest.raises(SynthesisError, match="fraction"):
        choose_sources(files, 0.0, seed=0)


@pytest.fixture()
def clear_dir(tmp_path: Path) -> Path:
    d = tmp_path / "clear"
    (d / "sub").mkdir(parents=True)
    for i in range(4):
        Image.fromarray((_scene(40, 56, seed=i) * 255).astype(np.uint8)).save(d / f"c{i}.png")
    Image.fromarray((_scene(30, 30, seed=9) * 255).astype(np.uint8)).save(d / "sub" / "c0.png")  # same stem
    return d


def test_synthetic_set_writes_images_manifest_and_sources(clear_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    res = make_synthetic_set([clear_dir], out, fraction=0.6, variants=2, seed=0, ext="png", save_transmission=True)
    assert len(res.sources) == 3 and len(res.written) == 6 and not res.failed
    assert sorted(p.name for p in (out / "hazy").iterdir()) == sorted(p.name for p in res.written)
    assert len(list((out / "transmission").iterdir())) == 6
    listed = [Path(line) for line in (out / "sources.txt").read_text().splitlines()]
    assert listed == res.sources and all(p.is_absolute() and p.is_file() for p in listed)
    assert not [p for p in out.rglob("*") if p.is_file() and p.is_relative_to(clear_dir)]
    manifest = json.loads(res.manifest.read_text())
    assert len(manifest["images"]) == 6
    for rec in manifest["images"]:
        assert (out / rec["file"]).is_file() and Path(rec["source"]) in listed
        assert 0.5 <= rec["beta"] <= 3.0 and all(0 <= a <= 1 for a in rec["airlight"])
        # the output is the same size as its source and hazier than it
        src = np.asarray(Image.open(rec["source"]).convert("RGB"), np.float32)
        hazy = np.asarray(Image.open(out / rec["file"]), np.float32)
        assert hazy.shape == src.shape and hazy.min(axis=2).mean() > src.min(axis=2).mean()
    # reproducible byte for byte
    again = make_synthetic_set([clear_dir], tmp_path / "again", fraction=0.6, variants=2, seed=0, ext="png")
    assert [p.read_bytes() for p in res.written] == [p.read_bytes() for p in again.written]


def test_existing_outputs_are_never_overwritten_unless_asked(clear_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    first = make_synthetic_set([clear_dir], out, seed=0)
    before = {p: p.read_bytes() for p in first.written}
    with pytest.raises(SynthesisError, match="--overwrite"):
        make_synthetic_set([clear_dir], out, seed=1)
    assert {p: p.read_bytes() for p in first.written} == before
    second = make_synthetic_set([clear_dir], out, seed=1, overwrite=True)
    assert any(p.read_bytes() != before[p] for p in second.written)
    # images of another plan would stay behind with their sources unlisted: refused, not deleted
    (out / "hazy" / "elsewhere_haze0.jpg").write_bytes(b"earlier output")
    with pytest.raises(SynthesisError, match="would not write"):
        make_synthetic_set([clear_dir], out, seed=1, overwrite=True)
    assert (out / "hazy" / "elsewhere_haze0.jpg").read_bytes() == b"earlier output"


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_output_folder_may_not_overlap_a_clear_folder(clear_dir: Path, where: str) -> None:
    out = {"same": clear_dir, "inside": clear_dir / "synth", "around": clear_dir.parent}[where]
    before = sorted(clear_dir.rglob("*"))
    with pytest.raises(SynthesisError, match="overlaps the clear folder"):
        make_synthetic_set([clear_dir], out)
    assert sorted(clear_dir.rglob("*")) == before


def test_cli_skips_a_bad_photo_and_reports_it(clear_dir: Path, tmp_path: Path) -> None:
    (clear_dir / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "synth"
    res = CliRunner().invoke(app, ["synth", str(clear_dir), "-o", str(out), "--max-side", "32"])
    assert res.exit_code == 1
    assert "broken.jpg" in res.output and "wrote 5 hazy image(s)" in res.output
    assert all(max(Image.open(p).size) <= 32 for p in (out / "hazy").iterdir())
    # every chosen source is listed up front (a bad one too: it must not return as a clear photo)
    assert len((out / "sources.txt").read_text().splitlines()) == 6
    assert json.loads((out / "manifest.json").read_text())["failed"][0]["source"].endswith("broken.jpg")


def test_cli_bad_arguments_are_one_line_errors(clear_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["synth", str(clear_dir), "-o", str(tmp_path / "s"), "--beta", "lots"])
    assert res.exit_code == 2 and "LOW:HIGH" in res.output
    res = runner.invoke(app, ["synth", str(clear_dir), "-o", str(tmp_path / "s"), "--beta", "3:1"])
    assert res.exit_code == 2 and "beta" in res.output
    res = runner.invoke(app, ["synth", str(tmp_path / "missing"), "-o", str(tmp_path / "s")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["synth", str(clear_dir), "-o", str(tmp_path / "s"), "--fraction", "1.5"])
    assert res.exit_code == 2 and "fraction" in res.output
    assert not (tmp_path / "s").exists()
