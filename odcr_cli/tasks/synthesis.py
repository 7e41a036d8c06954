"""``odcr synth``: a folder of synthetic hazy photos (and their transmissions) made from a folder
of clear photos by :mod:`odcr_cli.imaging.haze_synthesis`, with a manifest and the list of
sources (so that training can leave them out of its clear pool).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from odcr_cli.errors import SynthesisError
from odcr_cli.imaging.haze_synthesis import HazeParams, SynthConfig, synthesize


# --- a synthetic hazy set from a clear folder (the ``odcr synth`` task) ------------------------

@dataclass(frozen=True)
class SynthResult:
    written: list[Path]
    sources: list[Path]                 # the clear photos used (sources.txt lists all chosen ones)
    failed: list[tuple[Path, str]]
    manifest: Path


def choose_sources(files: list[Path], fraction: float, seed: int) -> list[Path]:
    """A deterministic random subset (at least one file) of ``files``, in their listed order."""
    if not 0 < fraction <= 1:
        raise SynthesisError(f"fraction: expected a number in (0, 1], got {fraction}")
    if not files:
        return []
    count = max(1, round(fraction * len(files)))
    keep = set(np.random.default_rng([seed, 7]).permutation(len(files))[:count].tolist())
    return [f for i, f in enumerate(files) if i in keep]


def _output_stem(source: Path, roots: list[Path]) -> str:
    for root in roots:
        if root.is_dir() and source.is_relative_to(root):
            return "__".join(source.relative_to(root).with_suffix("").parts)
    return source.stem


@dataclass(frozen=True)
class _Job:
    """One hazy image to write: its source, outputs and variant number."""
    source: Path
    hazy: Path
    transmission: Path
    variant: int


def _plan(clear: list[Path], out_dir: Path, fraction: float, variants: int, seed: int, ext: str,
          save_transmission: bool, overwrite: bool) -> tuple[list[Path], list[Path], list[_Job]]:
    """(every clear photo, the chosen sources, the jobs), or SynthesisError before any work."""
    from odcr_cli.files.folders import list_images

    if variants < 1:
        raise SynthesisError(f"variants: expected at least 1, got {variants}")
    if ext not in ("jpg", "png"):
        raise SynthesisError(f"ext: expected jpg or png, got {ext}")
    roots = [Path(p).resolve() for p in clear]
    out_abs = out_dir.resolve()
    for root in roots:
        if out_abs == root or out_abs.is_relative_to(root) or (root.is_dir() and root.is_relative_to(out_abs)):
            raise SynthesisError(f"the output folder {out_dir} overlaps the clear folder {root}; choose a folder outside it")
    try:
        files = sorted({f.resolve() for root in roots for f in list_images(root)})
    except FileNotFoundError as exc:
        raise SynthesisError(str(exc)) from None
    if not files:
        raise SynthesisError(f"no images under {', '.join(map(str, clear))}")
    sources = choose_sources(files, fraction, seed)
    stems = [_output_stem(s, roots) for s in sources]
    if len(set(stems)) != len(stems):
        twin = next(s for s in stems if stems.count(s) > 1)
        raise SynthesisError(f"two clear photos map to the output name {twin!r} (same name, other suffix); rename one")
    hazy_dir, t_dir = out_dir / "hazy", out_dir / "transmission"
    jobs = [_Job(src, hazy_dir / f"{stem}_haze{k}.{ext}", t_dir / f"{stem}_haze{k}.png", k)
            for src, stem in zip(sources, stems) for k in range(variants)]
    _refuse_existing(out_dir, jobs, save_transmission, overwrite)
    return files, sources, jobs


def _refuse_existing(out_dir: Path, jobs: list[_Job], save_transmission: bool, overwrite: bool) -> None:
    """Outputs that exist are refused unless ``overwrite``; hazy images this run would not write always."""
    if not overwrite:
        clash = [j.hazy for j in jobs if j.hazy.exists() or (save_transmission and j.transmission.exists())]
        clash += [p for p in (out_dir / "manifest.json", out_dir / "sources.txt") if p.exists()]
        if clash:
            raise SynthesisError(f"{len(clash)} output(s) exist already, e.g. {clash[0]} (--overwrite replaces them)")
    hazy_dir = out_dir / "hazy"
    planned = {j.hazy for j in jobs}
    stale = sorted(p for p in hazy_dir.glob("*") if p.is_file() and p not in planned) if hazy_dir.is_dir() else []
    if stale:
        raise SynthesisError(f"{hazy_dir} holds {len(stale)} image(s) this run would not write, e.g. {stale[0].name}; "
                             "use an empty output folder")


def _write_variants(src: Path, jobs: list[_Job], rng_of: Callable[[int], np.random.Generator], cfg: SynthConfig,
                    ext: str, quality: int, max_side: int, save_transmission: bool) -> Iterator[tuple[_Job, HazeParams]]:
    """Each variant of one clear photo, written atomically, yielded once it is on disk; an
    unreadable photo raises."""
    from odcr_cli.files.fsutil import atomic_path
    from odcr_cli.files.imageio import read_rgb8

    im = Image.fromarray(read_rgb8(src))  # numpy and Pillow only: synth runs on the base install
    if max_side and max(im.size) > max_side:
        k = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.LANCZOS)
    rgb = np.asarray(im, np.float32) / 255.0
    for job in jobs:
        hazy, t, params = synthesize(rgb, rng_of(job.variant), cfg)
        with atomic_path(job.hazy) as tmp:
            Image.fromarray(np.round(hazy * 255).astype(np.uint8)).save(
                tmp, format="JPEG" if ext == "jpg" else "PNG", **({"quality": quality} if ext == "jpg" else {}))
        if save_transmission:
            with atomic_path(job.transmission) as tmp:
                Image.fromarray(np.round(t * 255).astype(np.uint8)).save(tmp, format="PNG")
        yield job, params


def make_synthetic_set(clear: list[Path], out_dir: Path, *, fraction: float = 1.0, variants: int = 1,
                       seed: int = 0, cfg: SynthConfig = SynthConfig(), ext: str = "jpg", quality: int = 95,
                       max_side: int = 0, save_transmission: bool = False, overwrite: bool = False,
                       on_file: Callable[[Path, str | None], None] | None = None) -> SynthResult:
    """Write hazy versions of (a fraction of) the clear photos under ``clear`` to OUT/hazy/.

    OUT/sources.txt lists the clear photos chosen, one absolute path per line, for
    ``odcr train --exclude-clear``; it is written before any image, so that an interrupted run
    never leaves hazy images whose sources are unlisted. OUT/manifest.json records every output
    with its source and parameters. Outputs are a function of (seed, source position, variant):
    rerunning reproduces them. OUT may not lie inside a clear folder (its images would join the
    clear pool). Existing outputs are refused before any work unless ``overwrite``, and even then
    hazy images that this run would not write are refused (their sources would go unlisted);
    a bad source is reported and skipped. Refusals are :class:`~odcr_cli.errors.SynthesisError`."""
    from odcr_cli.files.fsutil import atomic_output

    files, sources, jobs = _plan(clear, out_dir, fraction, variants, seed, ext, save_transmission, overwrite)
    with atomic_output(out_dir / "sources.txt", "w") as fh:
        fh.writelines(f"{p}\n" for p in sources)
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    records: list[dict] = []
    used: list[Path] = []
    position = {f: i for i, f in enumerate(files)}
    for src in sources:
        def rng_of(variant: int, src: Path = src) -> np.random.Generator:
            return np.random.default_rng([seed, position[src], variant])

        try:
            for job, params in _write_variants(src, [j for j in jobs if j.source == src], rng_of, cfg, ext,
                                               quality, max_side, save_transmission):
                written.append(job.hazy)
                records.append({"file": str(job.hazy.relative_to(out_dir)), "source": str(src),
                                "variant": job.variant, **asdict(params)})
                if on_file:
                    on_file(job.hazy, None)
        except Exception as exc:  # per-file isolation: one bad photo never stops the set
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            failed.append((src, reason))
            if on_file:
                on_file(src, reason)
            continue
        used.append(src)

    manifest = out_dir / "manifest.json"
    with atomic_output(manifest, "w") as fh:
        json.dump({"model": "I = J t + A (1 - t), t = exp(-beta d), plausible depth (odcr_cli.tasks.synthesis)",
                   "seed": seed, "fraction": fraction, "variants": variants, "config": asdict(cfg),
                   "clear_folders": [str(Path(p).resolve()) for p in clear], "images": records,
                   "failed": [{"source": str(p), "error": e} for p, e in failed]}, fh, indent=1)
    return SynthResult(written, used, failed, manifest)
