"""``odcr evaluate``: dehazing methods scored side by side, on paired hazy/GT folders (PSNR, SSIM
and FADE) or on hazy photos without ground truth (FADE, the referenceless fog density).

Conventions (what the numbers mean exactly)
-------------------------------------------
* Decoding: Pillow, ``Image.convert("RGB")`` (no EXIF rotation; 16-bit files are reduced to
  8 bits by Pillow's conversion). Outputs are never resized: every method is scored at the hazy
  image's full resolution. By default each learned method runs as ``odcr dehaze`` runs it
  (scattering models: the network on a copy whose longer side is at most
  ``SCATTERING_MAX_SIDE``, t guided-upsampled; direct models: the network at full resolution for
  photos up to 1600 px on the CPU, which covers every dev pair). ``max_side=N`` (``--max-side``)
  puts every learned method's network on a copy whose longer side is at most N; 0 = the network
  at full resolution.
* Pairing (hazy file -> GT file, case-insensitive stems, same sub-folder):
  1. the same stem (``sots_in_1400.png`` <-> ``sots_in_1400.png``/``.jpg``);
  2. ``_hazy`` -> ``_GT`` (O-HAZE/I-HAZE ``01_outdoor_hazy.jpg`` <-> ``01_outdoor_GT.jpg``,
     NH-HAZE/Dense-Haze ``01_hazy.png`` <-> ``01_GT.png``);
  3. RESIDE: the stem without a trailing ``_<number>`` or ``_<number>_<number>`` (``1400_1.png``
     <-> ``1400.png``; ``0001_0.8_0.2.jpg`` <-> ``0001.png``).
  Hazy files with no (or an ambiguous) GT and GT files that no hazy image uses are listed in the
  report, never dropped silently. Several hazy images may share one GT (RESIDE ITS/OTS).
* A GT larger than its hazy image by a uniform border (same width on all four sides, e.g.
  SOTS-indoor 640x480 vs 620x460: 10 px) is centre-cropped to the hazy size; the report lists
  these pairs. Any other size mismatch is a per-pair failure (listed).
* PSNR: on RGB uint8, ``10 log10(255^2 / MSE)`` with the MSE over all pixels and the 3 channels;
  identical images are capped at 100 dB so means stay finite.
* SSIM: ``skimage.metrics.structural_similarity(out, gt, channel_axis=2, data_range=255)`` at its
  defaults: 7x7 uniform window (``gaussian_weights=False``), K1=0.01, K2=0.03, sample covariance,
  computed per RGB channel and averaged; the mean SSIM map over the valid (unpadded) region.
  (Papers differ: D4's script uses grey-scale SSIM with a 51x51 window. Ours is the above.)
* FADE (``odcr_cli.imaging.fade``; Choi, You and Bovik 2015, lower = less fog) of every output at full
  resolution, uint8 RGB; in paired runs also of each GT (``gt_fade``). Without ``--gt`` every image
  under the hazy folder is scored, FADE only.
* Means are plain means of per-image values, over all images and per subset; medians likewise. The subset is the
  image's sub-folder under the hazy folder when there is one, else the stem's prefix before the
  first ``_`` when that prefix contains a letter (``sots``, ``hazerd``), else none.
* Latency (learned methods): median wall time of ``Dehazer.dehaze`` on a ``latency_size`` uint8
  image (conversion, padding, network and back) over ``latency_repeats`` runs after one warm-up,
  with the device and backend that really ran.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from odcr_cli.files.folders import walk_folder
from odcr_cli.imaging.metrics import psnr, ssim_uint8
from odcr_cli.errors import EvaluationError, FadeError

PSNR_CAP = 100.0
_RESIDE_SUFFIX = re.compile(r"_\d+(?:\.\d+)?(?:_\d+(?:\.\d+)?)?$")


# --- pairing -----------------------------------------------------------------------------------

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
    if len(rel.parts) > 1:
        return "/".join(rel.parts[:-1])
    prefix = rel.stem.split("_", 1)[0]
    return prefix.lower() if "_" in rel.stem and re.search(r"[A-Za-z]", prefix) else None


def pair_images(hazy_dir: str | Path, gt_dir: str | Path) -> Pairing:
    """Pair every image under ``hazy_dir`` with its ground truth under ``gt_dir`` (see module doc)."""
    hazy_dir, gt_dir = Path(hazy_dir), Path(gt_dir)
    for d, what in ((hazy_dir, "hazy"), (gt_dir, "GT")):
        if not d.is_dir():
            raise EvaluationError(f"{what} folder not found: {d}")
    index: dict[tuple[str, str], list[Path]] = {}
    for p in walk_folder(gt_dir).images:
        rel = p.relative_to(gt_dir)
        index.setdefault((str(rel.parent).lower(), rel.stem.lower()), []).append(p)
    used: set[Path] = set()
    pairing = Pairing(pairs=[])
    for p in walk_folder(hazy_dir).images:
        rel = p.relative_to(hazy_dir)
        folder = str(rel.parent).lower()
        match, reason = None, "no GT with a matching name"
        for cand in gt_candidates(rel.stem):
            found = index.get((folder, cand))
            if found:
                if len(found) > 1:
                    reason = "ambiguous GT: " + ", ".join(f.name for f in found)
                    break
                match = found[0]
                break
        if match is None:
            pairing.unmatched_hazy.append(f"{rel} ({reason})")
            continue
        used.add(match)
        pairing.pairs.append(Pair(str(rel.with_suffix("")), p, match, subset_of(rel)))
    pairing.unmatched_gt = [str(p.relative_to(gt_dir)) for ps in index.values() for p in ps if p not in used]
    pairing.unmatched_gt.sort()
    return pairing


def hazy_only(hazy_dir: str | Path) -> Pairing:
    """Every image under ``hazy_dir``, without ground truth (a no-reference evaluation)."""
    hazy_dir = Path(hazy_dir)
    if not hazy_dir.is_dir():
        raise EvaluationError(f"hazy folder not found: {hazy_dir}")
    stems: dict[str, Path] = {}
    for p in walk_folder(hazy_dir).images:
        rel = p.relative_to(hazy_dir)
        stem = str(rel.with_suffix(""))
        if stem in stems:  # a.jpg and a.png would share a row and an output name
            raise EvaluationError(f"two images share the name {stem}: {stems[stem].name} and {p.name}")
        stems[stem] = p
    return Pairing(pairs=[Pair(stem, p, None, subset_of(p.relative_to(hazy_dir))) for stem, p in stems.items()])


def pairs_from_dir(pairs_dir: str | Path) -> Pairing:
    """``--pairs DIR``: DIR holds ``hazy/`` and ``gt/`` (or ``GT/``)."""
    d = Path(pairs_dir)
    gt = next((d / n for n in ("gt", "GT", "clear") if (d / n).is_dir()), d / "gt")
    return pair_images(d / "hazy", gt)


# --- images and metrics ------------------------------------------------------------------------

def load_rgb8(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def match_gt(hazy: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, int]:
    """Return the GT cropped to the hazy size and the border removed (0 if none)."""
    (h, w), (gh, gw) = hazy.shape[:2], gt.shape[:2]
    if (h, w) == (gh, gw):
        return gt, 0
    dh, dw = gh - h, gw - w
    if dh == dw and dh > 0 and dh % 2 == 0:
        b = dh // 2
        return gt[b:b + h, b:b + w], b
    raise EvaluationError(f"GT is {gw}x{gh} but the hazy image is {w}x{h} (not a uniform border)")


# --- methods -----------------------------------------------------------------------------------

@dataclass
class Method:
    name: str
    kind: str                        # input | dcp | torch | onnx
    dehaze: Callable[[np.ndarray], np.ndarray]
    dehazer: object | None = None
    parameters: int | None = None
    description: str = ""


def make_method(spec: str, weights: str | None = None, device: str = "auto", max_side: int | None = None) -> Method:
    """``input``, ``dcp``, ``dcp@N`` (t estimated on a copy of at most N px), ``odcr`` (bundled or
    ``weights``), ``onnx:FILE`` or a weights path,
    each optionally named ``LABEL=SPEC`` (the label is the method's name in reports).
    ``max_side > 0`` runs learned methods in dehaze's fast mode (network on a copy whose longer
    side is at most ``max_side``, guided upsampling to full resolution); 0 = full resolution;
    None = what ``odcr dehaze`` does by default (scattering models on a copy of at most
    ``SCATTERING_MAX_SIDE`` px, direct models at full resolution up to 1600 px on the CPU)."""
    label, sep, rest = spec.partition("=")
    if sep and label and rest and not any(c in label for c in "/\\:") and not Path(spec).exists():
        method = make_method(rest, weights, device, max_side)
        method.name = label
        return method
    if spec == "input":
        return Method("input", "input", lambda img: img, description="the hazy image itself")
    from odcr_cli.engine.dehazer import Dehazer

    if spec == "dcp":
        import importlib.util

        if importlib.util.find_spec("odcr_cli.imaging.dcp") is None:
            raise EvaluationError("--method dcp: the dark-channel-prior module (odcr_cli.imaging.dcp) is not installed")
        d = Dehazer(method="dcp")
        return Method("dcp", "dcp", d.dehaze, d, None, "dark channel prior (numpy)")
    if spec.startswith("dcp@") and spec[4:].isdigit() and int(spec[4:]) >= 16:
        d = Dehazer(method="dcp", max_side=int(spec[4:]))
        return Method(spec, "dcp", d.dehaze, d, None,
                      f"dark channel prior, t estimated on a copy of at most {spec[4:]} px and guided-upsampled")
    if spec.startswith("onnx:"):
        path = Path(spec[len("onnx:"):])
        if not path.is_file():
            raise EvaluationError(f"ONNX model not found: {path}")
        d = Dehazer(backend="onnx", onnx_path=str(path), device=device, max_side=_dehazer_side(max_side))
        params = None
        meta = getattr(d.backend, "metadata", {}) or {}
        if str(meta.get("parameters", "")).isdigit():
            params = int(meta["parameters"])
        return Method(spec, "onnx", d.dehaze, d, params, f"onnxruntime {d.device}")
    from odcr_cli.files.bundled import bundled_models

    named = {m.name for m in bundled_models()}
    if spec in named or (spec == "odcr" and weights is None):
        d = Dehazer(model=None if spec == "odcr" else spec, backend="torch", device=device,
                    max_side=_dehazer_side(max_side))
        return Method(spec, "torch", d.dehaze, d, d.parameters, f"bundled {d.model_name}, torch {d.device}")
    if spec == "odcr":
        path = weights
    else:
        if not Path(spec).is_file():
            raise EvaluationError(f"unknown method {spec!r}: use odcr, dcp, dcp@N, input, a bundled model's name "
                                  "(odcr models), onnx:FILE or a weights file")
        path = spec
    d = Dehazer(weights=path, backend="torch", device=device, max_side=_dehazer_side(max_side))
    return Method(spec, "torch", d.dehaze, d, d.parameters, f"torch {d.device}")


def _dehazer_side(max_side: int | None) -> int | str:
    return "auto" if max_side is None else max_side


def measure_latency(method: Method, size: tuple[int, int] = (256, 256), repeats: int = 5) -> dict | None:
    """Median ms of ``dehaze`` on a ``size`` uint8 image after one warm-up (learned methods)."""
    if method.kind not in ("torch", "onnx") or repeats <= 0:
        return None
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    method.dehaze(img)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        method.dehaze(img)
        times.append((time.perf_counter() - t0) * 1e3)
    d = method.dehazer
    return {"median_ms": statistics.median(times), "height": size[0], "width": size[1], "repeats": repeats,
            "warmup": 1, "device": getattr(d, "device", "?"), "backend": getattr(d, "backend_name", method.kind)}


# --- report ------------------------------------------------------------------------------------

@dataclass
class ImageScore:
    stem: str
    subset: str | None
    psnr: float | None      # None without ground truth
    ssim: float | None
    fade: float | None = None   # None when FADE is off or undefined for this output


METRICS = ("psnr", "ssim", "fade")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "fade": False}


def _stats(values: Sequence[float | None], how: Callable[[list[float]], float]) -> float | None:
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

    def to_dict(self) -> dict:
        return {
            "reference": "gt" if self.paired else "none",
            "methods": {n: m.to_dict() for n, m in self.methods.items()},
            "gt_fade": self.gt_fade_summary(),
            "pairing": {"n_pairs": len(self.pairing.pairs), "unmatched_hazy": self.pairing.unmatched_hazy,
                        "unmatched_gt": self.pairing.unmatched_gt,
                        "gt_cropped": [{"stem": s, "border_px": b} for s, b in self.gt_cropped.items()]},
            "failures": self.failures,
            "conventions": {"psnr": "RGB uint8, peak 255, capped at 100 dB",
                            "ssim": "skimage structural_similarity defaults: 7x7 uniform window, per RGB "
                                    "channel averaged (channel_axis=2), data_range=255",
                            "fade": ("FADE (Choi, You, Bovik, IEEE TIP 2015; lower = less fog), odcr_cli.imaging.fade "
                                     "after the authors' MATLAB release, uint8 RGB at full resolution"
                                     if self.fade else "not measured (--no-fade)"),
                            "resolution": "outputs scored at full resolution, never resized",
                            "network_input": (f"fast mode: longer side <= {self.max_side} px, guided upsampling"
                                              if self.max_side else "full resolution" if self.max_side == 0
                                              else "odcr dehaze's default for each model"),
                            "decoder": "Pillow convert('RGB')"},
        }

    def write_json(self, path: str | Path) -> None:
        from odcr_cli.files.fsutil import atomic_output

        with atomic_output(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")

    def write_csv(self, path: str | Path) -> None:
        """One row per (method, image), then per-subset and overall means (stem ``(mean)``) and the
        overall median (stem ``(median)``); an empty cell is a score not measured. The GTs' FADE,
        in paired runs, follows as method ``(gt)``."""
        from odcr_cli.files.fsutil import atomic_output

        def cells(d: dict) -> list[str]:
            return [_fmt(d.get("psnr"), ".4f"), _fmt(d.get("ssim"), ".5f"), _fmt(d.get("fade"), ".4f")]

        with atomic_output(path, "w") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["method", "subset", "stem", "psnr", "ssim", "fade", "n"])
            for name, m in self.methods.items():
                for s in m.images:
                    w.writerow([name, s.subset or "", s.stem, *cells(vars(s)), 1])
                for sub, agg in m.subsets.items():
                    w.writerow([name, sub, "(mean)", *cells(agg), agg["n"]])
                agg = m.mean
                if agg["n"]:
                    w.writerow([name, "(all)", "(mean)", *cells(agg), agg["n"]])
                    w.writerow([name, "(all)", "(median)", *cells(m.median), agg["n"]])
            gt = self.gt_fade_summary()
            if gt:
                subsets = {p.stem: p.subset for p in self.pairing.pairs}
                for stem, v in gt["images"].items():
                    w.writerow(["(gt)", subsets.get(stem) or "", stem, "", "", _fmt(v, ".4f"), 1])
                w.writerow(["(gt)", "(all)", "(mean)", "", "", _fmt(gt["mean"], ".4f"), gt["n"]])
                w.writerow(["(gt)", "(all)", "(median)", "", "", _fmt(gt["median"], ".4f"), gt["n"]])


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _safe_name(name: str) -> str:
    if name.startswith("onnx:"):
        name = "onnx_" + Path(name[5:]).stem
    elif name not in ("input", "dcp", "odcr"):
        name = Path(name).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "method"


def evaluate(*, hazy_dir: str | Path | None = None, gt_dir: str | Path | None = None,
             pairs_dir: str | Path | None = None, methods: Sequence[str] = ("odcr",),
             weights: str | None = None, device: str = "auto", save_outputs: str | Path | None = None,
             latency_size: tuple[int, int] = (256, 256), latency_repeats: int = 5, max_side: int | None = None,
             fade: bool = True, report_dir: str | Path | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> EvaluationReport:
    """Evaluate ``methods`` side by side on the pairs found in ``pairs_dir`` or ``hazy_dir``/``gt_dir``,
    or, with ``hazy_dir`` alone, on its images without ground truth (FADE only).
    ``report_dir``: write an HTML page (``index.html``) with every output and its scores there."""
    t0 = time.perf_counter()
    if pairs_dir is not None:
        pairing = pairs_from_dir(pairs_dir)
    elif hazy_dir is not None and gt_dir is not None:
        pairing = pair_images(hazy_dir, gt_dir)
    elif hazy_dir is not None:
        pairing = hazy_only(hazy_dir)
    else:
        raise EvaluationError("give --pairs DIR, --hazy DIR and --gt DIR, or --hazy DIR alone (FADE, no ground truth)")
    paired = hazy_dir is None or gt_dir is not None
    if not paired and not fade:
        raise EvaluationError("without ground truth FADE is the only score: drop --no-fade or give --gt")
    if not pairing.pairs:
        if not paired:
            raise EvaluationError(f"no images found in {hazy_dir}")
        raise EvaluationError("no hazy/GT pairs found" + (
            f" ({len(pairing.unmatched_hazy)} hazy and {len(pairing.unmatched_gt)} GT files unmatched)"
            if pairing.unmatched_hazy or pairing.unmatched_gt else ""))
    if report_dir is not None and Path(report_dir).exists() and not Path(report_dir).is_dir():
        raise EvaluationError(f"--report: {report_dir} exists and is not a folder")
    specs = list(dict.fromkeys(methods)) or ["odcr"]
    loaded = [make_method(s, weights=weights, device=device, max_side=max_side) for s in specs]
    names = [m.name for m in loaded]
    if len(set(names)) != len(names):
        raise EvaluationError(f"two methods share the name {next(n for n in names if names.count(n) > 1)!r}")
    report = EvaluationReport({m.name: MethodResult(m.name, m.kind, m.description, parameters=m.parameters)
                               for m in loaded}, pairing, max_side=max_side, paired=paired, fade=fade)
    out_root = Path(save_outputs) if save_outputs is not None else None
    page = None
    if report_dir is not None:
        from odcr_cli.tasks.report import EvaluationPage

        page = EvaluationPage(report_dir, [(m.name, m.kind) for m in loaded])

    def fade_of(img: np.ndarray, stem: str, method: str) -> float | None:
        from odcr_cli.imaging.fade import fade as fade_score

        try:
            v = fade_score(img)
        except FadeError as exc:
            report.failures.append({"stem": stem, "method": method, "error": f"FADE: {exc}"})
            return None
        return v if math.isfinite(v) else None   # NaN: no patch scorable (an all-black image)

    for k, pair in enumerate(pairing.pairs):
        if progress:
            progress(k, len(pairing.pairs), pair.stem)
        try:
            hazy = load_rgb8(pair.hazy)
            gt, border = match_gt(hazy, load_rgb8(pair.gt)) if pair.gt is not None else (None, 0)
        except Exception as exc:  # per-pair isolation: a bad file is listed, the run goes on
            report.failures.append({"stem": pair.stem, "method": None, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if border:
            report.gt_cropped[pair.stem] = border
        if fade and gt is not None:
            report.gt_fade[pair.stem] = fade_of(gt, pair.stem, "(gt)")
        if page is not None:
            page.add_photo(pair.stem, hazy, gt)
        for m in loaded:
            try:
                out = m.dehaze(hazy)
                if out.shape != hazy.shape or out.dtype != np.uint8:
                    raise EvaluationError(f"output {out.shape} {out.dtype} != input {hazy.shape} uint8")
            except Exception as exc:
                report.failures.append({"stem": pair.stem, "method": m.name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            scores = (psnr(out, gt, cap=PSNR_CAP), ssim_uint8(out, gt)) if gt is not None else (None, None)
            report.methods[m.name].images.append(
                ImageScore(pair.stem, pair.subset, *scores, fade_of(out, pair.stem, m.name) if fade else None))
            if page is not None and m.kind != "input":
                page.add_output(pair.stem, m.name, out)
            if out_root is not None and m.kind != "input":
                from PIL import Image

                from odcr_cli.files.fsutil import atomic_path
                target = out_root / _safe_name(m.name) / f"{pair.stem}.png"
                with atomic_path(target) as tmp:
                    Image.fromarray(out).save(tmp, format="PNG")
    if progress:
        progress(len(pairing.pairs), len(pairing.pairs), "")
    for m in loaded:
        report.methods[m.name].latency = measure_latency(m, latency_size, latency_repeats)
    report.seconds = time.perf_counter() - t0
    if page is not None:
        try:
            report.report_path = page.write(report)
        except OSError as exc:
            raise EvaluationError(f"cannot write the report in {report_dir}: {exc}") from None
    return report


def evaluate_generator_on_pairs(generator: object, hazy_dir: str | Path, gt_dir: str | Path,
                                device: str | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM of an in-memory generator on a paired folder (training's validation).

    Same pairing, GT cropping, full-resolution inference and metrics as ``odcr evaluate``.
    """
    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.engine.torch_backend import TorchBackend

    if device is None:
        device = str(next(generator.parameters()).device)  # type: ignore[attr-defined]
    dehazer = Dehazer.from_backend(TorchBackend(generator, device=device), max_side=0)
    pairing = pair_images(hazy_dir, gt_dir)
    if not pairing.pairs:
        raise EvaluationError(f"no hazy/GT pairs found in {hazy_dir} and {gt_dir}")
    psnrs, ssims = [], []
    for pair in pairing.pairs:
        hazy = load_rgb8(pair.hazy)
        gt, _ = match_gt(hazy, load_rgb8(pair.gt))
        out = dehazer.dehaze(hazy)
        psnrs.append(psnr(out, gt, cap=PSNR_CAP))
        ssims.append(ssim_uint8(out, gt))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n": len(psnrs)}
