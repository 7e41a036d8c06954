"""Networks: parameter counts of the paper, CUT checkpoint compatibility, shapes, encode."""

from __future__ import annotations

import torch

from odcr_cli.core.configs import GeneratorConfig
from odcr_cli.core.networks import (
    ChannelClassifiers,
    PatchDiscriminator,
    ProjectionHead,
    ResnetGenerator,
    count_parameters,
)
from odcr_cli.core.stiefel import orthogonality_error
from odcr_cli.files.weights_io import infer_generator_config, load_generator


def test_parameter_counts_match_the_papers() -> None:
    g = ResnetGenerator()
    assert count_parameters(g) == 11_378_179  # ODCR Table 1: 11.38 M
    assert count_parameters(ResnetGenerator(GeneratorConfig(antialias=False))) == 11_378_179
    assert count_parameters(PatchDiscriminator()) == 2_764_737
    assert count_parameters(ProjectionHead(g.layer_channels())) == 560_384
    assert g.layer_channels() == [3, 128, 256, 256, 256]


def test_state_dict_uses_cut_module_indices() -> None:
    keys = set(ResnetGenerator().state_dict())
    for k in ("model.1.weight", "model.4.weight", "model.7.filt", "model.8.weight", "model.11.filt",
              "model.12.conv_block.1.weight", "model.12.conv_block.5.bias", "model.20.conv_block.5.weight",
              "model.21.filt", "model.22.weight", "model.25.filt", "model.26.weight", "model.30.weight"):
        assert k in keys, k
    assert not any(k.startswith("model.31") for k in keys)


def test_cut_style_pth_loads_strictly(tmp_path) -> None:
    src = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=3))
    torch.save(src.state_dict(), tmp_path / "latest_net_G.pth")
    loaded = load_generator(tmp_path / "latest_net_G.pth")
    assert loaded.generator.config == GeneratorConfig(ngf=8, n_blocks=3, antialias=True)
    x = torch.rand(1, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.generator(x), src.eval()(x))
    plain = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=2, antialias=False))
    assert infer_generator_config(plain.state_dict()).antialias is False


def test_output_size_rule_and_range() -> None:
    g = ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)).eval()
    with torch.no_grad():
        assert g(torch.zeros(1, 3, 64, 48)).shape == (1, 3, 64, 48)
        y = g(torch.zeros(2, 3, 50, 33))
    assert y.shape == (2, 3, 52, 36)  # 4 * ceil(H / 4): callers must pad
    assert y.abs().max() <= 1


def test_encode_stops_after_last_requested_layer() -> None:
    g = ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=2)).eval()
    ran: list[int] = []
    for i, m in enumerate(g.model):
        m.register_forward_hook(lambda *_, i=i: ran.append(i))
    feats = g.encode(torch.zeros(1, 3, 32, 32), [0, 4, 8])
    assert [f.shape[1] for f in feats] == [3, 8, 16]
    assert max(ran) == 8
    assert feats[0].shape[-1] == 38  # layer 0 is the reflect-padded input


def test_orthogonal_head_starts_on_the_stiefel_manifold() -> None:
    head = ProjectionHead([3, 128, 256], orthogonal=True)
    mats = head.stiefel_parameters()
    assert len(mats) == 6
    assert all(orthogonality_error(w.detach().double()) < 1e-5 for w in mats)
    assert not {id(p) for p in mats} & {id(p) for p in head.euclidean_parameters()}
    z = head([torch.randn(5, 3), torch.randn(5, 128), torch.randn(5, 256)])
    assert all(torch.allclose(t.norm(dim=-1), torch.ones(5), atol=1e-5) for t in z)
    assert ProjectionHead([3, 128], kind="mlp", orthogonal=False).stiefel_parameters() == []


def test_channel_classifiers_shapes() -> None:
    clf = ChannelClassifiers(n_layers=5, dim=256)
    assert clf(torch.randn(7, 256), layer=2).shape == (7, 2)
    assert clf.theta(4).shape == (2, 256)


def test_checkpoint_average_is_the_mean_of_the_weights(tmp_path) -> None:
    import pytest

    from odcr_cli.errors import WeightsError
    from odcr_cli.files.weights_io import average_generators, save_generator

    paths = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        paths.append(save_generator(tmp_path / f"g{seed}.safetensors", ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)),
                                    {"iteration": str(seed)}))
    states = [load_generator(p).generator.state_dict() for p in paths]
    avg, meta = average_generators(paths)
    for k, v in avg.state_dict().items():
        assert torch.allclose(v, (states[0][k] + states[1][k] + states[2][k]) / 3, atol=1e-7)
    assert meta["iteration"] == "2" and "g0.safetensors" in meta["averaged_from"]
    save_generator(tmp_path / "wide.safetensors", ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=1)))
    with pytest.raises(WeightsError, match="different generator"):
        average_generators([paths[0], tmp_path / "wide.safetensors"])


def test_the_blur_upsampling_is_cuts_binomial_transposed_conv_run_as_one_bilinear_resize() -> None:
    """BlurUpsample runs as bilinear x2 (an ONNX Resize, fast on the CPU) and must stay the
    transposed conv with CUT's binomial filter that the weights were trained with."""
    from odcr_cli.core.networks import BlurUpsample

    torch.manual_seed(0)
    up = BlurUpsample(5)
    for h, w in [(1, 1), (2, 3), (7, 5), (40, 33)]:
        x = torch.randn(2, 5, h, w)
        assert up(x).shape == (2, 5, 2 * h, 2 * w)
        assert torch.allclose(up(x), up.as_transposed_conv(x), atol=1e-5), (h, w)
