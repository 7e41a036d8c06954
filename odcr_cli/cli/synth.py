"""``odcr synth``: hazy training images from clear photos (:mod:`odcr_cli.tasks.synthesis`)."""

from __future__ import annotations

from pathlib import Path

import typer

from odcr_cli.cli.common import fail


def synth_command(
    clear: list[Path] = typer.Argument(..., help="Folders (or files) of clear photos."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder: hazy/, manifest.json, sources.txt."),
    fraction: float = typer.Option(1.0, "--fraction", help="Share of the clear photos to use (a seeded random subset)."),
    variants: int = typer.Option(1, "--variants", min=1, help="Hazy versions per clear photo."),
    seed: int = typer.Option(0, "--seed", help="Seed of the haze parameters and the choice of sources (same seed, same set)."),
    beta: str = typer.Option("0.5:3.0", "--beta", help="Range of the scattering coefficient (depth is relative, 0..1)."),
    airlight: str = typer.Option("0.7:1.0", "--airlight", help="Range of the airlight's grey level."),
    max_side: int = typer.Option(0, "--max-side", min=0, help="Downscale longer photos to this side first (0 = keep)."),
    ext: str = typer.Option("jpg", "--ext", help="jpg | png."),
    save_transmission: bool = typer.Option(False, "--save-transmission", help="Also write the transmission maps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs of an earlier run."),
) -> None:
    """Make hazy training images from clear photos (atmospheric scattering, plausible depth).

    Train with them as extra hazy data and keep their sources out of the clear pool:
    odcr train --hazy REAL --hazy OUT/hazy --clear CLEAR --exclude-clear OUT/sources.txt
    """
    from odcr_cli.imaging.haze_synthesis import SynthConfig
    from odcr_cli.tasks.synthesis import make_synthetic_set

    def span(text: str, name: str) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in text.split(":"))
        except ValueError:
            fail(f"--{name} {text}: expected LOW:HIGH, e.g. 0.5:3.0")
        return lo, hi

    cfg = SynthConfig(beta=span(beta, "beta"), airlight=span(airlight, "airlight"))  # SynthesisError: one line

    def report(path: Path, error: str | None) -> None:
        if error:
            typer.echo(f"skipped {path}: {error}", err=True)

    result = make_synthetic_set(clear, out, fraction=fraction, variants=variants, seed=seed, cfg=cfg, ext=ext,
                                max_side=max_side, save_transmission=save_transmission, overwrite=overwrite,
                                on_file=report)
    typer.echo(f"wrote {len(result.written)} hazy image(s) from {len(result.sources)} clear photo(s) to "
               f"{out / 'hazy'}; {len(result.failed)} failed; manifest {result.manifest}", err=True)
    raise typer.Exit(1 if result.failed else 0)


