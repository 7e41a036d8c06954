"""Which hazy image goes with which ground truth, for ``odcr evaluate`` and training's validation.

Pairing (hazy file -> GT file, case-insensitive stems, same sub-folder)
    1. the same stem (``sots_in_1400.png`` <-> ``sots_in_1400.png``/``.jpg``);
    2. ``_hazy`` -> ``_GT`` (O-HAZE/I-HAZE ``01_outdoor_hazy.jpg`` <-> ``01_outdoor_GT.jpg``,
       NH-HAZE/Dense-Haze ``01_hazy.png`` <-> ``01_GT.png``);
    3. RESIDE: the stem without a trailing ``_<number>`` or ``_<number>_<number>`` (``1400_1.png``
       <-> ``1400.png``; ``0001_0.8_0.2.jpg`` <-> ``0001.png``).
    Hazy files with no (or an ambiguous) GT and GT files that no hazy image uses are listed in the
    :class:`Pairing`, never dropped silently. Several hazy images may share one GT (RESIDE ITS/OTS).

Subsets
    The image's sub-folder under the hazy folder when there is one, else the stem's prefix before
    the first ``_`` when that prefix contains a letter (``sots``, ``hazerd``), else none.

Sizes
    A GT larger than its hazy image by a uniform border (same width on all four sides, e.g.
    SOTS-indoor 640x480 vs 620x460: 10 px) is centre-cropped to the hazy size (:func:`match_gt`);
    any other size mismatch is an :class:`EvaluationError`.

Decoding
    Pillow, ``Image.convert("RGB")`` (no EXIF rotation; 16-bit files are reduced to 8 bits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from odcr_cli.errors import EvaluationError
from odcr_cli.files.folders import walk_folder

_RESIDE_SUFFIX = re.compile(r"_\d+(?:\.\d+)?(?:_\d+(?:\.\d+)?)?$")


@dataclass(frozen=True)
class Pair:
    stem: str          # hazy path relative to the hazy folder, without suffix ('indoor/1400_1')
    hazy: Path
    gt: Path | None    # None: a no-reference evaluation (FADE only)
    subset: str | None


@dataclass
class Pairing:
    pairs: list[Pair]
    unmatched_hazy: list[str] = field(default_factory=list)   # "path (reason)"
    unmatched_gt: list[str] = field(default_factory=list)


def gt_candidates(stem: str) -> list[str]:
    """Lower-case GT stems a hazy stem may pair with, in order of preference."""
    s = stem.lower()
    out = [s]
    if s.endswith("_hazy"):
        out.append(s[: -len("_hazy")] + "_gt")
    if "hazy" in s:
        out.append(s.replace("hazy", "gt"))
    reside = _RESIDE_SUFFIX.sub("", s)
    if reside != s and reside:
        out.append(reside)
    return list(dict.fromkeys(out))


def subset_of(rel: Path) -> str | None:
    """The subset of an image at ``rel`` (relative to the hazy folder); see the module doc."""
    if len(rel.parts) > 1:
        return "/".join(rel.parts[:-1])
    prefix = rel.stem.split("_", 1)[0]
    return prefix.lower() if "_" in rel.stem and re.search(r"[A-Za-z]", prefix) else None


def _gt_index(gt_dir: Path) -> dict[tuple[str, str], list[Path]]:
    """(lower-case sub-folder, lower-case stem) -> the GT files with that name."""
    index: dict[tuple[str, str], list[Path]] = {}
    for p in walk_folder(gt_dir).images:
        rel = p.relative_to(gt_dir)
        index.setdefault((str(rel.parent).lower(), rel.stem.lower()), []).append(p)
    return index


def _find_gt(rel: Path, index: dict[tuple[str, str], list[Path]]) -> tuple[Path | None, str]:
    """The GT of the hazy image at ``rel``, or None and why not."""
    folder = str(rel.parent).lower()
    for cand in gt_candidates(rel.stem):
        found = index.get((folder, cand))
        if found:
            if len(found) > 1:
                return None, "ambiguous GT: " + ", ".join(f.name for f in found)
            return found[0], ""
    return None, "no GT with a matching name"


def pair_images(hazy_dir: str | Path, gt_dir: str | Path) -> Pairing:
    """Pair every image under ``hazy_dir`` with its ground truth under ``gt_dir`` (see module doc)."""
    hazy_dir, gt_dir = Path(hazy_dir), Path(gt_dir)
    for d, what in ((hazy_dir, "hazy"), (gt_dir, "GT")):
        if not d.is_dir():
            raise EvaluationError(f"{what} folder not found: {d}")
    index = _gt_index(gt_dir)
    used: set[Path] = set()
    pairing = Pairing(pairs=[])
    for p in walk_folder(hazy_dir).images:
        rel = p.relative_to(hazy_dir)
        match, reason = _find_gt(rel, index)
        if match is None:
            pairing.unmatched_hazy.append(f"{rel} ({reason})")
            continue
        used.add(match)
        pairing.pairs.append(Pair(str(rel.with_suffix("")), p, match, subset_of(rel)))
    pairing.unmatched_gt = sorted(str(p.relative_to(gt_dir)) for ps in index.values() for p in ps if p not in used)
    return pairing


def hazy_only(hazy: str | Path | Sequence[str | Path]) -> Pairing:
    """Every image of one or more folders and files, without ground truth (a no-reference
    evaluation); a folder's images are named by their path inside it, a file by its name."""
    sources = [hazy] if isinstance(hazy, (str, Path)) else list(hazy)
    stems: dict[str, tuple[Path, Path]] = {}
    for source in map(Path, sources):
        if source.is_dir():
            found = [(p, p.relative_to(source)) for p in walk_folder(source).images]
        elif source.is_file():
            found = [(source, Path(source.name))]
        else:
            raise EvaluationError(f"hazy image or folder not found: {source}")
        for p, rel in found:
            stem = str(rel.with_suffix(""))
            if stem in stems:  # a.jpg and a.png would share a row and an output name
                raise EvaluationError(f"two images share the name {stem}: {stems[stem][0]} and {p}")
            stems[stem] = (p, rel)
    return Pairing(pairs=[Pair(stem, p, None, subset_of(rel)) for stem, (p, rel) in stems.items()])


def pairs_from_dir(pairs_dir: str | Path) -> Pairing:
    """``--pairs DIR``: DIR holds ``hazy/`` and ``gt/`` (or ``GT/``)."""
    d = Path(pairs_dir)
    gt = next((d / n for n in ("gt", "GT", "clear") if (d / n).is_dir()), d / "gt")
    return pair_images(d / "hazy", gt)


def match_gt(hazy: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, int]:
    """Return the (H, W, 3) GT cropped to the (H, W, 3) hazy size and the border removed (0 if none)."""
    (h, w), (gh, gw) = hazy.shape[:2], gt.shape[:2]
    if (h, w) == (gh, gw):
        return gt, 0
    dh, dw = gh - h, gw - w
    if dh == dw and dh > 0 and dh % 2 == 0:
        b = dh // 2
        return gt[b:b + h, b:b + w], b
    raise EvaluationError(f"GT is {gw}x{gh} but the hazy image is {w}x{h} (not a uniform border)")
