"""``odcr export --onnx``: the generator as an ONNX model, checked against PyTorch.

The model
    input ``input``: float32 (N, 3, H, W), RGB in [-1, 1]; outputs: ``output`` (the same shape) for
    a direct model, ``t_residual``/``t`` and ``airlight_correction`` for a scattering one. N, H and W
    are dynamic (H and W must be multiples of ``size_multiple`` = 4; callers pad, see
    ``odcr_cli.engine.tiling.pad_to_multiple``) unless ``static_hw`` fixes H and W. Exported with the legacy
    TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), which exports
    ReflectionPad2d and InstanceNorm2d cleanly with dynamic H/W and honours the requested opset
    (the dynamo exporter turns 17 into 18). ``metadata_props`` hold the odcr version, weights
    sha256, method, training data, input range, channel order, layout, size multiple, opset,
    precision and parameter count; ``odcr_cli.engine.onnx_backend`` reads them back.

int8
    ``int8_calibration`` (photos) quantizes the convolutions (:mod:`odcr_cli.tasks.export.onnx_int8`).

fp16 and fp16 weight storage
    ``fp16=True`` converts the graph with :func:`odcr_cli.tasks.export.onnx_fp16.convert_to_fp16`
    (float16 compute, InstanceNorm and reductions in float32, float32 I/O); an fp32 export whose
    weights are all fp16-exact stores them as float16 with :func:`~odcr_cli.tasks.export.onnx_fp16.store_weights_fp16`
    (bit-identical float32 compute, half the file).

Parity check
    After export, the same uint8 images are dehazed by PyTorch (fp32, CPU) and by the ONNX model
    on onnxruntime CPU, both through ``Dehazer`` (so through the same reflect-padding path as
    ``odcr dehaze``), at several sizes including odd and non-square ones, plus any
    ``check_images`` (real photos, downscaled to ``check_max_side``). fp32 must give uint8
    outputs within 1 level and PSNR >= 50 dB; fp16 PSNR >= 40 dB; int8 PSNR >= 35 dB. A failed check raises
    :class:`ExportCheckError` and, since the model is written atomically, leaves no file.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from odcr_cli import __version__
from odcr_cli.haze.constants import SIZE_MULTIPLE
from odcr_cli.imaging.metrics import psnr as psnr_of
from odcr_cli.haze.readout import readout_for
from odcr_cli.errors import ExportCheckError, ExportError, ImageReadError
from odcr_cli.tasks.export.onnx_fp16 import convert_to_fp16, store_weights_fp16
from odcr_cli.tasks.export.onnx_int8 import quantize_int8

if TYPE_CHECKING:
    import torch

    from odcr_cli.haze.readout import Readout
    from odcr_cli.files.weights_io import LoadedGenerator

DEFAULT_OPSET = 17
FP32_PSNR_MIN = 50.0
FP32_MAX_LEVEL_DIFF = 1
FP16_PSNR_MIN = 40.0
INT8_PSNR_MIN = 35.0  # int8 convolutions: the dehazed photo, not the raw t, is compared
# odd and non-square sizes on purpose: they go through the reflect-padding path
DEFAULT_CHECK_SIZES: tuple[tuple[int, int], ...] = ((64, 64), (67, 93), (101, 60), (128, 96))


@dataclass
class ParityCheck:
    name: str
    height: int
    width: int
    max_abs_diff: int     # uint8 levels
    psnr: float           # dB, ONNX vs PyTorch uint8 outputs (inf when identical)
    passed: bool


@dataclass
class ExportReport:
    output: Path
    weights: Path
    weights_sha256: str
    opset: int
    fp16: bool
    static_hw: tuple[int, int] | None
    exporter: str
    parameters: int
    metadata: dict[str, str]
    checks: list[ParityCheck] = field(default_factory=list)
    int8: bool = False
    bytes: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output"], d["weights"] = str(self.output), str(self.weights)
        for c in d["checks"]:
            c["psnr"] = None if math.isinf(c["psnr"]) else c["psnr"]
        return d


def parse_hw(text: str) -> tuple[int, int]:
    """``"256x320"`` -> (256, 320) (height x width)."""
    parts = text.lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ExportError(f"size {text!r} is not HxW (e.g. 512x512)")
    return int(parts[0]), int(parts[1])


# --- parity ------------------------------------------------------------------------------------

def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like (height, width, 3) uint8 RGB image: smooth gradients, edges,
    texture, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y /= max(height - 1, 1)
    x /= max(width - 1, 1)
    img = np.stack([0.6 * x + 0.3, 0.5 * y + 0.25 * np.sin(6 * x), 0.4 + 0.3 * np.cos(5 * (x + y))], -1)
    img[(x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05] *= 0.4          # a dark disc with a sharp edge
    img += 0.04 * rng.standard_normal(img.shape).astype(np.float32)
    img = 0.55 * img + 0.35                                       # veil: hazy, low contrast
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _load_check_image(path: Path, max_side: int) -> np.ndarray:
    """``path`` as (H, W, 3) uint8 RGB, downscaled so that its longer side is at most ``max_side``."""
    from odcr_cli.files.imageio import read_rgb8
    from odcr_cli.haze.network_input import shrink_to

    try:
        return shrink_to(read_rgb8(path), max_side)
    except ImageReadError as exc:  # before the export is written: nothing is lost
        raise ExportError(f"--check-image {path}: not a readable image ({exc.reason})") from None


def _parity_images(static_hw: tuple[int, int] | None, check_sizes: Sequence[tuple[int, int]] | None,
                   check_images: Sequence[Path], check_max_side: int) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) uint8 image) to compare: synthetic photos at the check sizes, then the
    real ``check_images`` (cropped to ``static_hw`` for a static model; smaller ones skipped)."""
    if static_hw is not None:
        h, w = static_hw
        sizes = [(h, w)] + ([(h - 3, w - 1)] if h > 8 and w > 8 else [])  # the odd one pads to (h, w)
    else:
        sizes = list(check_sizes or DEFAULT_CHECK_SIZES)
    images = [(f"synthetic {h}x{w}", synthetic_photo(h, w, seed=k)) for k, (h, w) in enumerate(sizes)]
    for p in check_images:
        img = _load_check_image(Path(p), check_max_side)
        if static_hw is not None:
            img = img[: static_hw[0], : static_hw[1]]
            if img.shape[:2] != static_hw:
                continue
        images.append((Path(p).name, img))
    return images


def _compare(name: str, hw: tuple[int, int], ref: np.ndarray, out: np.ndarray, fp16: bool,
             int8: bool = False) -> ParityCheck:
    """The parity verdict on the (H, W, 3) uint8 outputs for an ``hw`` input: PyTorch's ``ref``
    and ONNX's ``out``."""
    h, w = hw
    if out.shape != ref.shape:
        return ParityCheck(name, h, w, 255, 0.0, False)
    diff = int(np.abs(ref.astype(np.int16) - out.astype(np.int16)).max())
    psnr = psnr_of(ref, out, peak=255.0)
    if int8 or fp16:
        ok = psnr >= (INT8_PSNR_MIN if int8 else FP16_PSNR_MIN)
    else:
        ok = diff <= FP32_MAX_LEVEL_DIFF and psnr >= FP32_PSNR_MIN
    return ParityCheck(name, h, w, diff, psnr, bool(ok))


def run_parity(weights: Path, onnx_path: Path, fp16: bool, static_hw: tuple[int, int] | None,
               check_sizes: Sequence[tuple[int, int]] | None = None,
               check_images: Sequence[Path] = (), check_max_side: int = 512, int8: bool = False) -> list[ParityCheck]:
    """Dehaze the same uint8 images with PyTorch fp32 and the ONNX model (both CPU, through
    ``Dehazer``) and compare the uint8 outputs."""
    from odcr_cli.engine.dehazer import Dehazer

    # max_side=0: full resolution (no fast mode); the images are small enough not to tile
    torch_d = Dehazer(weights=str(weights), backend="torch", device="cpu", max_side=0)
    onnx_d = Dehazer(backend="onnx", onnx_path=str(onnx_path), device="cpu", max_side=0)
    return [_compare(name, img.shape[:2], torch_d.dehaze(img), onnx_d.dehaze(img), fp16, int8)
            for name, img in _parity_images(static_hw, check_sizes, check_images, check_max_side)]


def _parity_error(report: ExportReport) -> ExportCheckError:
    """The error for a failed parity check: the bound and every check that missed it."""
    bound = f"PSNR >= {INT8_PSNR_MIN if report.int8 else FP16_PSNR_MIN:g} dB" if report.fp16 or report.int8 else \
        f"max diff <= {FP32_MAX_LEVEL_DIFF} level and PSNR >= {FP32_PSNR_MIN:g} dB"
    bad = [c for c in report.checks if not c.passed]
    desc = ", ".join(f"{c.name}: max diff {c.max_abs_diff}, PSNR {c.psnr:.1f} dB" for c in bad)
    return ExportCheckError(f"ONNX output disagrees with PyTorch ({bound} required): {desc}; "
                            f"{report.output} was not written", report)


# --- export ------------------------------------------------------------------------------------

def _validate(opset: int, static_hw: tuple[int, int] | None) -> None:
    if opset < 13:
        raise ExportError(f"opset {opset} is too old; use 13 or newer (17 recommended)")
    if static_hw is not None:
        h, w = static_hw
        if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ExportError(f"--static {h}x{w}: height and width must be positive multiples of {SIZE_MULTIPLE}")


def _graph_module(generator: "torch.nn.Module", names: tuple[str, ...]) -> tuple["torch.nn.Module", tuple[str, ...]]:
    """The module to trace and its graph output names: the generator itself for a direct model
    (one output, named ``output`` as in every earlier export), else its raw named outputs."""
    from torch import nn

    if tuple(names) == ("image",):
        return generator, ("output",)

    class RawOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.generator = generator

        def forward(self, x: "torch.Tensor") -> tuple["torch.Tensor", ...]:
            raw = self.generator.raw_outputs(x)
            return tuple(raw[n] for n in names)

    return RawOutputs().eval(), tuple(names)


def _dynamic_axes(output_names: Sequence[str], static_hw: tuple[int, int] | None) -> dict[str, dict[int, str]]:
    """Dynamic batch everywhere; dynamic height and width on images unless ``static_hw``."""
    spatial = {} if static_hw is not None else {2: "height", 3: "width"}
    axes = {"input": {0: "batch", **spatial}}
    for name in output_names:  # per-image globals (the airlight correction) have no spatial axes
        axes[name] = {0: "batch", **(spatial if name in ("image", "output", "t") else {})}
    return axes


def _metadata(loaded: "LoadedGenerator", weights_path: Path, readout: "Readout", params: int, opset: int,
              fp16: bool, static_hw: tuple[int, int] | None, training_data: str | None) -> dict[str, str]:
    """The model's ``metadata_props`` (key order kept: it is the file's order)."""
    wmeta = loaded.metadata
    config = loaded.generator.config.to_dict()
    metadata = {
        "odcr_version": __version__,
        "model_name": "odcr-generator",
        "method": wmeta.get("method") or "unknown",
        "weights_file": weights_path.name,
        "weights_sha256": loaded.sha256,
        "training_data": training_data or wmeta.get("training_data") or wmeta.get("dataset") or "unknown",
        "input_range": "[-1,1]",
        "output_range": "[-1,1]" if readout.kind == "image" else "t in [t_min,1]; airlight_correction added to the dark-channel airlight",
        "output_kind": readout.kind,
        "channel_order": "RGB",
        "layout": "NCHW",
        "size_multiple": str(SIZE_MULTIPLE),
        "opset": str(opset),
        "precision": "fp16" if fp16 else "fp32",
        "io_dtype": "float32",
        "parameters": str(params),
        "generator_config": json.dumps(config),
        "exporter": "torch.onnx.export(dynamo=False)",
    }
    if static_hw is not None:
        metadata["static_hw"] = f"{static_hw[0]}x{static_hw[1]}"
    if wmeta.get("license"):
        metadata["license"] = wmeta["license"]
    return metadata


def _doc_string(readout_kind: str) -> str:
    return ("odcr dehazing generator: input 'input' float32 NCHW RGB in [-1,1], H and W multiples "
            f"of {SIZE_MULTIPLE}; " + ("output 'output' the same." if readout_kind == "image" else
                                       "outputs 't' (N,1,H,W) and 'airlight_correction' (N,3); "
                                       "odcr_cli.haze.readout turns them into the clear image."))


def _trace(graph: "torch.nn.Module", path: Path, opset: int, output_names: Sequence[str],
           static_hw: tuple[int, int] | None) -> None:
    """Trace ``graph`` on a zero (1, 3, H, W) input into the ONNX file ``path``."""
    import torch

    dummy = torch.zeros(1, 3, *(static_hw or (64, 64)))
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings are noise here
            torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=list(output_names),
                              dynamic_axes=_dynamic_axes(output_names, static_hw), do_constant_folding=True)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def _finalise(path: Path, fp16: bool, metadata: dict[str, str], readout_kind: str) -> None:
    """Post-process the traced file in place: fp16 conversion (or fp16 weight storage, noted in
    ``metadata``), producer, doc string and metadata, then a full ONNX check."""
    import onnx

    model = onnx.load(str(path))
    if fp16:
        model = convert_to_fp16(model)
    else:
        model, stored_half = store_weights_fp16(model)
        metadata["weights_storage"] = "float16 (exact), cast to float32 in the graph" if stored_half else "float32"
    model.producer_name = "odcr"
    model.producer_version = __version__
    model.doc_string = _doc_string(readout_kind)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def export_onnx(weights: str | Path | None, output: Path, opset: int = DEFAULT_OPSET, fp16: bool = False,
                static_hw: tuple[int, int] | None = None, *, check: bool = True,
                check_sizes: Sequence[tuple[int, int]] | None = None, check_images: Sequence[Path] = (),
                check_max_side: int = 512, training_data: str | None = None,
                int8_calibration: Sequence[Path] = ()) -> ExportReport:
    """Export the generator in ``weights`` (None: the bundled model) to ``output``.

    ``int8_calibration``: photos; when given, the convolutions are quantized to int8, calibrated
    on them. Raises :class:`ExportError` on bad arguments or exporter failure and
    :class:`ExportCheckError` when the parity check fails; ``output`` is only written (atomically)
    when everything passed.
    """
    from odcr_cli.core.networks import count_parameters
    from odcr_cli.files.fsutil import atomic_path
    from odcr_cli.files.bundled import bundled_model
    from odcr_cli.files.weights_io import load_generator

    t0 = time.perf_counter()
    _validate(opset, static_hw)
    int8 = bool(int8_calibration)
    if int8 and fp16:
        raise ExportError("--int8 and --fp16 are two precisions: choose one")
    weights_path = Path(weights) if weights is not None else bundled_model().weights_file().path
    loaded = load_generator(weights_path)
    generator = loaded.generator.float().eval()
    params = count_parameters(generator)
    output = Path(output)
    readout = readout_for(generator.config.to_dict())
    graph, output_names = _graph_module(generator, readout.output_names)
    metadata = _metadata(loaded, weights_path, readout, params, opset, fp16, static_hw, training_data)
    report = ExportReport(output=output, weights=weights_path, weights_sha256=loaded.sha256, opset=opset,
                          fp16=fp16, static_hw=static_hw, exporter=metadata["exporter"], parameters=params,
                          metadata=metadata, int8=int8)  # the same dict: _finalise adds weights_storage to both
    with atomic_path(output) as tmp:
        _trace(graph, tmp, opset, output_names, static_hw)
        _finalise(tmp, fp16, metadata, readout.kind)
        if int8:
            fp32 = tmp.with_name(tmp.name + ".fp32.onnx")
            tmp.replace(fp32)
            try:
                quantize_int8(fp32, tmp, list(int8_calibration))
            finally:
                fp32.unlink(missing_ok=True)
        if check:
            report.checks = run_parity(weights_path, tmp, fp16, static_hw, check_sizes, check_images, check_max_side,
                                       int8)
            if not report.passed:
                raise _parity_error(report)
    report.bytes = output.stat().st_size
    report.seconds = time.perf_counter() - t0
    return report
