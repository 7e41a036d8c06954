"""Finding images and videos in folders, defined once for every command: which suffixes are
images or videos and how a folder is walked (sorted, hidden files and folders skipped)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# what odcr reads (odcr_cli.files.imageio through Pillow, OpenCV for 16-bit colour)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm"})
# image formats odcr neither reads nor writes, known by name so that `-o photo.heic` is refused
# as a photo it cannot write rather than taken for the name of a folder
FOREIGN_IMAGE_SUFFIXES = frozenset({".heic", ".heif", ".avif", ".jxl", ".jp2", ".ico", ".psd", ".tga", ".svg",
                                    ".dng", ".raw", ".cr2", ".nef", ".arw"})
# what odcr reads as video (odcr_cli.files.video, through PyAV)
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm"})


def is_image_name(path: Path) -> bool:
    """An image suffix (any case) and not a hidden file."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def is_video_name(path: str | Path) -> bool:
    """A video suffix (any case) and not a hidden file."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")


@dataclass
class FolderListing:
    """What a folder holds: its images, and what was not read (for the summary of a run)."""

    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    not_images: list[Path] = field(default_factory=list)
    subfolders: list[Path] = field(default_factory=list)   # not entered (not recursive)
    broken_links: list[Path] = field(default_factory=list)  # symlinks to nothing
    loops: list[Path] = field(default_factory=list)         # symlinked folders already walked
    left_out: list[Path] = field(default_factory=list)      # folders the caller asked to skip


def walk_folder(folder: Path, recursive: bool = True, skip: frozenset[str] = frozenset()) -> FolderListing:
    """Every file under ``folder`` (in sub-folders too when ``recursive``), sorted; anything under
    a hidden name is skipped. Symlinked folders are followed, each real folder once (a link back
    up the tree is listed in ``loops``, not walked again); symlinks to nothing are listed in
    ``broken_links``. Sub-folders whose real path is in ``skip`` (a run's output folder inside
    its input folder) are not entered: they are listed in ``left_out``."""
    listing = FolderListing()
    seen = {os.path.realpath(folder)}
    pending = [folder]
    while pending:
        here = pending.pop()
        for f in sorted(here.iterdir()):
            if f.name.startswith("."):
                continue
            if f.is_dir():
                if os.path.realpath(f) in skip:
                    listing.left_out.append(f)
                elif not recursive:
                    listing.subfolders.append(f)
                elif os.path.realpath(f) in seen:
                    listing.loops.append(f)
                else:
                    seen.add(os.path.realpath(f))
                    pending.append(f)
            elif f.is_file():
                (listing.images if is_image_name(f) else listing.videos if is_video_name(f)
                 else listing.not_images).append(f)
            elif f.is_symlink():
                listing.broken_links.append(f)
    listing.images.sort()
    listing.videos.sort()
    listing.not_images.sort()
    return listing


def list_images(path: str | Path) -> list[Path]:
    """A single file, or every image under a folder (recursively, sorted); FileNotFoundError else."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"no such file or folder: {p}")
    return walk_folder(p).images
