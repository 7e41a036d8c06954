"""``odcr evaluate``: dehazing methods scored side by side, on paired hazy/GT folders (PSNR, SSIM
and FADE) or on hazy photos without ground truth (FADE, the referenceless fog density).

Conventions (what the numbers mean exactly)
-------------------------------------------
* Decoding: Pillow, ``Image.convert("RGB")`` (no EXIF rotation; 16-bit files are reduced to
  8 bits by Pillow's conversion). Outputs are never resized: every method is scored at the hazy
  image's full resolution. By default each learned method runs as ``odcr dehaze`` runs it (the
  bundled models on ONNX Runtime with their int8 graphs on the CPU, PyTorch with ``backend="torch"``;
  scattering models: the network on a copy whose longer side is at most the model's side,
  ``haze.readout.model_side``, t guided-upsampled; direct models: the network at full resolution for
  photos up to 1600 px on the CPU, which covers every dev pair), and a JPEG's quantisation tables
  reach the recovery as they do there (``odcr_cli.haze.noise``). ``max_side=N`` (``--max-side``)
  puts every learned method's network on a copy whose longer side is at most N; 0 = the network
  at full resolution.
* Pairing, subsets and GT cropping: ``odcr_cli.tasks.evaluate.pairing`` (same stem, ``_hazy`` -> ``_GT``,
  RESIDE ``_<number>`` suffixes; unmatched files listed, never dropped; a GT larger by a uniform
  border, e.g. SOTS-indoor's 10 px, is centre-cropped; any other size mismatch is a per-pair
  failure, listed).
* PSNR: on RGB uint8, ``10 log10(255^2 / MSE)`` with the MSE over all pixels and the 3 channels;
  identical images are capped at 100 dB so means stay finite.
* SSIM: ``skimage.metrics.structural_similarity(out, gt, channel_axis=2, data_range=255)`` at its
  defaults: 7x7 uniform window (``gaussian_weights=False``), K1=0.01, K2=0.03, sample covariance,
  computed per RGB channel and averaged; the mean SSIM map over the valid (unpadded) region.
  (Papers differ: D4's script uses grey-scale SSIM with a 51x51 window. Ours is the above.)
* FADE (``odcr_cli.imaging.fade``; Choi, You and Bovik 2015, lower = less fog) of every output at full
  resolution, uint8 RGB; in paired runs also of each GT (``gt_fade``). Without ``--gt`` every image
  under the hazy folder is scored, FADE only.
* Means and medians: plain, of per-image values, over all images and per subset
  (``odcr_cli.tasks.evaluate.report``).
* Latency (learned methods): median wall time of ``Dehazer.dehaze`` on a ``latency_size`` uint8
  image (conversion, padding, network and back) over ``latency_repeats`` runs after one warm-up,
  with the device and backend that really ran.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from odcr_cli.haze.constants import MIN_SIDE
from odcr_cli.engine.options import Device
from odcr_cli.errors import EvaluationError, FadeError
from odcr_cli.files.imageio import read_rgb8, read_rgb8_tables
from odcr_cli.imaging.metrics import psnr, ssim_uint8
from odcr_cli.tasks.evaluate.report import EvaluationReport, ImageScore, MethodResult
from odcr_cli.tasks.evaluate.pairing import (Pair, Pairing, gt_candidates, hazy_only, match_gt, pair_images,
                                    pairs_from_dir)
from odcr_cli.tasks.evaluate.page import EvaluationPage

if TYPE_CHECKING:
    from odcr_cli.engine.dehazer import Dehazer

# names importers use from here; they live in pairing.py and report.py
__all__ = ["ran_on", "PSNR_CAP", "EvaluationReport", "ImageScore", "LoadedMethod", "MethodResult", "Pair", "Pairing",
           "evaluate", "evaluate_generator_on_pairs", "gt_candidates", "hazy_only",
           "make_method", "match_gt", "measure_latency", "pair_images", "pairs_from_dir"]

PSNR_CAP = 100.0


# --- methods -----------------------------------------------------------------------------------

@dataclass
class LoadedMethod:
    """One method of an evaluation, loaded: what it is called in the report and how it dehazes."""

    name: str
    kind: str                        # input | dcp | torch | onnx
    # (H, W, 3) uint8 and its file's JPEG tables (None for other formats) -> (H, W, 3) uint8
    dehaze: Callable[[np.ndarray, dict | None], np.ndarray]
    dehazer: "Dehazer | None" = None
    parameters: int | None = None
    description: str = ""


def make_method(spec: str, weights: str | None = None, device: Device | str = "auto",
                max_side: int | None = None, backend: str = "auto") -> LoadedMethod:
    """``input``, ``dcp``, ``dcp@N`` (t estimated on a copy of at most N px), ``odcr`` (bundled or
    ``weights``), ``onnx:FILE`` or a weights path,
    each optionally named ``LABEL=SPEC`` (the label is the method's name in reports).
    ``max_side > 0`` runs learned methods in dehaze's fast mode (network on a copy whose longer
    side is at most ``max_side``, guided upsampling to full resolution); 0 = full resolution;
    None = what ``odcr dehaze`` does by default (scattering models on a copy of at most the model's
    side, ``model_side``, direct models at full resolution up to 1600 px on the CPU).
    ``backend`` (bundled models): ``auto`` runs what ``odcr dehaze`` runs (ONNX Runtime and the
    model's int8 graph on the CPU: no torch needed), ``torch`` the PyTorch fp32 weights."""
    label, sep, rest = spec.partition("=")
    if sep and label and rest and not any(c in label for c in "/\\:") and not Path(spec).exists():
        method = make_method(rest, weights, device, max_side, backend)
        method.name = label
        return method
    if spec == "input":
        return LoadedMethod("input", "input", lambda img, tables=None: img, description="the hazy image itself")
    if spec == "dcp" or _dcp_side(spec) is not None:
        return _dcp_method(spec)
    if spec.startswith("onnx:"):
        return _onnx_method(spec, device, max_side)
    return _network_method(spec, weights, device, max_side, backend)


def _dcp_side(spec: str) -> int | None:
    """N for ``dcp@N`` (N >= MIN_SIDE), else None."""
    if spec.startswith("dcp@") and spec[4:].isdigit() and int(spec[4:]) >= MIN_SIDE:
        return int(spec[4:])
    return None


def _dcp_method(spec: str) -> LoadedMethod:
    """``dcp`` (the classical algorithm, at full resolution) or ``dcp@N``."""
    from odcr_cli.engine.dehazer import Dehazer

    side = _dcp_side(spec)
    if side is not None:
        d = Dehazer(method="dcp", max_side=side)
        return LoadedMethod(spec, "dcp", d.dehaze, d, None,
                         f"dark channel prior, t estimated on a copy of at most {side} px and guided-upsampled")
    d = Dehazer(method="dcp")
    return LoadedMethod("dcp", "dcp", d.dehaze, d, None, "dark channel prior (numpy)")


def _onnx_method(spec: str, device: Device | str, max_side: int | None) -> LoadedMethod:
    from odcr_cli.engine.dehazer import Dehazer

    path = Path(spec[len("onnx:"):])
    if not path.is_file():
        raise EvaluationError(f"ONNX model not found: {path}")
    d = Dehazer(backend="onnx", onnx_path=str(path), device=device, max_side=_dehazer_side(max_side))
    return LoadedMethod(spec, "onnx", d.dehaze, d, d.parameters, ran_on(d))


def _network_method(spec: str, weights: str | None, device: Device | str, max_side: int | None,
                    backend: str) -> LoadedMethod:
    """``odcr``, a bundled model's name (on ``backend``) or a weights file (PyTorch)."""
    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.files.bundled import bundled_models

    named = {m.name for m in bundled_models()}
    if spec in named or (spec == "odcr" and weights is None):
        d = Dehazer(model=None if spec == "odcr" else spec, backend=backend, device=device,
                    max_side=_dehazer_side(max_side))
        return LoadedMethod(spec, d.backend_name, d.dehaze, d, d.parameters, f"bundled {d.model_name}, {ran_on(d)}")
    if spec == "odcr":
        path = weights
    else:
        if not Path(spec).is_file():
            raise EvaluationError(f"unknown method {spec!r}: use odcr, dcp, dcp@N, input, a bundled model's name "
                                  "(odcr models), onnx:FILE or a weights file")
        path = spec
    if backend == "onnx":
        raise EvaluationError(f"{spec}: a weights file runs on PyTorch; export it (odcr export --onnx) and "
                              "score onnx:FILE")
    d = Dehazer(weights=path, backend="torch", device=device, max_side=_dehazer_side(max_side))
    return LoadedMethod(spec, "torch", d.dehaze, d, d.parameters, ran_on(d))


def ran_on(dehazer: "Dehazer") -> str:
    """Which path a learned method ran: the backend, its graph's precision and the device
    (``onnx int8 on CPUExecutionProvider``, ``torch fp32 on cpu``)."""
    return f"{dehazer.backend_name} {getattr(dehazer.backend, 'precision', 'fp32')} on {dehazer.device}"


def _dehazer_side(max_side: int | None) -> int | str:
    return "auto" if max_side is None else max_side


def measure_latency(method: LoadedMethod, size: tuple[int, int] = (256, 256), repeats: int = 5) -> dict | None:
    """Median ms of ``dehaze`` on a ``size`` (H, W) uint8 image after one warm-up (learned methods)."""
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
    d = method.dehazer  # every learned method has one
    return {"median_ms": statistics.median(times), "height": size[0], "width": size[1], "repeats": repeats,
            "warmup": 1, "device": d.device, "backend": d.backend_name}


# --- one run -----------------------------------------------------------------------------------

def _safe_name(name: str) -> str:
    """A method's folder name under ``save_outputs``."""
    if name.startswith("onnx:"):
        name = "onnx_" + Path(name[5:]).stem
    elif name not in ("input", "dcp", "odcr"):
        name = Path(name).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "method"


def _choose_pairing(hazy_dir: str | Path | Sequence[str | Path] | None, gt_dir: str | Path | None,
                    pairs_dir: str | Path | None, fade: bool) -> tuple[Pairing, bool]:
    """The pairs to score and whether they have ground truth; an error when there are none.
    ``hazy_dir`` alone may be several folders and files; with ``gt_dir`` it is one folder."""
    if pairs_dir is not None:
        pairing = pairs_from_dir(pairs_dir)
    elif hazy_dir is not None and gt_dir is not None:
        hazy = [hazy_dir] if isinstance(hazy_dir, (str, Path)) else list(hazy_dir)
        if len(hazy) != 1:
            raise EvaluationError("with --gt, give one --hazy folder (several, or files, are for FADE alone)")
        pairing = pair_images(hazy[0], gt_dir)
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
    return pairing, paired


def _load_methods(specs: Sequence[str], weights: str | None, device: Device | str, max_side: int | None,
                  backend: str = "auto") -> list[LoadedMethod]:
    """The methods named by ``specs`` (duplicates dropped, ``odcr`` when empty), names unique."""
    specs = list(dict.fromkeys(specs)) or ["odcr"]
    loaded = [make_method(s, weights=weights, device=device, max_side=max_side, backend=backend) for s in specs]
    names = [m.name for m in loaded]
    if len(set(names)) != len(names):
        raise EvaluationError(f"two methods share the name {next(n for n in names if names.count(n) > 1)!r}")
    return loaded


class _PairScorer:
    """Scores every method on one pair at a time into ``report``; saves the outputs under
    ``out_root`` and into ``page`` when given. A failure is recorded, never raised."""

    def __init__(self, report: EvaluationReport, methods: Sequence[LoadedMethod], page: EvaluationPage | None,
                 out_root: Path | None) -> None:
        self.report, self.methods, self.page, self.out_root = report, list(methods), page, out_root

    def _fail(self, stem: str, method: str | None, error: str) -> None:
        self.report.failures.append({"stem": stem, "method": method, "error": error})

    def fade_of(self, img: np.ndarray, stem: str, method: str) -> float | None:
        """FADE of an (H, W, 3) uint8 image; None (and a listed failure) when it cannot be scored."""
        from odcr_cli.imaging.fade import fade as fade_score

        try:
            v = fade_score(img)
        except FadeError as exc:
            self._fail(stem, method, f"FADE: {exc}")
            return None
        return v if math.isfinite(v) else None   # NaN: no patch scorable (an all-black image)

    def score(self, pair: Pair) -> None:
        try:
            hazy, tables = read_rgb8_tables(pair.hazy)  # the tables: as odcr dehaze reads a JPEG's noise
            gt, border = match_gt(hazy, read_rgb8(pair.gt)) if pair.gt is not None else (None, 0)
        except Exception as exc:  # per-pair isolation: a bad file is listed, the run goes on
            self._fail(pair.stem, None, f"{type(exc).__name__}: {exc}")
            return
        if border:
            self.report.gt_cropped[pair.stem] = border
        if self.report.fade and gt is not None:
            self.report.gt_fade[pair.stem] = self.fade_of(gt, pair.stem, "(gt)")
        if self.page is not None:
            self.page.add_photo(pair.stem, hazy, gt)
        for m in self.methods:
            self._score_method(m, pair, hazy, gt, tables)

    def _score_method(self, m: LoadedMethod, pair: Pair, hazy: np.ndarray, gt: np.ndarray | None,
                      tables: dict | None = None) -> None:
        try:
            out = m.dehaze(hazy, tables)
            if out.shape != hazy.shape or out.dtype != np.uint8:
                raise EvaluationError(f"output {out.shape} {out.dtype} != input {hazy.shape} uint8")
        except Exception as exc:  # per-method isolation: one broken method does not stop the others
            self._fail(pair.stem, m.name, f"{type(exc).__name__}: {exc}")
            return
        scores = (psnr(out, gt, peak=255.0, cap=PSNR_CAP), ssim_uint8(out, gt)) if gt is not None else (None, None)
        fade = self.fade_of(out, pair.stem, m.name) if self.report.fade else None
        self.report.methods[m.name].images.append(ImageScore(pair.stem, pair.subset, *scores, fade))
        if m.kind == "input":
            return
        if self.page is not None:
            self.page.add_output(pair.stem, m.name, out)
        if self.out_root is not None:
            self._save(self.out_root / _safe_name(m.name) / f"{pair.stem}.png", out)

    @staticmethod
    def _save(target: Path, out: np.ndarray) -> None:
        from PIL import Image

        from odcr_cli.files.fsutil import atomic_path

        with atomic_path(target) as tmp:
            Image.fromarray(out).save(tmp, format="PNG")


def _write_page(page: EvaluationPage, report: EvaluationReport, report_dir: str | Path) -> None:
    try:
        report.report_path = page.write(report)
    except OSError as exc:
        raise EvaluationError(f"cannot write the report in {report_dir}: {exc}") from None


def evaluate(*, hazy_dir: str | Path | Sequence[str | Path] | None = None, gt_dir: str | Path | None = None,
             pairs_dir: str | Path | None = None, methods: Sequence[str] = ("odcr",),
             weights: str | None = None, device: Device | str = "auto", save_outputs: str | Path | None = None,
             latency_size: tuple[int, int] = (256, 256), latency_repeats: int = 5, max_side: int | None = None,
             fade: bool = True, report_dir: str | Path | None = None,
             progress: Callable[[int, int, str], None] | None = None, backend: str = "auto") -> EvaluationReport:
    """Evaluate ``methods`` side by side on the pairs found in ``pairs_dir`` or ``hazy_dir``/``gt_dir``,
    or, with ``hazy_dir`` alone, on its images without ground truth (FADE only).
    ``report_dir``: write an HTML page (``index.html``) with every output and its scores there.
    ``progress(done, total, stem)`` is called before each pair and once at the end. ``backend``:
    how bundled models run (``auto``: as ``odcr dehaze`` runs them; ``torch``: PyTorch fp32)."""
    t0 = time.perf_counter()
    pairing, paired = _choose_pairing(hazy_dir, gt_dir, pairs_dir, fade)
    if report_dir is not None and Path(report_dir).exists() and not Path(report_dir).is_dir():
        raise EvaluationError(f"--report: {report_dir} exists and is not a folder")
    loaded = _load_methods(methods, weights, device, max_side, backend)
    report = EvaluationReport({m.name: MethodResult(m.name, m.kind, m.description, parameters=m.parameters)
                               for m in loaded}, pairing, max_side=max_side, paired=paired, fade=fade)
    page = EvaluationPage(report_dir, [(m.name, m.kind) for m in loaded]) if report_dir is not None else None
    scorer = _PairScorer(report, loaded, page, Path(save_outputs) if save_outputs is not None else None)
    n = len(pairing.pairs)
    for k, pair in enumerate(pairing.pairs):
        if progress:
            progress(k, n, pair.stem)
        scorer.score(pair)
    if progress:
        progress(n, n, "")
    for m in loaded:
        report.methods[m.name].latency = measure_latency(m, latency_size, latency_repeats)
    report.seconds = time.perf_counter() - t0
    if page is not None and report_dir is not None:
        _write_page(page, report, report_dir)
    return report


def evaluate_generator_on_pairs(generator: object, hazy_dir: str | Path, gt_dir: str | Path,
                                device: str | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM of an in-memory generator on a paired folder (training's validation).

    Same pairing, GT cropping, inference (the network's side chosen as ``odcr dehaze`` and
    ``odcr evaluate`` choose it: for a scattering model the side it records or ``MODEL_SIDE``, and
    the method's margin) and metrics as ``odcr evaluate``.
    """
    from odcr_cli.engine.dehazer import Dehazer
    from odcr_cli.engine.torch_backend import TorchBackend

    if device is None:
        device = str(next(generator.parameters()).device)  # type: ignore[attr-defined]
    dehazer = Dehazer.from_backend(TorchBackend(generator, device=device), max_side=_dehazer_side(None))
    pairing = pair_images(hazy_dir, gt_dir)
    if not pairing.pairs:
        raise EvaluationError(f"no hazy/GT pairs found in {hazy_dir} and {gt_dir}")
    psnrs, ssims = [], []
    for pair in pairing.pairs:
        hazy = read_rgb8(pair.hazy)
        gt, _ = match_gt(hazy, read_rgb8(pair.gt))
        out = dehazer.dehaze(hazy)
        psnrs.append(psnr(out, gt, peak=255.0, cap=PSNR_CAP))
        ssims.append(ssim_uint8(out, gt))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n": len(psnrs)}
