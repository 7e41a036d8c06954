import io
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_photo
from odcr_cli.cli.app import app
from odcr_cli.errors import UsageError
from odcr_cli.tasks.dehaze.options import DehazeOptions
from odcr_cli.tasks.dehaze.plan import gather_inputs, parse_shard, shard_items

runner = CliRunner()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _img(path, h=40, w=56, seed=0, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_photo(h, w, seed)).save(path, **kw)
    return path


def dehaze(*args, weights=None, input=None):
    extra = ["--weights", str(weights)] if weights else []
    return runner.invoke(app, ["dehaze", *map(str, args), *extra, "--max-side", "0"], input=input)


def test_single_file_default_name_and_output_file(tmp_path, tiny_weights):
    src = _img(tmp_path / "photo.jpg")
    before = src.read_bytes()
    r = dehaze(src, weights=tiny_weights)
    assert r.exit_code == 0, r.output
    out = tmp_path / "photo_dehazed.jpg"
    assert Image.open(out).size == (56, 40) and src.read_bytes() == before
    r = dehaze(src, "-o", tmp_path / "x" / "res.png", weights=tiny_weights)
    assert r.exit_code == 0 and Image.open(tmp_path / "x" / "res.png").format == "PNG"


def test_folder_recursive_mirrors_tree_glob_and_list(tmp_path, tiny_weights):
    _img(tmp_path / "in" / "a.jpg")
    _img(tmp_path / "in" / "sub" / "b.png")
    (tmp_path / "in" / "notes.txt").write_text("skip me")
    r = dehaze(tmp_path / "in", "-o", tmp_path / "out", "--recursive", "--ext", "webp", weights=tiny_weights)
    assert r.exit_code == 0, r.output
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")) == \
        ["a.webp", "sub/b.webp"]
    r = dehaze(str(tmp_path / "in" / "**" / "*.png"), "-o", tmp_path / "g", weights=tiny_weights)
    assert r.exit_code == 0 and (tmp_path / "g" / "sub" / "b.png").exists()
    lst = tmp_path / "list.txt"
    lst.write_text(f"{tmp_path / 'in' / 'a.jpg'}\n# comment\n{tmp_path / 'in' / 'sub' / 'b.png'}\n")
    r = runner.invoke(app, ["dehaze", "--input-list", str(lst), "-o", str(tmp_path / "l"), "--weights", str(tiny_weights)])
    mirrored = tmp_path / "l" / (tmp_path / "in").relative_to(tmp_path.anchor)  # absolute entries: their path
    assert r.exit_code == 0 and (mirrored / "sub" / "b.png").exists() and (mirrored / "a.jpg").exists()


def test_safety_input_collision_existing(tmp_path, tiny_weights):
    src = _img(tmp_path / "in" / "a.jpg")
    before = src.read_bytes()
    r = dehaze(tmp_path / "in", "-o", tmp_path / "in", "--suffix", "", weights=tiny_weights)
    assert r.exit_code == 2 and "refusing to overwrite the input" in r.output and src.read_bytes() == before
    _img(tmp_path / "in" / "a.png")
    r = dehaze(tmp_path / "in", "-o", tmp_path / "o", "--ext", "png", weights=tiny_weights)
    assert r.exit_code == 2 and "both be written" in r.output and not (tmp_path / "o").exists()
    (tmp_path / "in" / "a.png").unlink()
    assert dehaze(tmp_path / "in", "-o", tmp_path / "o", weights=tiny_weights).exit_code == 0
    r = dehaze(tmp_path / "in", "-o", tmp_path / "o", weights=tiny_weights)
    assert r.exit_code == 2 and "already exist" in r.output
    r = dehaze(tmp_path / "in", "-o", tmp_path / "o", "--skip-existing", "--json", "-", weights=tiny_weights)
    assert r.exit_code == 0 and '"status": "skipped"' in r.stdout
    assert dehaze(tmp_path / "in", "-o", tmp_path / "o", "--overwrite", weights=tiny_weights).exit_code == 0


def test_bad_file_isolated_json_report(tmp_path, tiny_weights):
    _img(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rep = tmp_path / "report.json"
    r = dehaze(tmp_path / "in", "-o", tmp_path / "o", "--json", rep, weights=tiny_weights)
    assert r.exit_code == 1, r.output
    data = json.loads(rep.read_text())
    status = {f["input"].split("/")[-1]: f for f in data["files"]}
    assert status["good.png"]["status"] == "ok" and status["bad.jpg"]["status"] == "failed"
    # the report names the file in "input"; "error" is the reason alone
    assert status["bad.jpg"]["error"].startswith("cannot read") and status["good.png"]["width"] == 56
    assert data["summary"] == {**data["summary"], "ok": 1, "failed": 1}
    assert data["backend"] == "torch" and data["device"] == "cpu" and len(data["weights_sha256"]) == 64
    assert (tmp_path / "o" / "good.png").exists() and not (tmp_path / "o" / "bad.jpg").exists()
    assert not list((tmp_path / "o").glob(".*tmp*"))  # atomic writes leave no temp files


def test_shards_partition_the_inputs(tmp_path):
    for k in range(9):
        _img(tmp_path / f"{k}.png", 8, 8)
    items = gather_inputs([str(tmp_path)]).items
    parts = [shard_items(items, parse_shard(f"{i}/3")) for i in range(3)]
    names = [sorted(it.source for it in p) for p in parts]
    assert sorted(sum(names, [])) == sorted(it.source for it in items)
    assert names == [sorted(it.source for it in shard_items(items, (i, 3))) for i in range(3)]  # deterministic
    r = runner.invoke(app, ["dehaze", str(tmp_path), "--shard", "3/3", "--method", "dcp"])
    assert r.exit_code == 2


def test_stdin_stdout_and_dcp_without_weights(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(make_photo(24, 32)).save(buf, "PNG")
    r = runner.invoke(app, ["dehaze", "-", "-o", "-", "--method", "dcp", "-q"], input=buf.getvalue())
    assert r.exit_code == 0, r.output
    out = Image.open(io.BytesIO(r.stdout_bytes))
    assert out.format == "PNG" and out.size == (32, 24)
    r = runner.invoke(app, ["dehaze", "-", "-o", "-", "--json", "-", "--method", "dcp"], input=buf.getvalue())
    assert r.exit_code == 2


def test_model_and_device_errors_exit_2(tmp_path, tiny_weights):
    src = _img(tmp_path / "a.png")
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "bundled.png")])
    assert r.exit_code == 0, r.output  # the bundled default works with no --weights
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "nope.png"), "--model", "nope"])
    assert r.exit_code == 2 and "no bundled model called 'nope'" in r.output
    assert not (tmp_path / "nope.png").exists()
    r = dehaze(src, "--half", "--device", "cpu", weights=tiny_weights)
    assert r.exit_code == 2 and "--half" in r.output
    r = dehaze(src, "--backend", "onnx", weights=tiny_weights)  # weights with no exported graph
    assert r.exit_code == 2 and "--onnx" in r.output
    assert dehaze(tmp_path / "missing.png", weights=tiny_weights).exit_code == 2


@pytest.mark.skipif(_cuda_available(), reason="needs a machine without CUDA: asking for it must be an error")
def test_cuda_requested_without_cuda_exits_2(tmp_path, tiny_weights):
    r = dehaze(_img(tmp_path / "a.png"), "--device", "cuda", weights=tiny_weights)
    assert r.exit_code == 2 and "CUDA is not available" in r.output


def test_tile_fast_mode_metadata_and_bomb_guard(tmp_path, tiny_weights):
    exif = Image.Exif()
    exif[0x0112] = 6
    src = _img(tmp_path / "a.jpg", 64, 96, exif=exif.tobytes())
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "t.jpg"), "--tile", "32",
                            "--max-side", "0", "--weights", str(tiny_weights), "--json", "-", "-q"])
    assert r.exit_code == 0 and json.loads(r.stdout)["files"][0]["mode"] == "tiled"
    assert Image.open(tmp_path / "t.jpg").size == (64, 96)  # orientation applied
    assert Image.open(tmp_path / "t.jpg").getexif().get(0x0112) == 1
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "f.jpg"), "--max-side", "48",
                            "--weights", str(tiny_weights), "--json", "-", "--strip-metadata"])
    assert r.exit_code == 0 and json.loads(r.stdout)["files"][0]["mode"] == "fast"
    assert len(Image.open(tmp_path / "f.jpg").getexif()) == 0
    r = dehaze(src, "-o", tmp_path / "b.jpg", "--max-pixels", "100", weights=tiny_weights)
    assert r.exit_code == 1 and "--max-pixels" in r.output


def test_options_dataclass_defaults():
    o = DehazeOptions()
    assert o.ext == "auto" and o.engine.max_side == "auto" and o.suffix is None
    with pytest.raises(UsageError, match="--shard 1/0"):
        parse_shard("1/0")


def test_onnx_model_problems_are_one_line_errors(tmp_path, tiny_weights):
    photo = _img(tmp_path / "a.png")
    for onnx in (tmp_path / "missing.onnx", tmp_path):  # absent, and a folder
        r = runner.invoke(app, ["dehaze", str(photo), "-o", str(tmp_path / "o.png"), "--onnx", str(onnx)])
        assert r.exit_code == 2 and r.output.startswith("error: ") and "Traceback" not in r.output, r.output
    r = runner.invoke(app, ["dehaze", str(photo), "-o", str(tmp_path / "o.png"), "--backend", "torch",
                            "--onnx", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "use --backend onnx" in r.output
    assert not (tmp_path / "o.png").exists()


def test_unusable_report_and_input_list_are_refused_before_any_work(tmp_path, tiny_weights):
    photo = _img(tmp_path / "a.png")
    (tmp_path / "paths.bin").write_bytes(bytes(range(256)))
    r = runner.invoke(app, ["dehaze", "--input-list", str(tmp_path / "paths.bin"), "-o", str(tmp_path / "o") + "/"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "not a text file" in r.output
    r = runner.invoke(app, ["dehaze", str(photo), "-o", str(tmp_path / "o.png"), "--json", str(tmp_path),
                            "--weights", str(tiny_weights)])
    assert r.exit_code == 2 and "is a folder" in r.output and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("args, says", [
    (["dehaze", "--bogus"], "No such option: --bogus"),
    (["dehaz", "x.jpg"], "No such command 'dehaz'"),
    (["train"], "Missing option '--hazy'"),
    (["dehaze", "x.jpg", "--strength", "abc"], "'--strength'"),
])
def test_usage_errors_are_one_line_in_the_house_style(args, says):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0] and "--help" in lines[0]


def test_weights_may_name_a_training_run_folder(tmp_path, tiny_weights):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_weights, run / "generator.safetensors")
    src = tmp_path / "a.png"
    Image.fromarray(make_photo(32, 40)).save(src)
    r = CliRunner().invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "out.png"), "--weights", str(run)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out.png").is_file()
    r = CliRunner().invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "o2.png"), "--weights", str(tmp_path)])
    assert r.exit_code == 2 and "generator.safetensors" in r.output and not (tmp_path / "o2.png").exists()


@pytest.mark.parametrize("extra", [["--weights", "w.safetensors"], ["--model", "x"], ["--tile", "256"], ["--half"]])
def test_network_options_with_dcp_are_refused_not_ignored(tmp_path, extra):
    src = tmp_path / "a.png"
    Image.fromarray(make_photo(32, 40)).save(src)
    r = CliRunner().invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "o.png"), "--method", "dcp", *extra])
    assert r.exit_code == 2 and extra[0] in r.output and "--method dcp" in r.output
    assert not (tmp_path / "o.png").exists()


def test_every_option_has_help_and_every_example_uses_real_flags():
    import shlex

    import typer

    from odcr_cli.cli.app import EXAMPLES

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert (param.help or "").strip(), f"odcr {name} {param.opts[0]} has no help text"
        assert EXAMPLES.get(name), f"odcr {name} has no examples"
        for line in EXAMPLES[name]:
            words = shlex.split(line)
            command_of_line = group.commands[words[1]]
            flags = {o.split("=")[0] for p in command_of_line.params for o in p.opts + p.secondary_opts}
            for w in words[2:]:
                if w.startswith("-") and w != "-":
                    assert w in flags, f"example {line!r}: {w} is not an option of odcr {words[1]}"


@pytest.mark.parametrize("name", ["out.bmp", "out.gif", "out.HEIC", "out.avif"])
def test_an_image_suffix_the_writer_cannot_write_is_refused(tmp_path, name):
    # not silently a folder called out.bmp/: the error names what can be written
    src = _img(tmp_path / "a.png")
    r = runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / name), "--method", "dcp"])
    assert r.exit_code == 2 and "cannot write" in r.output
    assert all(ext in r.output for ext in ("png", "jpg", "webp", "tif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    (tmp_path / "folder.gif").mkdir()   # an existing folder of that name is still a folder
    assert runner.invoke(app, ["dehaze", str(src), "-o", str(tmp_path / "folder.gif"), "--method", "dcp"]).exit_code == 0
    assert (tmp_path / "folder.gif" / "a.png").is_file()
