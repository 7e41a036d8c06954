"""Batch runs a script can trust (issue 12) and dehaze's progress reporting (issue 11), at CLI level."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_photo
from odcr_cli.cli.app import app
from odcr_cli.engine.dehazer import ImageRecord
from odcr_cli.tasks.dehaze.dehazing import Interrupted, run_dehaze, write_report
from odcr_cli.tasks.dehaze.options import DehazeOptions

runner = CliRunner()


@pytest.fixture(autouse=True)
def _not_a_terminal(monkeypatch):
    # rich reads these to force terminal output; CI may set them
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)


def _plain(text: str) -> str:
    """Text without rich's colours and cursor moves."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _img(path: Path, h: int = 40, w: int = 56, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_photo(h, w, seed)).save(path)
    return path


def dcp(*args):
    return runner.invoke(app, ["dehaze", *map(str, args), "--method", "dcp"])


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- 1. reruns beside the input ------------------------------------------------------------------
def test_beside_input_run_can_be_rerun_with_skip_existing(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.jpg", seed=1)
    r = dcp(tmp_path)
    assert r.exit_code == 0, r.output
    after_first = _tree(tmp_path)
    assert sorted(after_first) == ["a.png", "a_dehazed.png", "b.jpg", "b_dehazed.jpg"]
    r = dcp(tmp_path, "--skip-existing")
    assert r.exit_code == 0, r.output
    assert _tree(tmp_path) == after_first  # nothing written, nothing *_dehazed_dehazed
    assert "2 skipped" in r.output and "left out 2 file(s) that carry the output suffix" in r.output
    # the README's glob form, and a rerun that asks for nothing: existing outputs are a usage error
    r = dcp(str(tmp_path / "*.png"), "--skip-existing")
    assert r.exit_code == 0 and _tree(tmp_path) == after_first, r.output
    r = dcp(tmp_path)
    assert r.exit_code == 2 and "already exist" in r.output
    # a file named one by one is always an input
    r = dcp(tmp_path / "a_dehazed.png")
    assert r.exit_code == 0 and (tmp_path / "a_dehazed_dehazed.png").exists()


# --- 2. a missing input is one failed file ------------------------------------------------------
def test_missing_input_fails_alone_and_no_input_at_all_is_exit_2(tmp_path):
    good = _img(tmp_path / "in" / "good.png")
    rep = tmp_path / "report.json"
    r = dcp(good, tmp_path / "in" / "missing.png", "-o", tmp_path / "out", "--json", rep)
    assert r.exit_code == 1, r.output
    assert (tmp_path / "out" / "good.png").exists()
    files = {Path(f["input"]).name: f for f in json.loads(rep.read_text())["files"]}
    assert files["good.png"]["status"] == "ok"
    assert files["missing.png"]["status"] == "failed" and files["missing.png"]["error"] == "not found"
    r = dcp(tmp_path / "nothing.png")
    assert r.exit_code == 2 and "input not found" in r.output
    (tmp_path / "empty").mkdir()
    r = dcp(tmp_path / "empty")
    assert r.exit_code == 2 and "no input images or videos found" in r.output


# --- 3. what a folder run leaves out is said ----------------------------------------------------
def test_subfolders_and_non_images_are_counted_and_named(tmp_path):
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "sub" / "b.png")
    _img(tmp_path / "in" / "sub2" / "c.png")
    (tmp_path / "in" / "notes.txt").write_text("not a photo")
    (tmp_path / "in" / "phone.heic").write_bytes(b"\0" * 16)
    r = dcp(tmp_path / "in", "-o", tmp_path / "out", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert "2 subfolder(s) not read (add --recursive): sub, sub2" in r.output
    assert "2 file(s) are neither images nor videos and were not read: notes.txt, phone.heic" in r.output
    left = json.loads((tmp_path / "r.json").read_text())["left_out"]
    assert [Path(p).name for p in left["subfolders_not_read"]] == ["sub", "sub2"]
    assert sorted(Path(p).name for p in left["not_images"]) == ["notes.txt", "phone.heic"]
    r = dcp(tmp_path / "in", "-o", tmp_path / "out2", "--recursive")
    assert r.exit_code == 0 and "not read (add --recursive)" not in r.output
    assert (tmp_path / "out2" / "sub2" / "c.png").exists()


def test_an_output_folder_inside_the_input_folder_is_left_out_of_the_walk(tmp_path):
    # `odcr dehaze photos -o photos/out --recursive`, rerun: the outputs are not read as inputs
    _img(tmp_path / "photos" / "a.png")
    _img(tmp_path / "photos" / "sub" / "b.png", seed=1)
    out = tmp_path / "photos" / "out"
    r = dcp(tmp_path / "photos", "-o", out, "--recursive")
    assert r.exit_code == 0, r.output
    first = _tree(tmp_path / "photos")
    assert sorted(first) == ["a.png", "out/a.png", "out/sub/b.png", "sub/b.png"]
    for extra in (["--skip-existing"], ["--dry-run", "--skip-existing"], ["--skip-existing", "--json", tmp_path / "r.json"]):
        r = dcp(tmp_path / "photos", "-o", out, "--recursive", *extra)
        assert r.exit_code == 0, r.output
        assert "refusing" not in r.output and "out/a.png -> " not in r.output
    assert _tree(tmp_path / "photos") == first
    assert "left out the output folder" in _plain(runner.invoke(app, ["dehaze", str(tmp_path / "photos"), "-o", str(out),
                                                                      "--recursive", "--skip-existing", "--method", "dcp"]).output)
    assert json.loads((tmp_path / "r.json").read_text())["left_out"]["output_folder"] == [str(out)]
    r = dcp(tmp_path / "photos", "-o", out, "--skip-existing")   # not recursive: out is no "subfolder not read"
    assert r.exit_code == 0 and "1 subfolder(s) not read (add --recursive): sub\n" in _plain(r.output)


def test_save_transmission_names_every_file_it_writes(tmp_path):
    src = _img(tmp_path / "a.png")
    r = dcp(src, "-o", tmp_path / "o.png", "--save-transmission", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    written = [str(tmp_path / "o_transmission.png"), str(tmp_path / "o_depth.png")]
    assert all(Path(p).is_file() for p in written)
    [f] = json.loads((tmp_path / "r.json").read_text())["files"]
    assert f["output"] == str(tmp_path / "o.png") and f["also_written"] == written
    assert f"-> {tmp_path / 'o.png'} (and {written[0]}, {written[1]})" in _plain(r.output)


def test_the_start_up_header_fits_80_columns_with_a_short_weights_name(tmp_path):
    src = _img(tmp_path / "a.png")
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "o.png")])
    assert r.exit_code == 0, r.output
    header = _plain(r.output).splitlines()[:3]
    assert header[1].startswith("model odcr-") and header[2].startswith("weights odcr-") and "sha256" in header[2]
    assert all(len(line) <= 80 for line in header) and "/" not in header[2]


# --- 4. an unwritable output folder is found before any work ------------------------------------
def test_unwritable_output_folder_stops_before_computing(tmp_path, tiny_weights):
    src = _img(tmp_path / "a.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    # --weights names no file: the writability check must come first, before any model is loaded
    r = runner.invoke(app, ["dehaze", str(src), "-o", f"{blocker}/out/", "--weights", str(tmp_path / "none.safetensors")])
    assert r.exit_code == 2, r.output
    assert "cannot be written" in r.output and "is a file, not a folder" in r.output
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "o.png"), "--json", f"{blocker}/r.json",
                            "--method", "dcp"])
    assert r.exit_code == 2 and "cannot be written" in r.output and not (tmp_path / "o.png").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes anywhere: a read-only folder only stops other users (and needs POSIX ids)")
def test_read_only_output_folder_stops_before_computing(tmp_path):
    src = _img(tmp_path / "a.png")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    r = dcp(src, "-o", f"{ro}/")
    assert r.exit_code == 2 and "cannot be written" in r.output


# --- 5. -o with an image extension is a file -------------------------------------------------------
def test_output_with_image_extension_is_a_file_never_a_folder(tmp_path):
    a, b = _img(tmp_path / "in" / "a.png"), _img(tmp_path / "in" / "b.png", seed=1)
    r = dcp(a, b, "-o", tmp_path / "two.jpg")
    assert r.exit_code == 2 and "names one file but 2 inputs" in r.output
    assert not (tmp_path / "two.jpg").exists()
    r = dcp(tmp_path / "in", "-o", tmp_path / "two.jpg")
    assert r.exit_code == 2 and not (tmp_path / "two.jpg").exists()
    (tmp_path / "one").mkdir()
    _img(tmp_path / "one" / "c.png")
    r = dcp(tmp_path / "one", "-o", tmp_path / "c.jpg")  # a folder holding one photo into one file
    assert r.exit_code == 0 and Image.open(tmp_path / "c.jpg").format == "JPEG"


# --- 6. one line per file, counted right ----------------------------------------------------------
def test_log_has_one_line_per_file_counted_in_order(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _img(tmp_path / "in" / name)
    (tmp_path / "in" / "x.jpg").write_bytes(b"")
    _img(tmp_path / "out" / "b.png")  # b was done before: skipped
    r = dcp(tmp_path / "in", "-o", tmp_path / "out", "--skip-existing", tmp_path / "in" / "gone.png")
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] for ln in lines] == ["[1/5", "[2/5", "[3/5", "[4/5", "[5/5"]
    for name in ("a.png", "b.png", "c.png", "x.jpg", "gone.png"):
        assert sum(f"/{name}" in ln for ln in r.output.splitlines()) == 1, (name, r.output)
    assert any(ln.endswith("x.jpg: empty file") for ln in lines)
    assert "x.jpg: x.jpg" not in r.output
    assert "done: 2 ok, 2 failed, 1 skipped" in r.output


# --- 7. Ctrl-C ----------------------------------------------------------------------------------------
class InterruptOnSecond:
    """A dehazer (run_dehaze's protocol) whose second image is met by a Ctrl-C."""

    def __init__(self) -> None:
        self.calls = 0

    def describe(self) -> dict:
        return {"method": "test", "strength": 1.0}

    def dehaze_with_record(self, image: np.ndarray) -> tuple[np.ndarray, ImageRecord]:
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return 255 - image, ImageRecord(mode="whole")


def test_ctrl_c_reports_what_was_finished_and_a_rerun_resumes(tmp_path):
    for k in range(3):
        _img(tmp_path / "in" / f"{k}.png", seed=k)
    opts = DehazeOptions(inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"))
    seen: list[tuple[str, int, int]] = []
    with pytest.raises(Interrupted) as caught:
        run_dehaze(opts, dehazer=InterruptOnSecond(), progress=lambda res, done, total: seen.append(
            (Path(res.input).name, done, total)))
    report = caught.value.report
    assert report.interrupted and report.exit_code == 130
    assert (len(report.files), report.ok, report.skipped, report.failed) == (1, 1, 0, 0)
    assert seen == [("0.png", 1, 3)]  # the write queued before the Ctrl-C was finished and reported
    write_report(report, str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["interrupted"] is True
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png"]  # complete, no temp file
    written = np.asarray(Image.open(tmp_path / "out" / "0.png"))
    assert np.array_equal(written, 255 - make_photo(40, 56, 0))
    r = dcp(tmp_path / "in", "-o", tmp_path / "out", "--skip-existing")
    assert r.exit_code == 0 and "done: 2 ok, 0 failed, 1 skipped" in r.output


def _three_inputs_interrupted_at_the_second(tmp_path, monkeypatch, interrupt) -> None:
    """Three photos under tmp_path/in; the CLI's Dehazer calls ``interrupt()`` on the second one."""
    from odcr_cli.engine.dehazer import Dehazer

    for k in range(3):
        _img(tmp_path / "in" / f"{k}.png", seed=k)
    real, calls = Dehazer.dehaze_with_record, []

    def interrupt_second(self: Dehazer, image: np.ndarray) -> tuple[np.ndarray, ImageRecord]:
        calls.append(1)
        if len(calls) == 2:
            interrupt()
        return real(self, image)

    monkeypatch.setattr(Dehazer, "dehaze_with_record", interrupt_second)  # the CLI builds its own Dehazer


def test_ctrl_c_message_says_how_to_resume(tmp_path, monkeypatch):
    def ctrl_c() -> None:
        raise KeyboardInterrupt

    _three_inputs_interrupted_at_the_second(tmp_path, monkeypatch, ctrl_c)
    r = dcp(tmp_path / "in", "-o", tmp_path / "out", "--json", tmp_path / "r.json")
    assert r.exit_code == 130, r.output
    assert "interrupted: 1 of 3 file(s) finished (1 written" in r.output and "--skip-existing" in r.output
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["interrupted"] is True
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png"]


# --- 8. the same conventions in every subcommand ------------------------------------------------------
def test_export_keeps_an_existing_file_without_overwrite(tmp_path, tiny_weights):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"mine")
    r = runner.invoke(app, ["export", "--onnx", "--weights", str(tiny_weights), "-o", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output and "--overwrite" in r.output
    assert out.read_bytes() == b"mine"


def test_train_usage_errors_exit_2(tmp_path):
    r = runner.invoke(app, ["train", "--hazy", str(tmp_path / "none"), "--clear", str(tmp_path / "none"),
                            "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and not (tmp_path / "run").exists()
    r = runner.invoke(app, ["train", "--hazy", str(tmp_path), "--clear", str(tmp_path), "--out", str(tmp_path / "run"),
                            "--crop", "30"])
    assert r.exit_code == 2 and "--crop" in r.output


@pytest.mark.parametrize("command", [[], ["dehaze"], ["train"], ["distill"], ["synth"], ["evaluate"], ["models"],
                                     ["export"]])
def test_help_shows_no_type_labels(command):
    r = runner.invoke(app, [*command, "--help"])
    assert r.exit_code == 0
    assert "--help" in r.output
    assert not re.search(r"<(bool|str|int|float|path|Path|list)", r.output), r.output


def test_dehaze_help_states_the_sides_from_the_constants():
    """``--max-side``'s help says the sides the code uses (issue 32: it said 384 px for a default
    that runs at 320): every number in it comes from a constant, and the depth PNG's floor too."""
    import typer.main

    from odcr_cli.engine.options import CPU_AUTO_MAX_SIDE, DEFAULT_MEMORY_BUDGET_GB
    from odcr_cli.haze.constants import MODEL_SIDE, T_MIN

    params = {p.name: p for p in typer.main.get_command(app).commands["dehaze"].params}
    max_side = params["max_side"].help
    assert f"else {MODEL_SIDE} px" in max_side and "side its weights record" in max_side
    assert set(re.findall(r"\d+(?:\.\d+)?", max_side)) == {str(MODEL_SIDE), str(CPU_AUTO_MAX_SIDE),
                                                             f"{DEFAULT_MEMORY_BUDGET_GB:g}", "0"}
    assert f"65535 at t = {T_MIN:g}" in params["save_transmission"].help


# --- 9. --dry-run and --strength ------------------------------------------------------------------------
def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "b.png")
    _img(tmp_path / "out" / "b.png")
    before = _tree(tmp_path)
    # --weights names no file: a dry run loads no model
    r = runner.invoke(app, ["dehaze", str(tmp_path / "in"), str(tmp_path / "gone.png"), "-o", str(tmp_path / "out"),
                            "--skip-existing", "--dry-run", "--weights", str(tmp_path / "none.safetensors")])
    assert r.exit_code == 1, r.output  # gone.png would fail
    assert _tree(tmp_path) == before
    assert f"{tmp_path / 'in' / 'a.png'} -> {tmp_path / 'out' / 'a.png'}" in r.stdout
    assert f"{tmp_path / 'in' / 'b.png'} -> {tmp_path / 'out' / 'b.png'} (skipped: output exists)" in r.stdout
    assert f"{tmp_path / 'gone.png'}: failed: not found" in r.stdout
    assert "dry run: 1 to dehaze, 1 skipped, 1 failed" in r.output
    r = runner.invoke(app, ["dehaze", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--dry-run", "--json", "-",
                            "--method", "dcp", "--strength", "0.5"])
    assert r.exit_code == 2 and "already exist" in r.output  # the same checks as a real run
    r = runner.invoke(app, ["dehaze", str(tmp_path / "in"), "-o", str(tmp_path / "new"), "--dry-run", "--json", "-",
                            "--method", "dcp", "--strength", "0.5", "-q"])
    data = json.loads(r.stdout)
    assert r.exit_code == 0 and data["dry_run"] and data["strength"] == 0.5
    assert [f["status"] for f in data["files"]] == ["planned", "planned"] and not (tmp_path / "new").exists()


def _read(p: Path) -> np.ndarray:
    return np.asarray(Image.open(p).convert("RGB")).astype(np.int16)


def test_strength_dcp_scales_the_haze_removed(tmp_path):
    from odcr_cli.haze.scattering import remove_haze
    from odcr_cli.haze.prior import dcp_transmission

    src = _img(tmp_path / "a.png", 48, 64)
    outs = {}
    for s in ("0", "0.5", "1"):
        r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / f"s{s}.png"), "--method", "dcp",
                                "--strength", s, "--json", str(tmp_path / f"s{s}.json")])
        assert r.exit_code == 0, r.output
        assert json.loads((tmp_path / f"s{s}.json").read_text())["strength"] == float(s)
        outs[s] = _read(tmp_path / f"s{s}.png")
    hazy = _read(src)
    assert np.array_equal(outs["0"], hazy)
    rgb = hazy.astype(np.float32) / 255
    t, A = dcp_transmission(rgb)
    t_half = 1 - 0.5 * (1 - np.maximum(t, 0.1))
    expected = np.rint(np.clip(remove_haze(rgb, t_half[..., None], A), 0, 1) * 255)
    assert np.abs(outs["0.5"] - expected).max() <= 1
    blend = hazy + 0.5 * (outs["1"] - hazy)
    assert np.abs(outs["0.5"] - blend).max() > 3  # haze scaled, not a blend of the two images
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "more.png"), "--method", "dcp", "--strength", "2"])
    assert r.exit_code == 0, r.output  # the haze read as twice as thick: t -> t ** 2, floored at 0.1
    t_more = np.maximum(np.maximum(t, 0.1) ** 2, 0.1)
    expected = np.rint(np.clip(remove_haze(rgb, t_more[..., None], A), 0, 1) * 255)
    assert np.abs(_read(tmp_path / "more.png") - expected).max() <= 1
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "bad.png"), "--method", "dcp", "--strength", "2.1"])
    assert r.exit_code == 2 and not (tmp_path / "bad.png").exists()
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines == ["error: --strength 2.1: use a value from 0 (the input) to 2 (1: full dehazing, above 1: more)"]


def test_strength_direct_model_blends(tmp_path, tiny_weights):
    src = _img(tmp_path / "a.png", 48, 64)
    outs = {}
    for s in ("0", "0.5", "1"):
        r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / f"s{s}.png"), "--weights", str(tiny_weights),
                                "--strength", s])
        assert r.exit_code == 0, r.output
        outs[s] = _read(tmp_path / f"s{s}.png")
    hazy = _read(src)
    assert np.array_equal(outs["0"], hazy)
    assert np.abs(outs["0.5"] - (hazy + 0.5 * (outs["1"] - hazy))).max() <= 1
    assert np.abs(outs["1"] - hazy).max() > 10


def test_strength_scattering_model_scales_t():
    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.haze.inversion import recover
    from odcr_cli.haze.noise import Source

    from odcr_cli.engine.backend_base import Backend

    class ConstantT(Backend):  # a scattering "network" that says t = 0.5 everywhere
        name = "fake"
        generator_config = {"output": "scattering", "t_min": 0.1}

        def run_outputs(self, x):
            return {"t": np.full((1, 1, *x.shape[2:]), 0.5, np.float32),
                    "airlight_correction": np.zeros((1, 3), np.float32)}

        def run(self, x):
            raise AssertionError("scattering models use run_outputs")

    rgb = make_photo(32, 48).astype(np.float32) / 255
    full = Dehazer.from_backend(ConstantT(), max_side=0)
    half = Dehazer.from_backend(ConstantT(), max_side=0, strength=0.5)
    A = full.readout.estimate(rgb, ConstantT().run_outputs(np.zeros((1, 3, 32, 48))))[1]
    more = Dehazer.from_backend(ConstantT(), max_side=0, strength=2.0)
    # the readout's recovery (odcr_cli.haze.inversion; float input: no 8-bit steps) with t = 0.5,
    # 1 - 0.5 (1 - 0.5) at half strength and 0.5 ** 2 (the haze read as twice as thick) at strength 2
    for dz, t in ((full, 0.5), (half, 0.75), (more, 0.25)):
        expected = recover(rgb, np.full(rgb.shape[:2], t, np.float32), A, Source(step=0.0))
        np.testing.assert_allclose(dz.dehaze(rgb), np.clip(expected, 0, 1), atol=1e-5)
    assert half.describe()["strength"] == 0.5


# --- issue 11: progress ------------------------------------------------------------------------------------
def test_progress_plain_lines_off_a_terminal_and_quiet_prints_only_failures(tmp_path):
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"")
    r = dcp(tmp_path / "in", "-o", tmp_path / "out")
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] for ln in lines] == ["[1/2", "[2/2"] and "\x1b[" not in r.output
    assert sorted(ln.split()[1] for ln in lines) == ["failed:", "ok:"]
    assert "━" not in r.output and "eta" not in r.output
    r = dcp(tmp_path / "in", "-o", tmp_path / "out2", "-q")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"failed: {tmp_path / 'in' / 'b.png'}: empty file"]


def test_progress_bar_and_status_line_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich then treats CliRunner's stderr as a terminal
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    for k in range(3):
        _img(tmp_path / "in" / f"{k}.png", seed=k)
    (tmp_path / "in" / "bad.png").write_bytes(b"")
    r = dcp(tmp_path / "in", "-o", tmp_path / "out")
    out = _plain(r.output)  # rich's colours and cursor moves
    assert r.exit_code == 1, out
    assert "━" in out and "4/4" in out and "eta" in out  # files done, time remaining
    assert "] ok:" not in out  # no plain per-file lines under the bar
    assert out.count("bad.png: empty file") == 1  # failures printed once, above the bar
    r = dcp(tmp_path / "in" / "0.png", "-o", tmp_path / "single.png")
    assert r.exit_code == 0
    out = _plain(r.output)
    assert "dehazing 0.png (56x40)" in out and "━" not in out
    r = dcp(tmp_path / "in", "-o", tmp_path / "quiet", "-q")
    out = _plain(r.output)
    assert "━" not in out and "dehazing" not in out
    assert out.strip().splitlines() == [f"failed: {tmp_path / 'in' / 'bad.png'}: empty file"]


def test_a_negative_max_pixels_is_a_usage_error_before_any_work(tmp_path):
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(make_photo(32, 32)).save(src)
    res = CliRunner().invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "out.png"), "--max-pixels", "-1",
                                   "--method", "dcp"])
    assert res.exit_code == 2 and "--max-pixels" in res.output
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("target", ["outdir/", "model.txt"])
def test_export_writes_only_a_file_named_onnx(tmp_path, tiny_weights, target):
    res = CliRunner().invoke(app, ["export", "--onnx", "--weights", str(tiny_weights), "-o", str(tmp_path / target)])
    assert res.exit_code == 2 and ".onnx" in res.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--skip-existing", "--overwrite"])
def test_a_shell_glob_rerun_leaves_out_the_first_runs_outputs(tmp_path, flag):
    """`odcr dehaze g/*.png --skip-existing` twice: the second time the shell also expands the
    first run's *_dehazed.png; they are earlier outputs, left out and counted, and the rerun exits 0."""
    for k in range(2):
        Image.fromarray(make_photo(32, 40, seed=k)).save(tmp_path / f"p{k}.png")

    def run() -> object:
        names = sorted(str(p) for p in tmp_path.glob("*.png"))  # what the shell's g/*.png gives
        return CliRunner().invoke(app, ["dehaze", *names, flag, "--method", "dcp"])

    first = run()
    assert first.exit_code == 0, first.output
    made = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*_dehazed.png")}
    assert sorted(made) == ["p0_dehazed.png", "p1_dehazed.png"]
    again = run()
    assert again.exit_code == 0, again.output
    assert "left out 2" in again.output
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["p0.png", "p0_dehazed.png", "p1.png", "p1_dehazed.png"]


def test_a_named_file_with_the_suffix_alone_is_still_an_input(tmp_path):
    Image.fromarray(make_photo(32, 40)).save(tmp_path / "x_dehazed.png")
    res = CliRunner().invoke(app, ["dehaze", str(tmp_path / "x_dehazed.png"), "--method", "dcp"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x_dehazed_dehazed.png").is_file()


def test_sigterm_ends_a_run_as_ctrl_c_does(tmp_path, monkeypatch):
    """Batch schedulers send SIGTERM: the summary and the --json report still come out, exit 130."""
    import signal

    _three_inputs_interrupted_at_the_second(tmp_path, monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    r = dcp(tmp_path / "in", "-o", tmp_path / "out", "--json", tmp_path / "r.json")
    assert r.exit_code == 130, r.output
    assert "interrupted:" in r.output and "--skip-existing" in r.output
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["interrupted"] is True
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp file left
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the run's only


def test_a_rerun_removes_the_temp_file_a_killed_write_left(tmp_path):
    """kill -9 during a write leaves `.name.odcr-XXXX.tmp.png` (no cleanup runs); the next run that
    writes that output removes it, and leaves other hidden files alone."""
    from odcr_cli.files.fsutil import TEMP_MARK

    _img(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".a.{TEMP_MARK}k3x9q1.tmp.png"
    stale.write_bytes(b"half a png")
    mine = out / ".a.notes.png"
    mine.write_bytes(b"the user's")
    r = dcp(tmp_path / "in", "-o", out)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [".a.notes.png", "a.png"]


def test_dry_run_and_real_run_give_a_missing_list_entry_the_same_verdict(tmp_path):
    _img(tmp_path / "in" / "a.png")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'in' / 'a.png'}\n{tmp_path / 'in' / 'gone.png'}\n")
    dry = dcp("--input-list", listing, "-o", tmp_path / "out", "--dry-run", "--json", tmp_path / "dry.json")
    real = dcp("--input-list", listing, "-o", tmp_path / "out", "--json", tmp_path / "real.json")
    assert dry.exit_code == real.exit_code == 1, (dry.output, real.output)
    verdicts = [{Path(f["input"]).name: f["status"] for f in json.loads((tmp_path / n).read_text())["files"]}
                for n in ("dry.json", "real.json")]
    assert verdicts[0]["gone.png"] == verdicts[1]["gone.png"] == "failed"
    assert (verdicts[0]["a.png"], verdicts[1]["a.png"]) == ("planned", "ok")


def test_an_output_without_an_image_suffix_is_a_folder_whatever_the_count(tmp_path):
    """A script's `odcr dehaze $FILES -o outdir` behaves the same when $FILES is one file."""
    a, b = _img(tmp_path / "in" / "a.png"), _img(tmp_path / "in" / "b.png", seed=1)
    r = dcp(a, "-o", tmp_path / "one")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["a.png"]
    r = dcp(a, b, "-o", tmp_path / "two")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["a.png", "b.png"]


def test_an_input_list_entry_has_one_output_path_whatever_else_is_listed(tmp_path, monkeypatch):
    """Outputs of --input-list follow each entry's own path, so adding a file from another folder
    moves nothing and a --skip-existing resume finds the earlier outputs."""
    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "shots" / "day1" / "a.png")
    _img(tmp_path / "other" / "b.png", seed=1)
    listing = tmp_path / "list.txt"
    listing.write_text("shots/day1/a.png\n")
    assert dcp("--input-list", listing, "-o", "out").exit_code == 0
    assert (tmp_path / "out" / "shots" / "day1" / "a.png").is_file()
    listing.write_text(f"shots/day1/a.png\n{tmp_path / 'other' / 'b.png'}\n")
    r = dcp("--input-list", listing, "-o", "out", "--skip-existing")
    assert r.exit_code == 0 and "1 ok, 0 failed, 1 skipped" in r.output, r.output
    assert (tmp_path / "out" / (tmp_path / "other" / "b.png").relative_to(tmp_path.anchor)).is_file()


def test_an_output_folder_run_leaves_out_an_earlier_beside_the_input_run(tmp_path):
    _img(tmp_path / "in" / "a.png")
    assert dcp(tmp_path / "in").exit_code == 0  # beside the input: in/a_dehazed.png
    r = dcp(tmp_path / "in", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]
    assert "left out 1" in r.output


def test_symlinks_are_followed_once_and_what_was_left_out_is_said(tmp_path):
    root = tmp_path / "in"
    _img(root / "real.png")
    (root / "link.png").symlink_to(root / "real.png")          # a second name of the same photo
    (root / "gone.png").symlink_to(root / "nothing.png")       # a symlink to nothing
    _img(tmp_path / "elsewhere" / "far.png", seed=2)
    (root / "linked").symlink_to(tmp_path / "elsewhere")       # a symlinked subfolder
    (root / "linked_again").symlink_to(root)                   # a loop back up the tree
    r = dcp(root, "-o", tmp_path / "out", "--recursive")
    assert r.exit_code == 0, r.output
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["linked/far.png", "real.png"]  # the real name kept; the linked folder read once
    assert "1 file(s) left out as other names (symlinks)" in r.output
    assert "1 symlink(s) point to nothing" in r.output and "lead back to a folder already read" in r.output


def test_threads_and_verbose_say_how_each_file_was_processed(tmp_path):
    """-v adds one line per file (mode, the network's size, seconds by stage); --threads is applied
    and reported in the --json engine."""
    Image.fromarray(make_photo(300, 700)).save(tmp_path / "wide.png")
    r = CliRunner().invoke(app, ["dehaze", str(tmp_path / "wide.png"), "-o", str(tmp_path / "out.png"),
                                 "--threads", "1", "-v", "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    engine = json.loads((tmp_path / "r.json").read_text())
    side = engine["max_side"]  # the default model's own (320 px for the student)
    assert f"700x300; mode fast; network at {side}x{round(300 * side / 700)}; downscale" in r.output
    assert "readout" in r.output
    assert engine["threads"] == 1
    quiet = CliRunner().invoke(app, ["dehaze", str(tmp_path / "wide.png"), "-o", str(tmp_path / "o2.png"), "-q", "-v"])
    assert quiet.exit_code == 0 and quiet.output == ""  # -q wins


def test_device_gpu_is_named_as_typed(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device gpu works")
    Image.fromarray(make_photo(32, 40)).save(tmp_path / "x.png")
    r = CliRunner().invoke(app, ["dehaze", str(tmp_path / "x.png"), "--device", "gpu", "--backend", "torch"])
    assert r.exit_code == 2 and "--device gpu (cuda) requested" in r.output, r.output


@pytest.mark.parametrize("method", ["odcr", "dcp"])
def test_save_transmission_writes_t_and_depth_and_reruns_leave_them_out(tmp_path, method):
    """--save-transmission: t and -ln t as 16-bit PNGs beside the output, in step with the photo
    (haze removed where t is low); a rerun over the folder does not take them for inputs."""
    photo = make_photo(48, 64)
    Image.fromarray(photo).save(tmp_path / "a.png")
    args = ["dehaze", str(tmp_path), "--save-transmission", "--method", method]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    t = np.asarray(Image.open(tmp_path / "a_dehazed_transmission.png")).astype(float) / 65535
    depth = np.asarray(Image.open(tmp_path / "a_dehazed_depth.png")).astype(float) / 65535
    assert t.shape == (48, 64) and 0.1 <= t.min() < t.max() <= 1.0
    assert np.allclose(depth, -np.log(t) / np.log(10), atol=2e-3)  # 1 at t = 0.1
    again = CliRunner().invoke(app, args + ["--skip-existing"])
    assert again.exit_code == 0 and "left out 3" in again.output, again.output
    assert CliRunner().invoke(app, args).exit_code == 2  # the outputs exist: refused
    stdout = CliRunner().invoke(app, ["dehaze", str(tmp_path / "a.png"), "-o", "-", "--save-transmission"])
    assert stdout.exit_code == 2 and "--save-transmission" in stdout.output


def test_save_transmission_refuses_a_direct_model(tmp_path, tiny_weights):
    Image.fromarray(make_photo(32, 40)).save(tmp_path / "a.png")
    r = CliRunner().invoke(app, ["dehaze", str(tmp_path / "a.png"), "--weights", str(tiny_weights), "--save-transmission"])
    assert r.exit_code == 2 and "--save-transmission needs a model that estimates t" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def _screen(stream: bytes, width: int) -> list[str]:
    """What a terminal `width` columns wide shows after `stream`: characters, CR, LF, erase-line
    and cursor-up, with the wrap a full line gets from one more character (enough for rich's bar)."""
    rows: dict[int, list[str]] = {}
    row = col = 0
    for m in re.finditer(r"\x1b\[([0-9;?]*)([A-Za-z])|(.)", stream.decode("utf-8", "replace"), re.S):
        arg, cmd, ch = m.groups()
        if cmd == "K" and arg == "2":
            rows[row] = []
        elif cmd == "A":
            row = max(0, row - int(arg or 1))
        elif ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
        elif ch is not None:
            if col >= width:
                row, col = row + 1, 0
            line = rows.setdefault(row, [])
            line += [" "] * (col + 1 - len(line))
            line[col] = ch
            col += 1
    return ["".join(rows.get(r, [])).rstrip() for r in range(max(rows, default=0) + 1)]


def _own_terminal() -> None:
    """In the child: the pty as its controlling terminal, and Ctrl-C's SIGINT at its default (a
    suite started in the background by a shell, `pytest &`, ignores SIGINT, and children inherit that)."""
    import fcntl
    import signal
    import termios

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.slow
def test_ctrl_c_at_a_terminal_leaves_the_progress_bar_once(tmp_path):
    # ^C echoed after a bar as wide as the terminal wraps: a last draw of the bar would show it twice
    import fcntl
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time

    # enough photos that the run is still going when the bar first shows, however busy the CPU
    for k in range(300):
        _img(tmp_path / "in" / f"a_rather_long_photo_name_from_a_phone_{k:03d}.png", 360, 480, seed=k)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "odcr_cli", "dehaze", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                             "--method", "dcp", "--threads", "1"], stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, preexec_fn=_own_terminal)
    os.close(slave)
    out, sent, started = b"", False, time.monotonic()
    deadline = started + 120
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            out += chunk
        # ^C once the run is under way (its bar drawn or a first photo written), never while Python
        # is still importing: a busy CI machine can take seconds to get there
        if not sent and (b"dehazing " in out or any((tmp_path / "out").glob("*.png"))):
            os.write(master, b"\x03")   # the terminal's Ctrl-C: echoed as ^C, SIGINT to the process
            sent = True
        if proc.poll() is not None and not select.select([master], [], [], 0.2)[0]:
            break
    os.close(master)
    assert proc.wait(10) == 130 and sent, (sent, out[-800:])
    screen = [line for line in _screen(out, 80) if line]
    assert sum(line.startswith("dehazing ") for line in screen) <= 1, screen
    assert any(line.startswith("interrupted: ") for line in screen[-3:]), screen
