"""Unpaired training data: folders of ordinary photos of any size and mode.

Sampling is a pure function of (seed, sample index): the hazy folder is walked in a fresh
shuffled order every epoch, the clear image is drawn uniformly at random (CUT's unaligned
loader), and the crop and flip come from the same per-index generator. A resumed or
distributed run therefore sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from odcr_cli.haze.network_input import to_signed, to_unit
from odcr_cli.errors import ImageReadError, TrainingError
from odcr_cli.files.folders import list_images
from odcr_cli.files.imageio import read_rgb8
from odcr_cli.imaging.haze_synthesis import SynthConfig, synthesize


def gather_images(paths: Sequence[str | Path], exclude_lists: Sequence[str | Path] = ()) -> tuple[list[Path], int]:
    """Every image of several files/folders (duplicates once), minus the files named in the
    ``exclude_lists`` (text files, one path per line, e.g. the sources.txt of ``odcr synth``).

    Returns (files, how many were excluded)."""
    excluded: set[Path] = set()
    for listing in exclude_lists:
        lines = Path(listing).read_text(encoding="utf-8").splitlines()
        excluded.update(Path(line.strip()).resolve() for line in lines if line.strip())
    seen: set[Path] = set()
    files: list[Path] = []
    dropped = 0
    for path in paths:
        for f in list_images(path):
            key = f.resolve()
            if key in seen:
                continue
            seen.add(key)
            if key in excluded:
                dropped += 1
            else:
                files.append(f)
    return files, dropped


def load_rgb(path: Path) -> Image.Image:
    """The photo as a PIL RGB image, read by the one reader (:func:`odcr_cli.files.imageio.read_rgb8`)."""
    return Image.fromarray(read_rgb8(path))


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float32 in [-1, 1]."""
    arr = to_signed(np.asarray(im, dtype=np.float32) / 255.0)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


@dataclass(frozen=True)
class CropSpec:
    crop: int = 256
    load_size: int = 286
    preprocess: str = "scale_shortside_crop"
    flip: bool = True


class ImageFolder:
    """Decoded, pre-scaled images of one domain, cached in memory (the pools are small)."""

    def __init__(self, files: list[Path], spec: CropSpec, on_skip: Callable[[Path, str], None] | None = None) -> None:
        self.spec = spec
        self.images: list[Image.Image] = []
        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        for f in files:
            try:
                self.images.append(self._prescale(load_rgb(f)))
                self.files.append(f)
            except ImageReadError as exc:  # one line naming the file and why
                reason = exc.reason
                self.skipped.append((f, reason))
                if on_skip:
                    on_skip(f, reason)

    def _prescale(self, im: Image.Image) -> Image.Image:
        s = self.spec
        if s.preprocess == "resize_crop":
            return im.resize((s.load_size, s.load_size), Image.BICUBIC)
        w, h = im.size
        short = min(w, h)
        # scale_shortside_crop: shorter side -> load_size; crop: native size, upscaled only if
        # smaller than the crop (small images are upscaled, never skipped)
        target = s.load_size if s.preprocess == "scale_shortside_crop" else max(short, s.crop)
        if short != target:
            k = target / short
            im = im.resize((max(s.crop, round(w * k)), max(s.crop, round(h * k))), Image.BICUBIC)
        return im

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        im = self.images[index]
        s = self.spec
        w, h = im.size
        x = int(rng.integers(0, w - s.crop + 1))
        y = int(rng.integers(0, h - s.crop + 1))
        patch = im.crop((x, y, x + s.crop, y + s.crop))
        t = to_tensor(patch)
        if s.flip and rng.random() < 0.5:
            t = torch.flip(t, dims=[2])
        return t


class UnpairedSampler:
    """Batches of (hazy, clear) crops as a deterministic function of the sample index; with
    ``synthetic`` (the ranges to draw from), also a synthetic hazy version of each clear crop and
    its true transmission (``odcr_cli.imaging.haze_synthesis``: plausible depth, random haze
    density and airlight)."""

    def __init__(self, hazy: ImageFolder, clear: ImageFolder, seed: int,
                 synthetic: SynthConfig | None = None) -> None:
        if len(hazy) == 0 or len(clear) == 0:
            raise ValueError("both the hazy and the clear pool need at least one readable image")
        self.hazy, self.clear, self.seed, self.synthetic = hazy, clear, seed, synthetic

    def hazy_index(self, sample: int) -> int:
        """Which hazy image sample ``sample`` crops: each epoch visits every one once, in its own order."""
        epoch, pos = divmod(sample, len(self.hazy))
        order = np.random.default_rng([self.seed, 1, epoch]).permutation(len(self.hazy))
        return int(order[pos])

    def item(self, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 2, sample])
        hazy = self.hazy.sample(self.hazy_index(sample), rng)
        clear = self.clear.sample(int(rng.integers(0, len(self.clear))), rng)
        return hazy, clear

    def synthetic_item(self, sample: int, clear: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A clear crop (3, H, W) in [-1, 1] -> (synthetic hazy crop (3, H, W) in [-1, 1], its
        true t (1, H, W)), drawn from the sample's own generator."""
        rng = np.random.default_rng([self.seed, 4, sample])
        hazy, t, _ = synthesize(to_unit(clear.numpy().transpose(1, 2, 0)), rng, self.synthetic)
        return torch.from_numpy(to_signed(hazy).transpose(2, 0, 1).copy()), torch.from_numpy(t[None].copy())

    def batch(self, first_sample: int, size: int) -> tuple[torch.Tensor, ...]:
        """(hazy, clear), each (size, 3, crop, crop); with ``synthetic`` also (synthetic hazy,
        its t (size, 1, crop, crop))."""
        items = [self.item(first_sample + i) for i in range(size)]
        hazy, clear = torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        if self.synthetic is None:
            return hazy, clear
        pairs = [self.synthetic_item(first_sample + i, c) for i, c in enumerate(clear)]
        return hazy, clear, torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])


def load_pools(hazy: Sequence[str], clear: Sequence[str], exclude_clear: Sequence[str], spec: CropSpec, seed: int,
               synthetic: SynthConfig | None, say: Callable[[str], None]
               ) -> tuple[ImageFolder, ImageFolder, UnpairedSampler]:
    """The decoded hazy and clear pools and their sampler; unreadable images are reported and skipped."""
    try:
        hazy_files, _ = gather_images(hazy)
        clear_files, n_excluded = gather_images(clear, exclude_clear)
    except FileNotFoundError as exc:
        raise TrainingError(str(exc)) from None
    except (OSError, ValueError) as exc:  # an unreadable or binary --exclude-clear list
        raise TrainingError(f"cannot read the image lists: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if exclude_clear:
        say(f"left {n_excluded} clear image(s) out of the clear pool (--exclude-clear)")

    def skip(path: Path, why: str) -> None:
        say(f"skipped unreadable image {path}: {why}")

    hazy_pool, clear_pool = ImageFolder(hazy_files, spec, skip), ImageFolder(clear_files, spec, skip)
    try:
        sampler = UnpairedSampler(hazy_pool, clear_pool, seed, synthetic)
    except ValueError as exc:
        raise TrainingError(f"{exc} (hazy: {', '.join(hazy)}; clear: {', '.join(clear)})") from None
    if len(hazy_pool) == 1:
        say("one hazy image: single-image translation, negatives drawn from that image")
    return hazy_pool, clear_pool, sampler


def center_crop(im: Image.Image, size: int) -> torch.Tensor:
    """The middle ``size`` x ``size`` of an image -> (3, size, size) in [-1, 1]."""
    w, h = im.size
    x, y = (w - size) // 2, (h - size) // 2
    return to_tensor(im.crop((x, y, x + size, y + size)))
