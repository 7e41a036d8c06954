"""Scale-out on a real engine: ``Dehazer`` as a Ray Data batch callable (``pip install ".[ray]"``).

A folder of real photos is read with Ray Data, dehazed by ``map_batches`` on a local Ray instance
with 2 CPUs, written by the workers, and compared with single-process ``odcr dehaze``: the pixels
must be identical.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]' runs this test")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install '.[ray]' runs this test")

from odcr_cli.cli.app import app  # noqa: E402
from odcr_cli.engine.dehazer import Dehazer  # noqa: E402

REAL_HAZY = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dev" / "real_hazy"
# small photos of different sizes and formats, 8-bit RGB without an EXIF orientation
PHOTOS = ("ridcp_tree.png", "utk_fishers.jpg", "ridcp_flags.png")
RAY_TIMEOUT_S = 300


def _photos(folder: Path) -> Path:
    """Real photos when the shared data is there, else generated ones of the same kinds."""
    folder.mkdir()
    if all((REAL_HAZY / name).is_file() for name in PHOTOS):
        for name in PHOTOS:
            shutil.copy(REAL_HAZY / name, folder / name)
    else:
        from conftest import make_photo

        for k, (name, (h, w)) in enumerate(zip(PHOTOS, ((307, 215), (346, 512), (500, 332)))):
            Image.fromarray(make_photo(h, w, seed=k)).save(folder / name, quality=90)
    return folder


def write_png(batch: dict, out_dir: str) -> dict:
    """The last stage, on the workers: each dehazed image to OUT_DIR/<stem>.png."""
    written = []
    for image, path in zip(batch["image"], batch["path"]):
        target = Path(out_dir) / f"{Path(path).stem}.png"
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(target)
        written.append(str(target))
    return {"written": np.array(written)}


@pytest.fixture(scope="module")
def local_ray():
    import sys

    # workers cannot import this test module: send write_png by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, on its context
def test_ray_data_map_batches_matches_odcr_dehaze(tmp_path, tiny_weights, local_ray):
    photos = _photos(tmp_path / "photos")
    out_ray, out_cli = tmp_path / "ray", tmp_path / "cli"
    out_ray.mkdir()

    ds = ray.data.read_images(str(photos), mode="RGB", include_paths=True)
    # two Dehazer actors (each loads the model once) on half a CPU each, so that reading and
    # writing tasks still find a CPU of the two: whole CPUs for everything would deadlock
    ds = ds.map_batches(Dehazer, fn_constructor_kwargs={"weights": str(tiny_weights), "backend": "torch",
                                                        "device": "cpu"},
                        concurrency=2, num_cpus=0.5, batch_size=2, batch_format="numpy")
    ds = ds.map_batches(write_png, fn_kwargs={"out_dir": str(out_ray)}, num_cpus=0.25, batch_format="numpy")
    with ThreadPoolExecutor(1) as pool:  # a stalled pipeline fails the test instead of hanging CI
        rows = pool.submit(ds.take_all).result(timeout=RAY_TIMEOUT_S)
    written = sorted(Path(row["written"]).name for row in rows)
    assert written == sorted(f"{Path(name).stem}.png" for name in PHOTOS)

    r = CliRunner().invoke(app, ["dehaze", str(photos), "-o", str(out_cli), "--ext", "png", "-q",
                                 "--weights", str(tiny_weights), "--backend", "torch", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for name in written:
        a = np.asarray(Image.open(out_ray / name))
        b = np.asarray(Image.open(out_cli / name))
        assert a.shape == b.shape and np.array_equal(a, b), name
        hazy = np.asarray(Image.open(next(photos.glob(f"{Path(name).stem}.*"))).convert("RGB"))
        assert a.shape == hazy.shape and not np.array_equal(a, hazy), name  # the network ran
