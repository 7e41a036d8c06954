"""int8 ONNX models for the CPU: ONNX Runtime's static quantization, calibrated on photos.

The convolutions (Conv and ConvTranspose) get int8 weights, one scale per output channel, and
uint8 activations whose ranges are calibrated (min/max) on real photos at the network's working
side; everything else (InstanceNorm, padding, the activations between, the outputs) stays
float32, in QDQ form, so that ONNX Runtime fuses each quantize-conv-dequantize into one integer
convolution. The weights use 7 of their 8 bits (``reduce_range``): on CPUs with AVX2 but no VNNI,
ONNX Runtime multiplies uint8 by int8 with an instruction whose int16 sums saturate: full-range
weights lost the bundled default a tenth of a dB on the dev pairs there, 7-bit ones nothing, at
the same speed (on AVX-512 VNNI there is no such sum). The int8 graph takes about 0.6x the fp32
one's time (weights/MODEL_CARD.md, ``benchmarks/readout_arms.py --onnx M --latency``).
Calibrating on random noise instead of photos gives ranges that fit no photo: always pass real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from odcr_cli.errors import ExportError
from odcr_cli.files.imageio import read_image
from odcr_cli.haze.constants import MARGIN
from odcr_cli.haze.pipeline import network_input, to_float_rgb
from odcr_cli.haze.readout import model_side

QUANTIZED_OPS = ("Conv", "ConvTranspose")
CALIBRATION_SIDE = 512  # a direct model's; a scattering model is calibrated as it runs (below)


def calibration_framing(generator_config: dict) -> tuple[int, int]:
    """(side, margin) of the network's input in ``odcr dehaze``: a scattering model's side and the
    method's margin (the default student: 320 px framed by 32), else ``CALIBRATION_SIDE`` unframed."""
    if generator_config.get("output") == "scattering":
        return model_side(generator_config), MARGIN
    return CALIBRATION_SIDE, 0


def calibration_inputs(photos: Sequence[Path], side: int = CALIBRATION_SIDE, margin: int = 0) -> Iterator[np.ndarray]:
    """Each photo as the network sees it (:func:`odcr_cli.haze.pipeline.network_input`): longer
    side at most ``side``, framed by ``margin``, (1, 3, H, W) in [-1, 1]."""
    for path in photos:
        rgb, _ = to_float_rgb(read_image(path).pixels)
        yield network_input(rgb, side, margin)


def quantize_int8(src: Path, dst: Path, photos: Sequence[Path]) -> None:
    """Write ``dst``: the float32 ONNX model ``src`` with int8 convolutions calibrated on ``photos``
    (its metadata kept, ``precision`` set to int8)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not photos:
        raise ExportError("int8 quantization needs calibration photos (--calibrate DIR)")
    model = onnx.load(str(src))
    input_name = model.graph.input[0].name
    metadata = {p.key: p.value for p in model.metadata_props}
    side, margin = calibration_framing(json.loads(metadata.get("generator_config") or "{}"))

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = calibration_inputs(photos, side, margin)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.inputs, None)
            return None if x is None else {input_name: x}

    prepared = dst.with_name(dst.name + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(prepared))
        quantize_static(str(prepared), str(dst), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        reduce_range=True, op_types_to_quantize=list(QUANTIZED_OPS))
    finally:
        prepared.unlink(missing_ok=True)
    quantized = onnx.load(str(dst))
    metadata.update(precision="int8", calibration=f"{len(photos)} photos, min/max, side {side}, margin {margin}",
                    quantization="QDQ: Conv/ConvTranspose int8 weights (7-bit range) per channel, uint8 activations; "
                             "rest float32")
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, metadata)
    onnx.save(quantized, str(dst))
