"""Generator weights on disk: our safetensors files, our training checkpoints and CUT's ``.pth``
(the bundled models and their manifest are :mod:`odcr_cli.files.bundled`)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from odcr_cli import __version__
from odcr_cli.core.configs import GeneratorConfig
from odcr_cli.core.networks import ResnetGenerator
from odcr_cli.files.fsutil import atomic_output, sha256_file
from odcr_cli.errors import WeightsError

FORMAT_TAG = "odcr-generator"


@dataclass(frozen=True)
class LoadedGenerator:
    generator: ResnetGenerator
    metadata: dict[str, str]
    path: Path
    sha256: str


def save_generator(path: str | os.PathLike, generator: ResnetGenerator,
                   metadata: dict[str, str] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write the generator as safetensors (atomically), with what is needed to rebuild it.
    ``metadata`` adds to that; its own ``generator_config`` (a stale copy, say from the file the
    generator was loaded from) never replaces the generator's."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    meta = {"format": FORMAT_TAG, "odcr_version": __version__,
            "generator_config": json.dumps(generator.config.to_dict())}
    meta.update({k: str(v) for k, v in (metadata or {}).items() if k != "generator_config"})
    with atomic_output(path) as fh:
        fh.write(safetensors_save(tensors, metadata=meta))
    return Path(path)


def infer_generator_config(state_dict: dict[str, torch.Tensor]) -> GeneratorConfig:
    """Recover ngf / n_blocks / antialias from a generator state_dict (ours or CUT's)."""
    if "model.1.weight" not in state_dict:
        raise WeightsError("not a ResNet generator state_dict (no 'model.1.weight')")
    ngf = int(state_dict["model.1.weight"].shape[0])
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    last = max((k for k in state_dict if re.fullmatch(r"model\.\d+\.weight", k)), key=lambda k: int(k.split(".")[1]))
    scattering = state_dict[last].shape[0] == 1  # a one-channel transmission logit, not RGB
    return GeneratorConfig(ngf=ngf, n_blocks=len(blocks), antialias="model.7.filt" in state_dict,
                           output="scattering" if scattering else "image",
                           learned_airlight="airlight_head.weight" in state_dict)


def _strip_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DataParallel / DDP checkpoints prefix every key with "module."
    if all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def build_generator(state_dict: dict[str, torch.Tensor], config: GeneratorConfig | None = None) -> ResnetGenerator:
    state_dict = _strip_prefix(state_dict)
    config = config or infer_generator_config(state_dict)
    generator = ResnetGenerator(config)
    try:
        generator.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"weights do not match the generator: {first}") from None
    return generator.eval()


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several unrelated types on bad files
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    return tensors, meta


def _read_torch(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], GeneratorConfig | None]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot be loaded safely as a PyTorch file ({type(exc).__name__})") from None
    if isinstance(obj, dict) and "generator" in obj:  # our training checkpoint
        config = GeneratorConfig.from_dict(obj.get("generator_config", {})) if "generator_config" in obj else None
        meta = {"method": str(obj.get("method", "")), "iteration": str(obj.get("iteration", ""))}
        if "generator_ema" in obj:  # the weights the run saves as its generator
            meta["weights"] = f"EMA of the generator's weights, decay {obj['generator_ema'].get('decay')}"
            return obj["generator_ema"]["module"], meta, config
        return obj["generator"], meta, config
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {"source": "cut-pth"}, None
    raise WeightsError(f"{path}: not a generator state_dict or an odcr checkpoint")


RUN_GENERATOR = "generator.safetensors"  # what a run folder of odcr train holds (tasks/train/run_folder.py)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu",
                   sha256: str | None = None) -> LoadedGenerator:
    """Load a generator from our safetensors, our checkpoint (``.pt``), a CUT ``net_G.pth``, or a
    run folder of ``odcr train`` (its ``generator.safetensors``, the newest checkpoint's).
    ``sha256``: the file's, when the caller has hashed it already (a verified bundled file)."""
    p = Path(path)
    if p.is_dir():
        if not (p / RUN_GENERATOR).is_file():
            raise WeightsError(f"{p} is a folder without {RUN_GENERATOR}: name a weights file or an odcr train run folder")
        p = p / RUN_GENERATOR
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        tensors, meta = _read_safetensors(p)
        config = GeneratorConfig.from_dict(json.loads(meta["generator_config"])) if "generator_config" in meta else None
    else:
        tensors, meta, config = _read_torch(p)
    generator = build_generator(tensors, config).to(device)
    return LoadedGenerator(generator, meta, p, sha256 or sha256_file(p))


def average_generators(paths: list[str | os.PathLike]) -> tuple[ResnetGenerator, dict[str, str]]:
    """Uniform average of the weights of several checkpoints of one generator (checkpoint
    averaging; InstanceNorm keeps no running statistics, so nothing needs recalibrating).

    Returns the averaged generator and the metadata of the last file, with ``averaged_from``."""
    if not paths:
        raise WeightsError("nothing to average")
    loaded = [load_generator(p) for p in paths]
    first = loaded[0].generator
    for other in loaded[1:]:
        if other.generator.config != first.config:
            raise WeightsError(f"{other.path} is a different generator ({other.generator.config} vs {first.config})")
    states = [x.generator.state_dict() for x in loaded]
    average = {k: (torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
               for k, v in states[-1].items()}
    generator = loaded[-1].generator
    generator.load_state_dict(average)
    meta = dict(loaded[-1].metadata)
    meta["averaged_from"] = ", ".join(f"{x.path.name} (sha256 {x.sha256[:12]})" for x in loaded)
    return generator, meta

