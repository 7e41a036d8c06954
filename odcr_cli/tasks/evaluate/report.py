"""The scores of an ``odcr evaluate`` run (data only) and their JSON and CSV files.

Means are plain means of per-image values, over all images and per subset; medians likewise.
Non-finite and missing scores (no ground truth, ``--no-fade``, FADE undefined) are left out of
both. The conventions behind each number are in ``odcr_cli.tasks.evaluate.evaluation``.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from odcr_cli.tasks.evaluate.pairing import Pairing

METRICS = ("psnr", "ssim", "fade")


@dataclass
class ImageScore:
    stem: str
    subset: str | None
    psnr: float | None      # None without ground truth
    ssim: float | None
    fade: float | None = None   # None when FADE is off or undefined for this output


def _stats(values: Sequence[float | None], how: Callable[[list[float]], float]) -> float | None:
    """``how`` (mean, median) of the finite values; None when there are none."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(how(vals)) if vals else None


@dataclass
class MethodResult:
    name: str
    kind: str
    description: str = ""
    images: list[ImageScore] = field(default_factory=list)
    parameters: int | None = None
    latency: dict | None = None

    @staticmethod
    def _mean(scores: Sequence[ImageScore]) -> dict:
        """Means of psnr, ssim, fade (None where not measured: no GT, --no-fade) and n."""
        return {**{m: _stats([getattr(s, m) for s in scores], np.mean) for m in METRICS}, "n": len(scores)}

    @staticmethod
    def _median(scores: Sequence[ImageScore]) -> dict:
        return {m: _stats([getattr(s, m) for s in scores], statistics.median) for m in METRICS}

    @property
    def mean(self) -> dict:
        return self._mean(self.images)

    @property
    def median(self) -> dict:
        return self._median(self.images)

    def _subset_scores(self) -> dict[str, list[ImageScore]]:
        names = sorted({s.subset for s in self.images if s.subset is not None})
        return {n: [s for s in self.images if s.subset == n] for n in names}

    @property
    def subsets(self) -> dict[str, dict]:
        """Per subset: the means (as ``mean``) and their medians under ``median``."""
        return {n: {**self._mean(ss), "median": self._median(ss)} for n, ss in self._subset_scores().items()}

    def to_dict(self) -> dict:
        return {"mean": self.mean, "median": self.median, "subsets": self.subsets,
                "images": [{"stem": s.stem, "subset": s.subset, "psnr": s.psnr, "ssim": s.ssim, "fade": s.fade}
                           for s in self.images],
                "kind": self.kind, "description": self.description,
                "parameters": self.parameters, "latency": self.latency}


@dataclass
class EvaluationReport:
    methods: dict[str, MethodResult]
    pairing: Pairing
    gt_cropped: dict[str, int] = field(default_factory=dict)   # stem -> border px removed
    failures: list[dict] = field(default_factory=list)         # {"stem", "method", "error"}
    seconds: float = 0.0
    max_side: int | None = None                                # learned methods' network side; 0 = full, None = dehaze's default
    paired: bool = True                                        # False: no ground truth, FADE only
    fade: bool = True                                          # FADE measured
    gt_fade: dict[str, float | None] = field(default_factory=dict)   # stem -> FADE of its GT (paired runs)
    report_path: Path | None = None                            # the HTML page (--report)

    def gt_fade_summary(self) -> dict | None:
        """FADE of the ground truths: what a method that removed exactly the haze would score."""
        if not self.gt_fade:
            return None
        vals = list(self.gt_fade.values())
        return {"mean": _stats(vals, np.mean), "median": _stats(vals, statistics.median), "n": len(vals),
                "images": dict(self.gt_fade)}

    def conventions(self) -> dict[str, str]:
        """What each number means, in words (the JSON's ``conventions``)."""
        return {"psnr": "RGB uint8, peak 255, capped at 100 dB",
                "ssim": "skimage structural_similarity defaults: 7x7 uniform window, per RGB "
                        "channel averaged (channel_axis=2), data_range=255",
                "fade": ("FADE (Choi, You, Bovik, IEEE TIP 2015; lower = less fog), odcr_cli.imaging.fade "
                         "after the authors' MATLAB release, uint8 RGB at full resolution"
                         if self.fade else "not measured (--no-fade)"),
                "resolution": "outputs scored at full resolution, never resized",
                "network_input": (f"fast mode: longer side <= {self.max_side} px, guided upsampling"
                                  if self.max_side else "full resolution" if self.max_side == 0
                                  else "odcr dehaze's default for each model"),
                "decoder": "Pillow convert('RGB')"}

    def to_dict(self) -> dict:
        return {
            "reference": "gt" if self.paired else "none",
            "methods": {n: m.to_dict() for n, m in self.methods.items()},
            "gt_fade": self.gt_fade_summary(),
            "pairing": {"n_pairs": len(self.pairing.pairs), "unmatched_hazy": self.pairing.unmatched_hazy,
                        "unmatched_gt": self.pairing.unmatched_gt,
                        "gt_cropped": [{"stem": s, "border_px": b} for s, b in self.gt_cropped.items()]},
            "failures": self.failures,
            "conventions": self.conventions(),
        }

    def write_json(self, path: str | Path) -> None:
        from odcr_cli.files.fsutil import atomic_output

        with atomic_output(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")

    def csv_rows(self) -> Iterator[list]:
        """The CSV's rows after its header (see :meth:`write_csv`)."""
        for name, m in self.methods.items():
            for s in m.images:
                yield [name, s.subset or "", s.stem, *_cells(vars(s)), 1]
            for sub, agg in m.subsets.items():
                yield [name, sub, "(mean)", *_cells(agg), agg["n"]]
            agg = m.mean
            if agg["n"]:
                yield [name, "(all)", "(mean)", *_cells(agg), agg["n"]]
                yield [name, "(all)", "(median)", *_cells(m.median), agg["n"]]
        gt = self.gt_fade_summary()
        if gt:
            subsets = {p.stem: p.subset for p in self.pairing.pairs}
            for stem, v in gt["images"].items():
                yield ["(gt)", subsets.get(stem) or "", stem, "", "", _fmt(v, ".4f"), 1]
            yield ["(gt)", "(all)", "(mean)", "", "", _fmt(gt["mean"], ".4f"), gt["n"]]
            yield ["(gt)", "(all)", "(median)", "", "", _fmt(gt["median"], ".4f"), gt["n"]]

    def write_csv(self, path: str | Path) -> None:
        """One row per (method, image), then per-subset and overall means (stem ``(mean)``) and the
        overall median (stem ``(median)``); an empty cell is a score not measured. The GTs' FADE,
        in paired runs, follows as method ``(gt)``."""
        from odcr_cli.files.fsutil import atomic_output

        with atomic_output(path, "w") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["method", "subset", "stem", "psnr", "ssim", "fade", "n"])
            w.writerows(self.csv_rows())


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _cells(d: dict) -> list[str]:
    """The psnr, ssim and fade cells of a CSV row; empty where not measured."""
    return [_fmt(d.get("psnr"), ".4f"), _fmt(d.get("ssim"), ".5f"), _fmt(d.get("fade"), ".4f")]
