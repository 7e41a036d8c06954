"""``odcr export --onnx``: the generator as an ONNX model, checked against PyTorch.

The model
    input ``input``: float32 (N, 3, H, W), RGB in [-1, 1]; output ``output``: the same.
    N, H and W are dynamic (H and W must be multiples of ``size_multiple`` = 4; callers pad,
    see ``odcr_cli.engine.dehazer``) unless ``static_hw`` fixes H and W. Exported with the legacy
    TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), which exports
    ReflectionPad2d and InstanceNorm2d cleanly with dynamic H/W and honours the requested opset
    (the dynamo exporter turns 17 into 18). ``metadata_props`` hold the odcr version, weights
    sha256, method, training data, input range, channel order, layout, size multiple, opset,
    precision and parameter count; ``odcr_cli.engine.onnx_backend`` reads them back.

fp16 (``fp16=True``)
    :func:`convert_to_fp16` is a small onnxconverter-common-style pass written with onnx
    helpers (no extra dependency): weights and activations become float16, but
    InstanceNormalization, reductions and other range-sensitive ops stay float32 with Cast
    nodes around them, and the model's input and output stay float32.

Weights stored in fp16 (an fp32 model, half the file)
    Weights that came from fp16 storage (``ship_weights.py --fp16``) are exactly representable in
    float16, so :func:`store_weights_fp16` keeps them as float16 initializers, each followed by a
    Cast to float32: the graph computes in float32 with bit-identical weights (onnxruntime folds
    the casts when the session is built) and the file is half the size. Weights that are not
    fp16-exact stay float32.

Parity check
    After export, the same uint8 images are dehazed by PyTorch (fp32, CPU) and by the ONNX model
    on onnxruntime CPU, both through ``Dehazer`` (so through the same reflect-padding path as
    ``odcr dehaze``), at several sizes including odd and non-square ones, plus any
    ``check_images`` (real photos, downscaled to ``check_max_side``). fp32 must give uint8
    outputs within 1 level and PSNR >= 50 dB; fp16 PSNR >= 40 dB. A failed check raises
    :class:`ExportCheckError` and, since the model is written atomically, leaves no file.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from odcr_cli import __version__
from odcr_cli.core.network_input import SIZE_MULTIPLE
from odcr_cli.imaging.metrics import psnr as psnr_of
from odcr_cli.engine.readout import readout_for
from odcr_cli.errors import ExportCheckError, ExportError

DEFAULT_OPSET = 17
FP32_PSNR_MIN = 50.0
FP32_MAX_LEVEL_DIFF = 1
FP16_PSNR_MIN = 40.0
# odd and non-square sizes on purpose: they go through the reflect-padding path
DEFAULT_CHECK_SIZES: tuple[tuple[int, int], ...] = ((64, 64), (67, 93), (101, 60), (128, 96))

# ops kept in float32 by the fp16 conversion (onnxruntime#10079: InstanceNorm in fp16 is wrong)
FP32_OPS = frozenset({
    "InstanceNormalization", "BatchNormalization", "LayerNormalization", "GroupNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd", "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt",
    "Reciprocal", "Range", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
})
_SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
_FLOAT_PARAM_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}  # inputs that must stay float32


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


# --- fp16 conversion ---------------------------------------------------------------------------

def convert_to_fp16(model, keep_fp32_ops: frozenset[str] = FP32_OPS):
    """Return a float16 copy of ``model`` with ``keep_fp32_ops`` and the graph I/O in float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    orig: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        orig[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        orig[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    orig[n.output[0]] = a.t.data_type

    cur: dict[str, int] = {vi.name: vi.type.tensor_type.elem_type for vi in g.input}
    cur.update({name: t.data_type for name, t in inits.items()})
    new_nodes: list = []
    new_inits: dict[str, object] = {}
    casts: dict[tuple[str, int], str] = {}

    def to_half(arr: np.ndarray) -> np.ndarray:
        return np.clip(arr, -65504.0, 65504.0).astype(np.float16)

    def get_as(name: str, dtype: int) -> str:
        if not name or cur.get(name, orig.get(name)) not in (FLOAT, HALF) or cur.get(name) == dtype:
            return name
        key = (name, dtype)
        if key in casts:
            return casts[key]
        if name in inits and dtype == HALF:
            new_name = f"{name}__fp16"
            new_inits[new_name] = numpy_helper.from_array(to_half(numpy_helper.to_array(inits[name])), new_name)
        else:
            new_name = f"{name}__as_{'fp16' if dtype == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [new_name], to=dtype,
                                              name=f"cast_{len(casts)}_{new_name}"))
        cur[new_name] = dtype
        casts[key] = new_name
        return new_name

    for node in g.node:
        op = node.op_type
        if op in keep_fp32_ops:
            node.input[:] = [get_as(i, FLOAT) for i in node.input]
            for o in node.output:
                cur[o] = orig.get(o, FLOAT)
        elif op in ("Constant", "ConstantOfShape"):
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(to_half(numpy_helper.to_array(a.t)), a.t.name))
            for o in node.output:
                cur[o] = HALF if orig.get(o) == FLOAT else orig.get(o, 0)
        elif op == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == FLOAT:
                    a.i = HALF
            for o in node.output:
                cur[o] = HALF if orig.get(o) == FLOAT else orig.get(o, 0)
        elif op in _SHAPE_ONLY_OPS:
            for o in node.output:
                cur[o] = orig.get(o, TensorProto.INT64)
        else:
            keep = _FLOAT_PARAM_INPUTS.get(op, set())
            node.input[:] = [i if k in keep else get_as(i, HALF) for k, i in enumerate(node.input)]
            for o in node.output:
                cur[o] = HALF if orig.get(o) == FLOAT else orig.get(o, 0)
        new_nodes.append(node)

    # float32 graph outputs: rename the fp16 tensor and cast it back
    for out in g.output:
        if out.type.tensor_type.elem_type == FLOAT and cur.get(out.name) == HALF:
            inner = f"{out.name}__fp16"
            for n in new_nodes:
                n.input[:] = [inner if i == out.name else i for i in n.input]
                n.output[:] = [inner if o == out.name else o for o in n.output]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"cast_out_{out.name}"))

    used = {i for n in new_nodes for i in n.input}
    all_inits = [t for t in g.initializer if t.name in used] + [t for n, t in new_inits.items() if n in used]
    del g.node[:]
    g.node.extend(new_nodes)
    del g.initializer[:]
    g.initializer.extend(all_inits)
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    return model


def store_weights_fp16(model, min_elements: int = 64):
    """If float16 represents every float32 initializer (of ``min_elements`` or more) exactly,
    store them as float16, each followed by a Cast to float32 (see the module docstring); else
    leave the model alone. Returns (model, number of initializers converted)."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in g.initializer
              if t.data_type == TensorProto.FLOAT and np.prod(t.dims) >= min_elements}
    if not arrays or not all(np.array_equal(a.astype(np.float16).astype(np.float32), a) for a in arrays.values()):
        return model, 0
    kept, casts, converted = [], [], 0
    for t in g.initializer:
        arr = arrays.get(t.name)
        if arr is None:
            kept.append(t)
            continue
        half = f"{t.name}__fp16_storage"
        kept.append(numpy_helper.from_array(arr.astype(np.float16), half))
        casts.append(helper.make_node("Cast", [half], [t.name], to=TensorProto.FLOAT, name=f"{half}_cast"))
        converted += 1
    if converted:
        nodes = casts + list(g.node)
        del g.node[:]
        g.node.extend(nodes)
        del g.initializer[:]
        g.initializer.extend(kept)
    return model, converted


# --- parity ------------------------------------------------------------------------------------

def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like uint8 RGB image: smooth gradients, edges, texture, noise."""
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
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = max_side / max(im.size)
        if scale < 1:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8).copy()


def run_parity(weights: Path, onnx_path: Path, fp16: bool, static_hw: tuple[int, int] | None,
               check_sizes: Sequence[tuple[int, int]] | None = None,
               check_images: Sequence[Path] = (), check_max_side: int = 512) -> list[ParityCheck]:
    """Dehaze the same uint8 images with PyTorch fp32 and the ONNX model (both CPU, through
    ``Dehazer``) and compare the uint8 outputs."""
    from odcr_cli.engine.dehazer import Dehazer

    # max_side=0: full resolution (no fast mode); the images are small enough not to tile
    torch_d = Dehazer(weights=str(weights), backend="torch", device="cpu", max_side=0)
    onnx_d = Dehazer(backend="onnx", onnx_path=str(onnx_path), device="cpu", max_side=0)
    images: list[tuple[str, np.ndarray]] = []
    if static_hw is not None:
        h, w = static_hw
        sizes = [(h, w)] + ([(h - 3, w - 1)] if h > 8 and w > 8 else [])  # the odd one pads to (h, w)
    else:
        sizes = list(check_sizes or DEFAULT_CHECK_SIZES)
    for k, (h, w) in enumerate(sizes):
        images.append((f"synthetic {h}x{w}", synthetic_photo(h, w, seed=k)))
    for p in check_images:
        img = _load_check_image(Path(p), check_max_side)
        if static_hw is not None:
            img = img[: static_hw[0], : static_hw[1]]
            if img.shape[:2] != static_hw:
                continue
        images.append((Path(p).name, img))
    checks = []
    for name, img in images:
        ref = torch_d.dehaze(img)
        out = onnx_d.dehaze(img)
        if out.shape != ref.shape:
            checks.append(ParityCheck(name, img.shape[0], img.shape[1], 255, 0.0, False))
            continue
        diff = int(np.abs(ref.astype(np.int16) - out.astype(np.int16)).max())
        psnr = psnr_of(ref, out)
        ok = psnr >= FP16_PSNR_MIN if fp16 else (diff <= FP32_MAX_LEVEL_DIFF and psnr >= FP32_PSNR_MIN)
        checks.append(ParityCheck(name, img.shape[0], img.shape[1], diff, psnr, bool(ok)))
    return checks


# --- export ------------------------------------------------------------------------------------

def _graph_module(generator, names: tuple[str, ...]):
    """The module to trace and its graph output names: the generator itself for a direct model
    (one output, named ``output`` as in every earlier export), else its raw named outputs."""
    from torch import nn

    if tuple(names) == ("image",):
        return generator, ("output",)

    class RawOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.generator = generator

        def forward(self, x):
            raw = self.generator.raw_outputs(x)
            return tuple(raw[n] for n in names)

    return RawOutputs().eval(), tuple(names)


def export_onnx(weights: str | Path | None, output: Path, opset: int = DEFAULT_OPSET, fp16: bool = False,
                static_hw: tuple[int, int] | None = None, *, check: bool = True,
                check_sizes: Sequence[tuple[int, int]] | None = None, check_images: Sequence[Path] = (),
                check_max_side: int = 512, training_data: str | None = None) -> ExportReport:
    """Export the generator in ``weights`` (None: the bundled model) to ``output``.

    Raises :class:`ExportError` on bad arguments or exporter failure and
    :class:`ExportCheckError` when the parity check fails; ``output`` is only written (atomically)
    when everything passed.
    """
    import onnx
    import torch

    from odcr_cli.core.networks import count_parameters
    from odcr_cli.files.fsutil import atomic_path
    from odcr_cli.files.bundled import bundled_model
    from odcr_cli.files.weights_io import load_generator

    t0 = time.perf_counter()
    if opset < 13:
        raise ExportError(f"opset {opset} is too old; use 13 or newer (17 recommended)")
    if static_hw is not None:
        h, w = static_hw
        if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ExportError(f"--static {h}x{w}: height and width must be positive multiples of {SIZE_MULTIPLE}")
    weights_path = Path(weights) if weights is not None else bundled_model().weights_path()
    loaded = load_generator(weights_path)
    generator = loaded.generator.float().eval()
    params = count_parameters(generator)
    wmeta = loaded.metadata
    output = Path(output)

    dummy_hw = static_hw or (64, 64)
    dummy = torch.zeros(1, 3, *dummy_hw)
    readout = readout_for(generator.config.to_dict())
    graph, output_names = _graph_module(generator, readout.output_names)
    spatial = {} if static_hw is not None else {2: "height", 3: "width"}
    dynamic_axes = {"input": {0: "batch", **spatial}}
    for name in output_names:  # per-image globals (the airlight correction) have no spatial axes
        dynamic_axes[name] = {0: "batch", **(spatial if name in ("image", "output", "t") else {})}
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
        "generator_config": json.dumps(generator.config.to_dict()),
        "exporter": "torch.onnx.export(dynamo=False)",
    }
    if static_hw is not None:
        metadata["static_hw"] = f"{static_hw[0]}x{static_hw[1]}"
    if wmeta.get("license"):
        metadata["license"] = wmeta["license"]

    report = ExportReport(output=output, weights=weights_path, weights_sha256=loaded.sha256, opset=opset,
                          fp16=fp16, static_hw=static_hw, exporter=metadata["exporter"], parameters=params,
                          metadata=metadata)
    with atomic_path(output) as tmp:
        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")
                torch.onnx.export(graph, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=list(output_names),
                                  dynamic_axes=dynamic_axes, do_constant_folding=True)
        except Exception as exc:
            raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        model = onnx.load(str(tmp))
        if fp16:
            model = convert_to_fp16(model)
        else:
            model, stored_half = store_weights_fp16(model)
            metadata["weights_storage"] = "float16 (exact), cast to float32 in the graph" if stored_half else "float32"
        model.producer_name = "odcr"
        model.producer_version = __version__
        model.doc_string = ("odcr dehazing generator: input 'input' float32 NCHW RGB in [-1,1], H and W multiples "
                            f"of {SIZE_MULTIPLE}; " + ("output 'output' the same." if readout.kind == "image" else
                                                       "outputs 't' (N,1,H,W) and 'airlight_correction' (N,3); "
                                                       "odcr_cli.engine.readout turns them into the clear image."))
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, metadata)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))
        if check:
            report.checks = run_parity(weights_path, tmp, fp16, static_hw, check_sizes, check_images, check_max_side)
            if not report.passed:
                bad = [c for c in report.checks if not c.passed]
                bound = f"PSNR >= {FP16_PSNR_MIN:g} dB" if fp16 else \
                    f"max diff <= {FP32_MAX_LEVEL_DIFF} level and PSNR >= {FP32_PSNR_MIN:g} dB"
                desc = ", ".join(f"{c.name}: max diff {c.max_abs_diff}, PSNR {c.psnr:.1f} dB" for c in bad)
                raise ExportCheckError(f"ONNX output disagrees with PyTorch ({bound} required): {desc}; "
                                       f"{output} was not written", report)
    report.bytes = output.stat().st_size
    report.seconds = time.perf_counter() - t0
    return report
