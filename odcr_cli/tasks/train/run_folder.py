"""The files of a training run, all under one folder (rank 0 writes them).

Layout of a run folder::

    RUN_DIR/config.json                      effective configuration (updated on resume)
    RUN_DIR/log.jsonl                        every loss term, learning rate and speed
    RUN_DIR/samples/iter_XXXXXXXX.jpg        input | output grid of a fixed set of hazy crops
    RUN_DIR/checkpoints/ckpt_XXXXXXXX.pt     full training state (the last K are kept)
    RUN_DIR/checkpoints/generator_XXXXXXXX.safetensors
    RUN_DIR/generator.safetensors            generator of the newest checkpoint, for dehaze/export
    RUN_DIR/report.html                      curves, samples and configuration (rewritten at every checkpoint)

Every file but ``log.jsonl`` (appended to, one JSON record a line) is replaced atomically, so an
interrupted run never leaves half a checkpoint behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from odcr_cli.errors import TrainingError
from odcr_cli.files.fsutil import atomic_output
from odcr_cli.files.weights_io import RUN_GENERATOR, save_generator
from odcr_cli.tasks.train.report import write_training_report

CKPT_RE = re.compile(r"ckpt_(\d{8})\.pt$")


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every checkpoint of ``run_dir``, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_RE.search(p.name))]
    return sorted(found)


def load_latest_checkpoint(run_dir: Path, warn: Callable[[str], None]) -> dict | None:
    """Newest checkpoint that loads; a damaged newest one is reported and skipped."""
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: fall back to the previous one
            warn(f"checkpoint {path.name} is unreadable ({type(exc).__name__}); trying an older one")
    return None


class RunFolder:
    """Reads and writes everything under one run folder (see the module's layout)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    def checkpoints(self) -> list[tuple[int, Path]]:
        return list_checkpoints(self.path)

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint file, readable or not (None: there is none)."""
        found = self.checkpoints()
        return found[-1][1] if found else None

    def load_latest_checkpoint(self, warn: Callable[[str], None]) -> dict | None:
        return load_latest_checkpoint(self.path, warn)

    def state_to_resume(self, resume: bool, say: Callable[[str], None]) -> dict | None:
        """The checkpoint to resume from (None: a new run); a new run never overwrites an old one."""
        if not resume:
            if self.checkpoints():
                raise TrainingError(f"{self.path} already holds a run; "
                                    "use --resume to continue it or choose another --out")
            return None
        state = self.load_latest_checkpoint(say)
        if state is None:
            raise TrainingError(f"--resume: no readable checkpoint in {self.checkpoint_dir}")
        return state

    def write_config(self, effective: dict) -> None:
        """Create the folder and (re)write config.json."""
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_output(self.path / "config.json", "w") as fh:
            json.dump(effective, fh, indent=2)

    def append(self, record: dict) -> None:
        """Add one record to log.jsonl (opened per record: a crash loses nothing already logged)."""
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def save_checkpoint(self, iteration: int, state: dict, generator: nn.Module,
                        metadata: dict[str, str], keep: int) -> Path:
        """Write the training state and the generator files of ``iteration``, then delete all
        but the newest ``keep`` checkpoints (with their generator copies). Returns the checkpoint."""
        folder = self.checkpoint_dir
        ckpt = folder / f"ckpt_{iteration:08d}.pt"
        with atomic_output(ckpt) as fh:
            torch.save(state, fh)
        save_generator(folder / f"generator_{iteration:08d}.safetensors", generator, metadata)
        save_generator(self.path / RUN_GENERATOR, generator, metadata)
        for old_it, old in self.checkpoints()[:-keep]:
            old.unlink(missing_ok=True)
            (folder / f"generator_{old_it:08d}.safetensors").unlink(missing_ok=True)
        return ckpt

    def save_sample(self, iteration: int, grid: np.ndarray) -> Path:
        """Write an (H, W, 3) uint8 image as samples/iter_XXXXXXXX.jpg."""
        path = self.path / "samples" / f"iter_{iteration:08d}.jpg"
        with atomic_output(path) as fh:
            Image.fromarray(grid).save(fh, format="JPEG", quality=90)
        return path

    def update_report(self, say: Callable[[str], None]) -> None:
        """Rewrite report.html; a page that cannot be written is reported and never stops training."""
        try:
            write_training_report(self.path)
        except Exception as exc:  # noqa: BLE001 - a report bug must not cost a long GPU run
            say(f"warning: {self.report_path} not updated: {type(exc).__name__}: {exc}")
