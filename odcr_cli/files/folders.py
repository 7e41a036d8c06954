"""Finding images in folders, defined once for every command: which suffixes are images and how
a folder is walked (sorted, hidden files and folders skipped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# what odcr reads (odcr_cli.files.imageio through Pillow, OpenCV for 16-bit colour)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm"})


def is_image_name(path: Path) -> bool:
    """An image suffix (any case) and not a hidden file."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


@dataclass
class FolderListing:
    """What a folder holds: its images, and what was not read (for the summary of a run)."""

    images: list[Path] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)
    subfolders: list[Path] = field(default_factory=list)   # not entered (not recursive)


def walk_folder(folder: Path, recursive: bool = True) -> FolderListing:
    """Every file under ``folder`` (in sub-folders too when ``recursive``), sorted; anything under
    a hidden name is skipped."""
    listing = FolderListing()
    entries = sorted(folder.rglob("*") if recursive else folder.iterdir())
    for f in entries:
        if any(part.startswith(".") for part in f.relative_to(folder).parts):
            continue
        if f.is_file():
            (listing.images if is_image_name(f) else listing.not_images).append(f)
        elif f.is_dir() and not recursive:
            listing.subfolders.append(f)
    return listing


def list_images(path: str | Path) -> list[Path]:
    """A single file, or every image under a folder (recursively, sorted); FileNotFoundError else."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"no such file or folder: {p}")
    return walk_folder(p).images
