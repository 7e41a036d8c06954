"""Training data: photos as they come, deterministic unpaired sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from odcr_cli.tasks.train.data import CropSpec, ImageFolder, UnpairedSampler, list_images, load_rgb


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rot.jpg").size == (20, 40)


def test_modes_and_small_images_become_full_rgb_crops(tmp_path: Path) -> None:
    Image.new("L", (10, 12), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (50, 30), (0, 0, 0, 0)).save(tmp_path / "alpha.png")
    Image.new("CMYK", (40, 40)).save(tmp_path / "cmyk.jpg")
    folder = ImageFolder(list_images(tmp_path), CropSpec(crop=32, load_size=36))
    assert len(folder) == 3 and not folder.skipped
    rng = np.random.default_rng(0)
    for i in range(3):
        t = folder.sample(i, rng)
        assert t.shape == (3, 32, 32) and t.min() >= -1 and t.max() <= 1
    # transparent pixels are composited on white, not left black
    assert torch.allclose(folder.sample(0, rng), torch.ones(3, 32, 32))


def test_sampling_is_a_function_of_seed_and_index(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / f"h{i}.png")
    spec = CropSpec(crop=32, load_size=40)
    folder = ImageFolder(list_images(tmp_path), spec)
    a, b = UnpairedSampler(folder, folder, seed=1), UnpairedSampler(folder, folder, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.batch(7, 2), b.batch(7, 2)))
    # every epoch visits each hazy image once, in a new order
    first_epoch = sorted(a.hazy_index(i) for i in range(3))
    assert first_epoch == [0, 1, 2]
    other = UnpairedSampler(folder, folder, seed=2)
    assert [a.hazy_index(i) for i in range(30)] != [other.hazy_index(i) for i in range(30)]


def test_several_folders_are_pooled_once_and_listed_files_excluded(tmp_path: Path) -> None:
    from odcr_cli.tasks.train.data import gather_images

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{name}{i}.png")
    listing = tmp_path / "sources.txt"
    listing.write_text(f"{(tmp_path / 'b' / 'b1.png').resolve()}\n\n")
    files, dropped = gather_images([tmp_path / "a", tmp_path / "b", tmp_path / "a" / "a0.png"], [listing])
    assert [f.name for f in files] == ["a0.png", "a1.png", "a2.png", "b0.png", "b2.png"] and dropped == 1


def test_sixteen_bit_grey_keeps_its_tones(tmp_path: Path) -> None:
    Image.fromarray(np.full((6, 6), 40000, np.uint16)).save(tmp_path / "g16.png")
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (6, 6, 3) and np.all(rgb == round(40000 * 255 / 65535))
