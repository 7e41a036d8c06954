"""The options of one ``odcr dehaze`` run, as the task takes them (the CLI fills them in): where
to read and write, and the engine's own options whole (:class:`~odcr_cli.engine.options.EngineOptions`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from odcr_cli.engine.options import EngineOptions


@dataclass
class DehazeOptions:
    inputs: list[str] = field(default_factory=list)
    output: str | None = None
    recursive: bool = False
    input_list: str | None = None
    suffix: str | None = None          # default: "_dehazed" beside the input, "" in an -o folder
    ext: str = "auto"
    quality: int | None = None
    overwrite: bool = False
    skip_existing: bool = False
    shard: str | None = None           # "i/N", 0 <= i < N
    engine: EngineOptions = field(default_factory=EngineOptions)  # the model, device, strength, --save-transmission...
    max_pixels: int | None = None
    strip_metadata: bool = False
    workers: int = 2
    dry_run: bool = False              # plan and report only: no model, nothing written
    json_report: str | None = None     # only checked up front (its folder must be writable)
    codec: str | None = None           # videos: --codec (None: H.264, VP9 into .webm)
    crf: int | None = None             # videos: --crf (None: the codec's near-lossless default)
    preset: str | None = None          # videos: --preset (None: the codec's default here)


# --save-transmission writes these beside each photo's output: <stem>_transmission.png, <stem>_depth.png
TRANSMISSION_KINDS = ("transmission", "depth")


def transmission_paths(output: str) -> list[str]:
    """The 16-bit PNGs ``--save-transmission`` writes beside ``output``: t, and the relative depth -ln t."""
    out = Path(output)
    return [str(out.with_name(f"{out.stem}_{kind}.png")) for kind in TRANSMISSION_KINDS]
