"""The ``Dehazer`` API: one loaded model, reusable across calls and threads, on any backend
(the protocol and the choice of backend are in :mod:`odcr_cli.engine.backends`).

Padding, tiling and fast mode's guided upsampling are in :mod:`odcr_cli.engine.tiling`; the PyTorch
backend is :mod:`odcr_cli.engine.torch_backend`, imported (with torch) only when the torch backend is
chosen, so the ONNX path never pays for it.

Scattering models (the default) never take the paths below: they run the method's one pipeline,
:func:`odcr_cli.haze.pipeline.dehaze` (the network on a copy at the model's side,
:func:`odcr_cli.haze.readout.model_side`; t carried to full resolution and the scattering model
inverted there), with this Dehazer's backend as its ``run_network``.

Pipeline for one image of a direct model (``Dehazer.dehaze``)::

    uint8/uint16/float RGB  ->  float32 [0,1]  ->  one of
      * whole image  : reflect-pad to a multiple of 4 (at least 16 px), run, crop back;
      * tiled        : when the estimated memory exceeds ``memory_budget_gb`` (default 4 GB) or
                       ``tile`` is given. InstanceNorm statistics are computed once on the whole
                       image (exactly when it fits the budget, else on a downscaled copy) and
                       frozen while overlapping tiles run; tiles are blended with linear
                       feathering. Frozen statistics need the torch backend: an ONNX model that
                       would need tiles is an error (never per-tile statistics);
      * fast mode    : ``max_side``: the network runs on a copy whose longer side is ``max_side``,
                       and its correction is carried to full resolution with a local colour-affine
                       model (guided upsampling, He et al. guided filter with a colour guide).
    ->  same shape and dtype as the input.

Defaults: ``max_side="auto"`` means full resolution on a GPU; on the CPU, images whose longer side
exceeds :data:`CPU_AUTO_MAX_SIDE` (1600) run in fast mode at that side, smaller ones at full
resolution; ``max_side=0`` forces full resolution. Tiles use exact (whole-image) statistics whenever
the statistics pass fits the memory budget. What fast mode and tiling cost in fidelity and time is
measured by ``benchmarks/dehaze.py`` (README, Benchmarks).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from odcr_cli.engine.backend_base import Backend
from odcr_cli.engine.backends import choose_backend, make_backend
from odcr_cli.engine.options import (AUTO, CPU_AUTO_MAX_SIDE, DEFAULT_HALO, DEFAULT_MEMORY_BUDGET_GB, BackendChoice,
                                     Device, EngineOptions, MaxSide, Method)
from odcr_cli.engine.tiling import guided_upsample, run_padded, run_tiled
from odcr_cli.errors import InferenceError
from odcr_cli.files.bundled import bundled_model
from odcr_cli.haze import pipeline
from odcr_cli.haze.constants import MARGIN, MIN_SIDE, SIZE_MULTIPLE
from odcr_cli.haze.network_input import from_net, pad_to_multiple, padded_size, shrink_to, to_net
from odcr_cli.haze.pipeline import to_float_rgb
from odcr_cli.haze.readout import Readout, model_side, readout_for
from odcr_cli.haze.noise import Source, source_for
from odcr_cli.imaging.tone import keep_exposure

# Peak bytes per input pixel of whole-image inference, scaled to an ngf-64 generator (measured:
# 1.3 GB at 1024^2 for torch, 3 GB for ORT, plus a margin; an int8 ORT graph keeps quantized and
# float copies of its activations: 2,550 B/px for the ngf-32 default at 1024x768 and 1536x1152).
BYTES_PER_PIXEL_NGF64 = {"torch": 1500.0, "onnx": 3000.0, "onnx-int8": 5400.0}
FIXED_OVERHEAD_BYTES = 300e6
# Peak bytes per full-resolution pixel of a scattering model's readout (t carried up, the
# inversion; about 1.0 GB at 12 MP, measured with benchmarks/big_photo.py), which the network's
# memory shares the budget with when --max-side 0 asks for the network at full resolution.
READOUT_BYTES_PER_PIXEL = 100.0


@dataclass
class ImageRecord:
    """How one image was processed (returned with it by ``Dehazer.dehaze_with_record``)."""
    mode: str = "whole"          # whole | tiled | fast | dcp | identity
    tile: int | None = None
    stats_scale: float | None = None
    net_size: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went, by stage
    transmission: np.ndarray | None = field(default=None, repr=False)  # HxW t, when the Dehazer keeps it


class Dehazer:
    """A loaded dehazing model, reusable across calls and threads.

    ``Dehazer(weights=None, method="odcr", device="auto", backend="auto", onnx_path=None,
    tile=None, max_side="auto", half=False, memory_budget_gb=4.0, halo=64, stats_max_pixels=None)``

    * ``weights``: our ``.safetensors``, an odcr checkpoint ``.pt`` or a CUT ``net_G.pth``;
      None = the bundled model called ``model`` (None: the default; ``odcr models`` lists them).
      ``method="dcp"`` (dark channel prior) needs none.
    * ``tile``: force tiling with cores of this many pixels; None = automatic (tiles only when
      the whole image would exceed ``memory_budget_gb``).
    * ``max_side``: fast mode (see module doc); ``"auto"``: full resolution on GPU, fast mode
      at :data:`CPU_AUTO_MAX_SIDE` on CPU for larger images; 0/None: always full resolution.
    * ``strength``: 0 = the input, 1 = full dehazing, up to 2; scattering models and ``dcp`` remove
      that fraction of the haze (t -> 1 - s (1 - t)), direct models blend with the input.
      ``keep_exposure``: the output's mean luma brought back to the input's (``odcr_cli.imaging.tone``).
    * ``method``, ``backend``, ``device``, ``max_side``: strings or the types of
      :mod:`odcr_cli.engine.options`, parsed here once (a bad value is an InferenceError).
    * ``dehaze(image)``: HxWx3, HxWx4 (alpha passed through) or HxW; uint8, uint16 or float
      in [0, 1]; returns the same shape and dtype. ``dehaze_with_record(image)`` also returns
      the :class:`ImageRecord` of that image (how it was processed, notes, seconds by stage).
    * ``__call__(batch)``: a Ray Data ``map_batches`` callable on ``batch["image"]``.
    """

    def __init__(self, options: EngineOptions | None = None, **settings: Any) -> None:
        o = options if options is not None else EngineOptions(**settings)
        if options is not None and settings:
            raise InferenceError("give EngineOptions or keyword settings, not both")
        self._configure(o)
        if o.method is Method.DCP:  # full resolution unless a side is given: the classical algorithm
            self._max_side = o.max_side if isinstance(o.max_side, int) else None
            return
        choice = choose_backend(o.backend, weights=o.weights, onnx_path=o.onnx_path, device=o.device, half=o.half,
                                model=o.model)
        self._attach(self._load(choice, o.weights, o.onnx_path, o.device, o.half, o.model), o.max_side)
        if o.keep_transmission and self.readout.writes_image:
            raise InferenceError("--save-transmission needs a model that estimates t (a scattering model, "
                                 "the default) or --method dcp; this one writes the image directly")

    def _configure(self, o: EngineOptions) -> None:
        """What every Dehazer has, whatever runs it (``dcp`` runs numpy on the CPU)."""
        if o.tile is not None and o.tile < MIN_SIDE:
            raise InferenceError(f"--tile must be at least {MIN_SIDE} pixels")
        self.options = o
        self.method, self.strength = o.method, o.strength
        self.tile, self.halo = o.tile, o.halo
        self.memory_budget = o.memory_budget_gb * 1e9
        self.stats_max_pixels = o.stats_max_pixels
        self.weights_path: str | None = None
        self.weights_sha256: str | None = None
        self.model_name: str | None = None
        self.parameters: int | None = None
        self.threads = _limit_threads(o.threads)
        self.keep_transmission = o.keep_transmission  # the full-resolution t in each ImageRecord
        self.backend: Backend | None = None
        self.backend_name, self.device = "numpy", "cpu"
        self.readout: Readout = readout_for(None)
        self._ngf = 64
        self._lock = threading.Lock()

    def _load(self, choice: BackendChoice, weights: str | None, onnx_path: str | None, device: Device,
              half: bool, model: str | None) -> Backend:
        """The backend running ``weights``/``onnx_path``, or the bundled ``model`` (None: the default)."""
        known = None  # a bundled file, hashed once when it was verified
        if weights is None and onnx_path is None:
            bundled = bundled_model(model)
            self.model_name = bundled.name
            known = bundled.onnx_file() if choice is BackendChoice.ONNX else bundled.weights_file()
            if known is None:
                raise InferenceError(f"bundled model {bundled.name} has no ONNX export; use --backend torch")
            onnx_path, weights = (str(known.path), None) if choice is BackendChoice.ONNX else (None, str(known.path))
        if choice is BackendChoice.ONNX:
            path = onnx_path or (weights if weights and str(weights).endswith(".onnx") else None)
            if path is None:
                raise InferenceError("--backend onnx needs --onnx FILE (an exported model)")
            from odcr_cli.files.fsutil import sha256_file

            backend = make_backend(choice, onnx_path=str(path), device=device, threads=self.threads)  # a missing file is its error
            self.weights_path, self.weights_sha256 = str(path), known.sha256 if known else sha256_file(path)
            return backend
        if onnx_path is not None or (weights is not None and str(weights).endswith(".onnx")):
            raise InferenceError("an ONNX model runs on ONNX Runtime: use --backend onnx (or auto)")
        from odcr_cli.files import weights_io  # imports torch: only on this path

        loaded = weights_io.load_generator(weights, sha256=known.sha256 if known else None)
        self.weights_path, self.weights_sha256 = str(loaded.path), loaded.sha256
        return make_backend(choice, generator=loaded.generator, device=device, half=half, threads=self.threads)

    def _attach(self, backend: Backend, max_side: MaxSide) -> None:
        """Run on ``backend``; fast mode's default follows from what it is (one rule for every backend)."""
        self.backend, self.backend_name, self.device = backend, backend.name, backend.device
        self.parameters = backend.parameters
        ngf = backend.generator_config.get("ngf", 64)
        self._ngf = ngf if isinstance(ngf, int) and ngf > 0 else 64  # memory estimates only: damaged metadata is no error
        self.readout = readout_for(backend.generator_config)
        if max_side == AUTO:
            max_side = (model_side(backend.generator_config) if not self.readout.writes_image
                        else None if backend.on_gpu else CPU_AUTO_MAX_SIDE)
        self._max_side = max_side

    @classmethod
    def from_backend(cls, backend: Backend, *, tile: int | None = None, max_side: int | str | None = AUTO,
                     memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB, halo: int = DEFAULT_HALO,
                     stats_max_pixels: int | None = None, strength: float = 1.0) -> "Dehazer":
        """A Dehazer around any object implementing :class:`~odcr_cli.engine.backends.Backend`
        (custom runtimes, tests, training's validation)."""
        self = cls.__new__(cls)
        o = EngineOptions(tile=tile, max_side=max_side, memory_budget_gb=memory_budget_gb, halo=halo,
                          stats_max_pixels=stats_max_pixels, strength=strength)
        self._configure(o)
        self._attach(backend, o.max_side)
        return self

    # -- description ------------------------------------------------------------------------
    @property
    def max_side(self) -> int | None:
        return self._max_side

    def describe(self) -> dict:
        return {"method": self.method.value, "model": self.model_name, "backend": self.backend_name, "device": self.device,
                "output": self.readout.kind if self.method is Method.ODCR else None,
                "weights": self.weights_path, "weights_sha256": self.weights_sha256,
                "parameters": self.parameters, "tile": self.tile, "max_side": self._max_side,
                "memory_budget_gb": self.memory_budget / 1e9, "strength": self.strength, "threads": self.threads}

    # -- planning ---------------------------------------------------------------------------
    def _bytes_per_pixel(self) -> float:
        table = BYTES_PER_PIXEL_NGF64
        per_px = table.get(f"{self.backend_name}-{self.backend.precision}", table.get(self.backend_name, 3000.0))
        return per_px * self._ngf / 64

    def estimate_bytes(self, h: int, w: int) -> float:
        return padded_size(h) * padded_size(w) * self._bytes_per_pixel() + FIXED_OVERHEAD_BYTES

    def _budget_pixels(self, budget: float | None = None) -> float:
        budget = self.memory_budget if budget is None else budget
        return max(64 * 64, (budget - FIXED_OVERHEAD_BYTES) / self._bytes_per_pixel())

    def network_side(self, h: int, w: int) -> int | None:
        """The longer side a scattering model's network runs at for an h x w photo (None: the photo
        itself): ``max_side``, or with ``max_side`` 0 the largest that fits the memory budget."""
        return self._max_side or self._side_within_budget(h, w)

    def _side_within_budget(self, h: int, w: int) -> int | None:
        """``--max-side 0`` on a scattering model (which never tiles): None (the photo itself) when
        the network's estimated memory fits the budget, else the largest side that fits."""
        m, long = 2 * MARGIN, max(h, w)
        budget = self.memory_budget - READOUT_BYTES_PER_PIXEL * h * w

        def fits(side: int) -> bool:  # the copy shrink_to makes at this side, framed by the margins
            return self.estimate_bytes(round(h * side / long) + m, round(w * side / long) + m) <= budget

        if fits(long):
            return None
        # the scale s whose framed copy (h s + m)(w s + m) holds the budget's pixels, then down to a fit
        p = self._budget_pixels(budget)
        s = (math.sqrt(m * m * (h + w) ** 2 - 4 * h * w * (m * m - p)) - m * (h + w)) / (2 * h * w)
        side = max(MIN_SIDE, int(long * s) // SIZE_MULTIPLE * SIZE_MULTIPLE)
        while side > MIN_SIDE and not fits(side):
            side -= SIZE_MULTIPLE
        return side

    def _auto_tile(self) -> int:
        side = int(math.sqrt(self._budget_pixels())) - 2 * self.halo
        return max(64, min(2048, side // SIZE_MULTIPLE * SIZE_MULTIPLE))

    # -- core -------------------------------------------------------------------------------
    def _net_full(self, rgb: np.ndarray, record: ImageRecord) -> np.ndarray:
        """Full-resolution inference, whole or tiled."""
        h, w, _ = rgb.shape
        tile = self.tile
        if tile is None and self.estimate_bytes(h, w) > self.memory_budget:
            tile = self._auto_tile()
        if tile is None or (padded_size(h) <= tile and padded_size(w) <= tile):
            record.mode = "whole"
            return run_padded(self._run_image, rgb)
        record.mode, record.tile = "tiled", tile
        x, (h0, w0) = pad_to_multiple(to_net(rgb)[0])
        x = x[None]
        backend = self._frozen_stats_backend(record)
        limit = self.stats_max_pixels or self._budget_pixels()
        scale = min(1.0, math.sqrt(limit / (h * w)))
        record.stats_scale = scale
        if scale < 1.0:
            sh, sw = max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale))
            small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
            xs, _ = pad_to_multiple(to_net(small)[0])
        else:
            xs = x[0]
        stats = backend.instance_norm_stats(xs[None])
        y = run_tiled(lambda t: backend.run_frozen(t, stats), x, tile, self.halo)
        return from_net(y[:, :, :h0, :w0])

    def _run_image(self, x: np.ndarray) -> np.ndarray:
        return self.backend.run_outputs(x)["image"]

    def _frozen_stats_backend(self, record: ImageRecord) -> Backend:
        """This backend, when it can freeze InstanceNorm statistics for tiling (tiles with their
        own statistics would drift in colour); ONNX Runtime cannot."""
        if self.backend.supports_frozen_stats:
            return self.backend
        raise InferenceError("this image needs tiling and ONNX Runtime cannot freeze InstanceNorm statistics "
                             "across tiles; use --backend torch, or --max-side to run it smaller")

    def network_outputs(self, small: np.ndarray) -> dict[str, np.ndarray]:
        """The network's named outputs on ``small`` (hxwx3 float32 [0, 1], already the size it
        should run at; :func:`odcr_cli.haze.pipeline.network_outputs`): what a readout's ``estimate``
        takes. One pass at a time."""
        with self._lock:
            return pipeline.network_outputs(self.backend.run_outputs, small)

    def _dehaze_scattering(self, rgb: np.ndarray, record: ImageRecord, source: Source) -> np.ndarray:
        """The network on a copy whose longer side is at most ``max_side`` (never tiled: InstanceNorm
        statistics are always the whole image's), J at full resolution."""
        h, w = rgb.shape[:2]
        side = self.network_side(h, w)
        if side and not self._max_side:
            record.notes.append(f"the network ran at {side} px, not the full {max(h, w)}, to stay within the "
                              f"{self.memory_budget / 1e9:g} GB memory budget")
        # the lock is held by _dehaze_float
        done = pipeline.dehaze(rgb, self.backend.run_outputs, self.readout, side, strength=self.strength,
                               source=source)
        record.net_size = done.haze.t_small.shape[:2]
        record.mode = "fast" if record.net_size != rgb.shape[:2] else "whole"
        if self.keep_transmission:
            record.transmission = done.t
        record.seconds = done.seconds
        return done.image

    def _dehaze_float(self, rgb: np.ndarray, source: Source = Source()) -> tuple[np.ndarray, ImageRecord]:
        record = ImageRecord()
        if self.strength == 0.0:  # --strength 0 is the input itself: no need to run anything
            record.mode = "identity"
            return rgb.copy(), record
        if self.method is Method.DCP:
            from odcr_cli.haze.dcp import dehaze_dcp
            record.mode = "dcp"
            out, t = dehaze_dcp(rgb, max_side=self._max_side, strength=self.strength, with_transmission=True)
            record.transmission = t if self.keep_transmission else None
            return out, record
        with self._lock:  # one network pass at a time; the record and the retry count are this call's
            retries = self.backend.fp32_retries
            if not self.readout.writes_image:
                out = self._dehaze_scattering(rgb, record, source)
            else:
                out = self._dehaze_direct(rgb, record)
            if self.backend.fp32_retries > retries:
                record.notes.append("fp16 output was not finite; redone in fp32")
        return out, record

    def _dehaze_direct(self, rgb: np.ndarray, record: ImageRecord) -> np.ndarray:
        """A direct model: whole, tiled or in fast mode; ``--strength`` blends with the input."""
        small = shrink_to(rgb, self._max_side)
        if small is not rgb:
            small_out = self._net_full(small, record)
            record.mode, record.net_size = "fast", small.shape[:2]
            out = guided_upsample(small, small_out, rgb)
        else:
            out = self._net_full(rgb, record)
        if self.strength != 1.0:  # a direct model has no haze to scale: blend with the input (above 1: beyond)
            out = rgb + self.strength * (out - rgb)
        return out

    def dehaze_with_record(self, image: np.ndarray, quantization: dict | None = None) -> tuple[np.ndarray, ImageRecord]:
        """Dehaze one image (``quantization``: its file's JPEG tables); (same shape and dtype, how it was processed)."""
        rgb, restore = to_float_rgb(np.asarray(image))
        out, record = self._dehaze_float(rgb, source_for(np.asarray(image).dtype, quantization))
        return restore(keep_exposure(out, rgb) if self.options.keep_exposure else out), record

    def dehaze(self, image: np.ndarray, quantization: dict | None = None) -> np.ndarray:
        """Dehaze one image (``quantization``: its file's JPEG tables, what the recovery reads of
        the file's own noise); same shape and dtype out as in (see class doc)."""
        return self.dehaze_with_record(image, quantization)[0]

    def __call__(self, batch: dict) -> dict:
        images = batch["image"]
        outs = [self.dehaze(img) for img in images]
        result = dict(batch)
        if isinstance(images, np.ndarray) and images.dtype != object:
            result["image"] = np.stack(outs) if outs else images.copy()
        else:
            result["image"] = outs
        return result


def _limit_threads(threads: int | None) -> int | None:
    """``--threads N``: at most N CPU threads for the network (its runtime's pool) and for OpenCV
    (whose pool is one per process, so this holds for the whole process); None: each library's own
    choice (all cores)."""
    if threads is None:
        return None
    cv2.setNumThreads(int(threads))
    return int(threads)


__all__: Sequence[str] = ("Dehazer", "ImageRecord", "CPU_AUTO_MAX_SIDE")
