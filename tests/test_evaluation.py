"""`odcr evaluate`: pairing conventions, metrics, the dev-set cross-check, reports (CPU, seconds)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odcr_cli.errors import EvaluationError
from odcr_cli.imaging.metrics import psnr, ssim_uint8
from odcr_cli.tasks.evaluate.evaluation import PSNR_CAP, evaluate, gt_candidates, match_gt, pair_images

DEV_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev" / "paired"


def _write(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(arr).save(path)
    return path


def _img(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.skipif(not DEV_PAIRS.is_dir(), reason="dev pairs not available")
def test_input_cross_check_on_dev_pairs():
    report = evaluate(pairs_dir=DEV_PAIRS, methods=["input"], fade=False)  # FADE: tests/test_fade.py
    m = report.to_dict()["methods"]["input"]
    assert m["mean"]["n"] == 67
    assert m["mean"]["psnr"] == pytest.approx(14.46, abs=0.01)
    assert m["mean"]["ssim"] == pytest.approx(0.776, abs=0.001)
    assert set(m["subsets"]) == {"sots", "hazerd", "hsts", "ots"}
    assert sum(s["n"] for s in m["subsets"].values()) == 67
    assert not report.pairing.unmatched_hazy and not report.pairing.unmatched_gt and not report.failures


def test_pairing_conventions(tmp_path):
    hazy, gt = tmp_path / "hazy", tmp_path / "gt"
    for name in ["1400_1.png", "1400_2.png", "0001_0.8_0.2.jpg", "01_outdoor_hazy.jpg", "02_hazy.png",
                 "sots_in_1403.png", "orphan.png", "indoor/1410_3.png"]:
        _write(hazy / name, _img())
    for name in ["1400.png", "0001.png", "01_outdoor_GT.jpg", "02_GT.png", "sots_in_1403.jpg", "lonely.png",
                 "indoor/1410.png"]:
        _write(gt / name, _img())
    p = pair_images(hazy, gt)
    got = {pair.stem: pair.gt.relative_to(gt).as_posix() for pair in p.pairs}
    assert got == {"1400_1": "1400.png", "1400_2": "1400.png", "0001_0.8_0.2": "0001.png",
                   "01_outdoor_hazy": "01_outdoor_GT.jpg", "02_hazy": "02_GT.png",
                   "sots_in_1403": "sots_in_1403.jpg", "indoor/1410_3": "indoor/1410.png"}
    assert [u.split(" ")[0] for u in p.unmatched_hazy] == ["orphan.png"]
    assert p.unmatched_gt == ["lonely.png"]
    subsets = {pair.stem: pair.subset for pair in p.pairs}
    assert subsets["sots_in_1403"] == "sots" and subsets["indoor/1410_3"] == "indoor"
    assert subsets["1400_1"] is None  # numeric prefixes are image ids, not subsets
    assert gt_candidates("0001_0.8_0.2")[-1] == "0001"


def test_gt_border_crop_and_size_mismatch(tmp_path):
    hazy_img = _img(20, 24, 1)
    gt_img = np.zeros((40, 44, 3), np.uint8)
    gt_img[10:30, 10:34] = hazy_img  # SOTS-indoor style uniform border (10 px)
    _write(tmp_path / "hazy" / "a.png", hazy_img)
    _write(tmp_path / "gt" / "a.png", gt_img)
    _write(tmp_path / "hazy" / "b.png", hazy_img)
    _write(tmp_path / "gt" / "b.png", _img(21, 24))  # not a uniform border: a listed failure
    report = evaluate(pairs_dir=tmp_path, methods=["input"])
    assert report.gt_cropped == {"a": 10}
    m = report.methods["input"]
    assert [(s.stem, s.psnr) for s in m.images] == [("a", 100.0)] and m.images[0].ssim == pytest.approx(1.0)
    assert [f["stem"] for f in report.failures] == ["b"] and "uniform border" in report.failures[0]["error"]
    with pytest.raises(EvaluationError):
        match_gt(_img(20, 24), _img(24, 30))


def test_metric_conventions():
    from skimage.metrics import structural_similarity

    a, b = _img(32, 40, 2), _img(32, 40, 3)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr(a, b, peak=255.0, cap=PSNR_CAP) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    per_channel = np.mean([structural_similarity(a[..., c], b[..., c], data_range=255, win_size=7) for c in range(3)])
    assert ssim_uint8(a, b) == pytest.approx(per_channel)
    assert psnr(a, a, peak=255.0, cap=PSNR_CAP) == 100.0


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    import torch

    from odcr_cli.core.configs import GeneratorConfig
    from odcr_cli.core.networks import ResnetGenerator
    from odcr_cli.files.weights_io import save_generator

    torch.manual_seed(0)
    return save_generator(tmp_path_factory.mktemp("w") / "tiny.safetensors",
                          ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)))


def test_methods_side_by_side_with_reports(tiny_weights, tmp_path):
    pytest.importorskip("onnxruntime")
    from odcr_cli.tasks.export.export import export_onnx

    onnx_path = export_onnx(tiny_weights, tmp_path / "t.onnx", check_sizes=[(20, 28)]).output
    for k in range(2):
        _write(tmp_path / "pairs" / "hazy" / f"set_{k}.png", _img(23, 31, k))
        _write(tmp_path / "pairs" / "gt" / f"set_{k}.png", _img(23, 31, k + 10))
    methods = ["input", "odcr", f"onnx:{onnx_path}", str(tiny_weights), "dcp"]
    report = evaluate(pairs_dir=tmp_path / "pairs", methods=methods, weights=str(tiny_weights), device="cpu",
                      save_outputs=tmp_path / "outs", latency_size=(32, 32), latency_repeats=2)
    assert list(report.methods) == methods and not report.failures
    d = report.to_dict()
    for name in methods:
        m = d["methods"][name]
        assert m["mean"]["n"] == 2 and set(m["subsets"]) == {"set"}
        assert [i["stem"] for i in m["images"]] == ["set_0", "set_1"]
    # the ONNX export and the torch weights give the same scores (parity)
    assert d["methods"]["odcr"]["mean"]["psnr"] == pytest.approx(d["methods"][f"onnx:{onnx_path}"]["mean"]["psnr"], abs=0.05)
    for name in methods[1:4]:
        assert d["methods"][name]["parameters"] == d["methods"]["odcr"]["parameters"] > 0
        lat = d["methods"][name]["latency"]
        assert lat["median_ms"] > 0 and (lat["height"], lat["width"]) == (32, 32) and lat["device"]
    assert d["methods"]["input"]["latency"] is None and d["methods"]["dcp"]["latency"] is None
    assert sorted(p.name for p in (tmp_path / "outs").iterdir()) == sorted(["dcp", "odcr", "onnx_t", "tiny"])
    out = np.asarray(Image.open(tmp_path / "outs" / "odcr" / "set_0.png"))
    assert out.shape == (23, 31, 3)  # full resolution, never resized

    report.write_json(tmp_path / "r.json")
    report.write_csv(tmp_path / "r.csv")
    j = json.loads((tmp_path / "r.json").read_text())
    assert set(j["methods"]["input"]["mean"]) == {"psnr", "ssim", "fade", "n"}
    assert j["methods"]["input"]["mean"]["fade"] > 0 and set(j["methods"]["input"]["median"]) == {"psnr", "ssim", "fade"}
    assert [i["fade"] is not None for i in j["methods"]["dcp"]["images"]] == [True, True]
    assert j["gt_fade"]["n"] == 2 and j["reference"] == "gt"
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    # per method: 2 images + 1 subset mean + overall mean and median; then the GTs' FADE (2 + mean + median)
    assert len(rows) == len(methods) * (2 + 3) + 4
    assert rows[0]["fade"] and rows[-1]["method"] == "(gt)" and rows[-1]["stem"] == "(median)"


def test_unknown_method_is_an_error(tmp_path):
    _write(tmp_path / "hazy" / "a.png", _img())
    _write(tmp_path / "gt" / "a.png", _img())
    with pytest.raises(EvaluationError, match="unknown method"):
        evaluate(pairs_dir=tmp_path, methods=["nope"])
    with pytest.raises(EvaluationError):
        evaluate(gt_dir=tmp_path / "gt")
    with pytest.raises(EvaluationError, match="only score"):
        evaluate(hazy_dir=tmp_path / "hazy", methods=["input"], fade=False)


def test_methods_can_be_labelled(tiny_weights, tmp_path):
    _write(tmp_path / "hazy" / "a.png", _img(16, 16, 1))
    _write(tmp_path / "gt" / "a.png", _img(16, 16, 2))
    report = evaluate(pairs_dir=tmp_path, methods=[f"tiny@1000={tiny_weights}", "haze=input"], device="cpu",
                      latency_repeats=0)
    assert list(report.methods) == ["tiny@1000", "haze"]
    assert report.methods["tiny@1000"].kind == "torch" and report.methods["haze"].kind == "input"
    with pytest.raises(EvaluationError, match="share the name"):
        evaluate(pairs_dir=tmp_path, methods=["x=input", "x=dcp"])


def test_fast_mode_can_be_scored(tiny_weights, tmp_path):
    _write(tmp_path / "hazy" / "a.png", _img(48, 64, 1))
    _write(tmp_path / "gt" / "a.png", _img(48, 64, 2))
    full = evaluate(pairs_dir=tmp_path, methods=[str(tiny_weights)], device="cpu", latency_repeats=0,
                    max_side=0, save_outputs=tmp_path / "full")
    fast = evaluate(pairs_dir=tmp_path, methods=[str(tiny_weights)], device="cpu", latency_repeats=0,
                    max_side=16, save_outputs=tmp_path / "fast")
    a = np.asarray(Image.open(tmp_path / "full" / "tiny" / "a.png"))
    b = np.asarray(Image.open(tmp_path / "fast" / "tiny" / "a.png"))
    assert a.shape == b.shape == (48, 64, 3) and not np.array_equal(a, b)  # full size, another path
    assert fast.to_dict()["conventions"]["network_input"].startswith("fast mode")
    assert full.to_dict()["conventions"]["network_input"] == "full resolution"
    default = evaluate(pairs_dir=tmp_path, methods=[str(tiny_weights)], device="cpu", latency_repeats=0)
    assert default.to_dict()["conventions"]["network_input"] == "odcr dehaze's default for each model"
    default = evaluate(pairs_dir=tmp_path, methods=[str(tiny_weights)], device="cpu", latency_repeats=0)
    assert default.to_dict()["conventions"]["network_input"] == "odcr dehaze's default for each model"


def test_cli_evaluate(tmp_path):
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app

    _write(tmp_path / "p" / "hazy" / "x_1.png", _img(16, 16, 5))
    _write(tmp_path / "p" / "gt" / "x_1.png", _img(16, 16, 6))
    _write(tmp_path / "p" / "hazy" / "orphan.png", _img(16, 16, 7))
    res = CliRunner().invoke(app, ["evaluate", "--pairs", str(tmp_path / "p"), "--method", "input",
                                   "--json", str(tmp_path / "e.json"), "--csv", str(tmp_path / "e.csv")])
    assert res.exit_code == 0, res.output
    assert "orphan.png" in res.output  # unmatched files are reported
    j = json.loads((tmp_path / "e.json").read_text())
    assert j["methods"]["input"]["mean"]["n"] == 1 and j["pairing"]["unmatched_hazy"]
    res = CliRunner().invoke(app, ["evaluate", "--gt", str(tmp_path)])
    assert res.exit_code == 2 and "error:" in res.output


def test_bundled_models_score_as_dehaze_runs_them_or_on_torch(tmp_path):
    """The default path is what `odcr dehaze` runs (ONNX Runtime, int8 graph); --backend torch
    scores the fp32 weights; the report names the path each ran."""
    _write(tmp_path / "hazy" / "a.png", _img(40, 48, 1))
    _write(tmp_path / "gt" / "a.png", _img(40, 48, 2))
    runs = {b: evaluate(hazy_dir=tmp_path / "hazy", gt_dir=tmp_path / "gt", methods=["odcr"], latency_repeats=0,
                        fade=False, backend=b).methods["odcr"] for b in ("auto", "torch")}
    assert runs["auto"].kind == "onnx" and "onnx int8 on CPUExecutionProvider" in runs["auto"].description
    assert runs["torch"].kind == "torch" and "torch fp32 on cpu" in runs["torch"].description
    with pytest.raises(EvaluationError, match="runs on PyTorch"):
        evaluate(hazy_dir=tmp_path / "hazy", gt_dir=tmp_path / "gt", methods=[str(_write(tmp_path / "w.png", _img()))],
                 latency_repeats=0, fade=False, backend="onnx")


def test_piped_score_table_keeps_every_cell_whole(tmp_path):
    """Not on a terminal (a pipe, a log), the table is plain: one line per method, no cell cut or wrapped."""
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app

    for sub in ("SOTS-outdoor-long-subset-name", "HazeRD"):
        _write(tmp_path / "p" / "hazy" / f"{sub}_1.png", _img(24, 24, 3))
        _write(tmp_path / "p" / "gt" / f"{sub}_1.png", _img(24, 24, 4))
    res = CliRunner().invoke(app, ["evaluate", "--pairs", str(tmp_path / "p"), "-m", "input", "-m", "dcp@64",
                                   "--latency-repeats", "0", "-q"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = next(line for line in lines if line.startswith("method"))
    assert "latency 256x256" in header and "…" not in res.output
    for name in ("input", "dcp@64"):
        row = next(line for line in lines if line.startswith(name + " "))
        assert row.count("(n=") == 1 + len({c for c in header.split() if c not in ("method", "all", "params", "latency", "256x256")})


def test_cli_evaluate_takes_hazy_files_and_repeated_hazy(tmp_path):
    """Without ground truth, --hazy is repeatable and may name single photos, as dehaze's inputs."""
    from typer.testing import CliRunner

    from odcr_cli.cli.app import app

    rng = np.random.default_rng(0)
    photo = lambda: (np.clip(0.6 + 0.3 * rng.random((64, 64, 3)), 0, 1) * 255).astype(np.uint8)  # noqa: E731
    _write(tmp_path / "one.png", photo())
    _write(tmp_path / "folder" / "two.png", photo())
    res = CliRunner().invoke(app, ["evaluate", "--hazy", str(tmp_path / "one.png"), "--hazy", str(tmp_path / "folder"),
                                   "-m", "input", "--json", str(tmp_path / "e.json"), "--latency-repeats", "0"])
    assert res.exit_code == 0, res.output
    stems = [s["stem"] for s in json.loads((tmp_path / "e.json").read_text())["methods"]["input"]["images"]]
    assert sorted(stems) == ["one", "two"]
    res = CliRunner().invoke(app, ["evaluate", "--hazy", str(tmp_path / "nothing.png"), "-m", "input"])
    assert res.exit_code == 2 and "not found" in res.output


def test_pairs_are_read_upright_as_dehaze_reads_them(tmp_path):
    """A phone JPEG stores its pixels turned and an EXIF orientation: evaluation reads it upright
    (the one reader of odcr dehaze), so it pairs with its upright ground truth."""
    (tmp_path / "hazy").mkdir()
    (tmp_path / "gt").mkdir()
    yy, xx = np.mgrid[0:40, 0:64]
    upright = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=2).clip(0, 255).astype(np.uint8)
    Image.fromarray(upright).save(tmp_path / "gt" / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the pixels are stored turned the other way
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "hazy" / "a.jpg", quality=95,
                                                                       exif=exif)
    report = evaluate(pairs_dir=tmp_path, methods=["input"], fade=False).to_dict()
    assert not report.get("failures"), report.get("failures")
    assert report["methods"]["input"]["mean"]["psnr"] > 30  # the same picture, up to JPEG
