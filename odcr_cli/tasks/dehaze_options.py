"""The options of one ``odcr dehaze`` run, as the task takes them (the CLI fills them in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from odcr_cli.engine.options import AUTO, BackendChoice, Device, MaxSide, Method


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
    weights: str | None = None
    model: str | None = None          # a bundled model by name (None: the default)
    method: Method = Method.ODCR       # the engine's options, parsed by the CLI (Dehazer parses strings too)
    device: Device = Device()
    half: bool = False
    backend: BackendChoice = BackendChoice.AUTO
    onnx: str | None = None
    tile: int | None = None
    max_side: MaxSide = AUTO
    max_pixels: int | None = None
    strip_metadata: bool = False
    workers: int = 2
    threads: int | None = None         # --threads: CPU threads of the network and OpenCV (None: all cores)
    save_transmission: bool = False    # photos: also write t and -ln t as 16-bit PNGs beside each output
    strength: float = 1.0              # 0 = the input, 1 = full dehazing
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
