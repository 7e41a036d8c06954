"""Turn a run's generator into a bundled model in ``weights/``.

    python scripts/ship_weights.py GENERATOR [GENERATOR ...] --name odcr-interim-ngf32-b6 \
        --summary "one-line card" [--default] [--fp16] [--int8 CALIB_DIR | --no-onnx] [--check-dir ../shared/data/dev/real_hazy] [--note "..."]

Several generators (checkpoints of one run) are averaged uniformly before shipping.

Writes ``weights/NAME.safetensors`` (with its metadata: name, method, iterations, training data,
recipe), its parity-checked ONNX export ``weights/NAME.onnx`` (what ``odcr dehaze`` runs on the
CPU; ``--int8 CALIB_DIR``: with int8 convolutions calibrated on those photos; ``--no-onnx``: none,
for a direct model, which PyTorch runs twice as fast on the CPU), the model's entry in ``weights/models.json`` (``--default`` makes it the default; ``--recipe`` the
commands that made it; its dev-pair metrics are added by ``scripts/record_metrics.py``) and
``weights/SHA256SUMS``, which ``odcr dehaze`` verifies. With ``--fp16`` the tensors are
stored in half precision, and the script refuses to ship unless the fp16 model's outputs match the
fp32 ones at >= 45 dB PSNR on the photos of ``--check-dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from odcr_cli.files.fsutil import atomic_output, sha256_file
from odcr_cli.files.bundled import MANIFEST_NAME, REGISTRY_NAME
from odcr_cli.core.networks import count_parameters
from odcr_cli.tasks.export.export import export_onnx
from odcr_cli.haze.network_input import SIZE_MULTIPLE, to_signed, to_uint8
from odcr_cli.haze.readout import model_side
from odcr_cli.files.folders import list_images
from odcr_cli.imaging.metrics import psnr
from odcr_cli.files.weights_io import average_generators, load_generator, save_generator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # the data roots, said once (benchmarks/_paths.py)
from _paths import REAL_HAZY  # noqa: E402


def _outputs(generator: torch.nn.Module, photos: list[Path]) -> list[np.ndarray]:
    outs = []
    for p in photos:
        im = Image.open(p).convert("RGB")
        im.thumbnail((512, 512))
        w, h = im.size
        im = im.crop((0, 0, w - w % SIZE_MULTIPLE, h - h % SIZE_MULTIPLE))
        x = torch.from_numpy(to_signed(np.asarray(im, np.float32).transpose(2, 0, 1)[None] / 255.0))
        with torch.inference_mode():
            y = generator(x)[0].clamp(-1, 1)
        outs.append(to_uint8(y.permute(1, 2, 0).numpy()))
    return outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("generators", type=Path, nargs="+", help="one generator, or checkpoints to average")
    ap.add_argument("--name", required=True)
    ap.add_argument("--summary", help="the one-line card of `odcr models` (default: the entry's own, when the "
                                      "name is shipped again)")
    ap.add_argument("--default", action="store_true", help="make it the default model")
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--check-dir", type=Path, default=REAL_HAZY)
    ap.add_argument("--note", default="", help="a note kept in the weights' metadata (default: the generator's own)")
    ap.add_argument("--int8", type=Path, metavar="CALIB_DIR",
                    help="ship the ONNX export with int8 convolutions, calibrated on the photos of this folder "
                         "(training photos, never the dev data): what odcr dehaze runs on the CPU")
    ap.add_argument("--no-onnx", action="store_true", help="ship no ONNX export (a direct model runs on PyTorch)")
    ap.add_argument("--recipe", action="append", default=[], metavar="COMMAND",
                    help="repeatable: the commands that made the model, in order (kept in models.json)")
    args = ap.parse_args()
    if args.no_onnx and args.int8:
        ap.error("--int8 needs the ONNX export; drop --no-onnx")
    folder = ROOT / "weights"
    registry_path = folder / REGISTRY_NAME
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {"default": args.name, "models": []}
    own = next((m for m in registry["models"] if m["name"] == args.name), {})  # shipped again: its card stays
    summary, recipe = args.summary or own.get("summary"), args.recipe or own.get("recipe", [])
    if not summary:  # before anything is written
        ap.error(f"--summary is needed: {args.name} is a new model")

    if len(args.generators) == 1:
        loaded = load_generator(args.generators[0])
        generator, meta = loaded.generator, dict(loaded.metadata)
        meta.setdefault("source_sha256", loaded.sha256)  # re-shipping a bundled file keeps its run's
    else:
        generator, meta = average_generators(args.generators)
    meta.update({"name": args.name, "note": args.note or meta.get("note", "")})  # shipped again: its note stays
    meta.pop("format", None)
    target = folder / f"{args.name}.safetensors"
    save_generator(target, generator, meta, dtype=torch.float16 if args.fp16 else None)
    if args.fp16:
        photos = list_images(args.check_dir)[:6]
        shipped = load_generator(target).generator
        worst = min(psnr(a, b, 255.0) for a, b in zip(_outputs(generator, photos), _outputs(shipped, photos)))
        print(f"fp16 storage vs fp32: worst PSNR {worst:.2f} dB over {len(photos)} photos")
        if worst < 45:
            target.unlink()
            raise SystemExit("fp16 storage changes outputs by more than 45 dB allows; ship fp32 instead")
    onnx_target = None if args.no_onnx else folder / f"{args.name}.onnx"
    if onnx_target is not None:
        photos = list_images(args.check_dir)[:3] if args.check_dir.is_dir() else []
        calibration = list_images(args.int8) if args.int8 else []
        export_onnx(target, onnx_target, check_images=photos, int8_calibration=calibration)
    config = generator.config.to_dict()
    scattering = config["output"] == "scattering"
    # the dev-pair metrics are the new weights' to measure: scripts/record_metrics.py adds them
    entry = {"name": args.name, "kind": config["output"], "weights": target.name,
             "onnx": onnx_target.name if onnx_target else None,
             "parameters": count_parameters(generator), "summary": summary,
             "side": model_side(config) if scattering else None, "t_prior": config.get("t_prior", "none"),
             "metrics": None, "recipe": recipe}
    registry["models"] = [m for m in registry["models"] if m["name"] != args.name] + [entry]
    if args.default:
        registry["default"] = args.name
    with atomic_output(registry_path, "w") as fh:
        json.dump(registry, fh, indent=2)
        fh.write("\n")
    files = [folder / f for m in registry["models"] for f in (m["weights"], m.get("onnx")) if f]
    with atomic_output(folder / MANIFEST_NAME, "w") as fh:
        for f in files:
            fh.write(f"{sha256_file(f)}  {f.name}\n")
    for f in (target, onnx_target) if onnx_target else (target,):
        print(f"wrote {f} ({f.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
