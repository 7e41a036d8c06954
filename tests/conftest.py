# --- dehaze fixtures (issue 3) ------------------------------------------------------------------
import numpy as _np
import pytest as _pytest


def make_photo(h: int = 96, w: int = 128, seed: int = 0) -> "_np.ndarray":
    """A smooth, hazy-looking uint8 RGB test picture with some texture (no binary fixtures)."""
    rng = _np.random.default_rng(seed)
    yy, xx = _np.mgrid[0:h, 0:w].astype(_np.float32)
    base = _np.stack([0.5 + 0.4 * _np.sin(xx / 9.0 + c) * _np.cos(yy / 13.0 - c) for c in range(3)], axis=2)
    base += rng.normal(0, 0.03, size=(h, w, 3)).astype(_np.float32)
    hazy = base * 0.6 + 0.35
    return (_np.clip(hazy, 0, 1) * 255).round().astype(_np.uint8)


@_pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A tiny random generator (ngf 4, 1 block) saved as safetensors."""
    import torch

    from odcr_cli.core.configs import GeneratorConfig
    from odcr_cli.core.networks import ResnetGenerator
    from odcr_cli.files.weights_io import save_generator

    torch.manual_seed(0)
    gen = ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1))
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_generator(path, gen)
    return path
