"""Network definitions: CUT's anti-aliased ResNet generator, the PatchGAN discriminator,
the projection heads (CUT's MLP and ODCR's orthogonal head) and ODCR's channel classifiers.

Module indices of the generator follow the public CUT code, so that a ``net_G.pth`` saved
by it loads into :class:`ResnetGenerator` with ``strict=True`` (docs/method.md, section 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from odcr_cli.core.configs import NCE_LAYERS_DEFAULT, GeneratorConfig
from odcr_cli.haze import prior_torch
from odcr_cli.haze.constants import AIRLIGHT_FLOOR, SIZE_MULTIPLE
from odcr_cli.haze.network_input import to_signed, to_unit
from odcr_cli.haze.scattering import remove_haze
from odcr_cli.haze.transmission_torch import transmission_from_logit, transmission_from_residual


def _binomial_filter(size: int) -> torch.Tensor:
    """Normalised 2-D binomial filter of ``size`` taps (3 -> [1,2,1] x [1,2,1])."""
    taps = {3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0]}[size]
    a = torch.tensor(taps, dtype=torch.float32)
    filt = a[:, None] * a[None, :]
    return filt / filt.sum()


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling (Zhang 2019): reflect-pad 1, fixed 3x3 binomial blur.

    Shapes: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)). The filter is a saved buffer ``filt``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.register_buffer("filt", _binomial_filter(3)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """Anti-aliased x2 upsampling (CUT's): replicate-pad 1, the fixed 4x4 binomial filter ``filt``
    as a stride-2 transposed conv, crop 1.

    Shapes: (B, C, H, W) -> (B, C, 2H, 2W). Per axis that filter gives each new pixel 3/4 of its
    nearer source pixel and 1/4 of the farther one, edges clamped: bilinear x2 with half-pixel
    centres, which is what runs (one ONNX ``Resize``: ONNX Runtime's depthwise ``ConvTranspose``
    took a quarter of the default network's time on the CPU). ``filt`` stays a buffer, so that
    saved weights load, and :meth:`as_transposed_conv` is the definition a test holds it to.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad = nn.ReplicationPad2d(1)
        self.register_buffer("filt", (_binomial_filter(4) * 4.0)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def as_transposed_conv(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(self.pad(x), self.filt, stride=2, padding=2, groups=x.shape[1])
        return y[:, :, 1:-1, 1:-1]


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Residual block: x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x). Shape-preserving."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            _instance_norm(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            _instance_norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CUT's ResNet generator, one flat ``nn.Sequential`` named ``model``.

    Input and output are RGB in [-1, 1], shape (B, 3, H, W) with H, W multiples of 4
    (otherwise the output has 4*ceil(H/4) rows; callers pad: ``odcr_cli.engine.tiling.pad_to_multiple``).
    ``forward`` always returns the clear image, whatever ``config.output`` is, so that every loss
    and every caller sees one kind of generator; :meth:`raw_outputs` gives what the network
    itself predicts (see :func:`odcr_cli.haze.readout.output_names`).
    """

    size_multiple: int = SIZE_MULTIPLE

    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        self.config = config
        ngf = config.ngf
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, ngf, 7, bias=True),
            _instance_norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            c_in, c_out = ngf * 2**i, ngf * 2 ** (i + 1)
            if config.antialias:
                layers += [nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=True),
                           _instance_norm(c_out), nn.ReLU(True), BlurDownsample(c_out)]
            else:
                layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=True),
                           _instance_norm(c_out), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(config.n_blocks)]
        self.bottleneck_index = len(layers) - 1
        for i in range(2):
            c_in, c_out = ngf * 2 ** (2 - i), ngf * 2 ** (1 - i)
            if config.antialias:
                layers += [BlurUpsample(c_in), nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=True),
                           _instance_norm(c_out), nn.ReLU(True)]
            else:
                layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=True),
                           _instance_norm(c_out), nn.ReLU(True)]
        if config.output == "image":
            layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7, bias=True), nn.Tanh()]
        else:  # the transmission logit; t = t_min + (1 - t_min) sigmoid(logit)
            layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7, bias=True)]
        self.model = nn.Sequential(*layers)
        # A small global correction of the rule-based airlight, from pooled bottleneck features.
        self.airlight_head = nn.Linear(ngf * 4, 3) if config.learned_airlight and config.output == "scattering" else None

    def _run(self, x: torch.Tensor, layers: Sequence[int] = ()) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """One pass: the raw outputs and the features at ``layers`` (``model`` indices)."""
        wanted = set(layers)
        found: dict[int, torch.Tensor] = {}
        h = x
        pooled = None
        for idx, module in enumerate(self.model):
            h = module(h)
            if idx in wanted:
                found[idx] = h
            if idx == self.bottleneck_index and self.airlight_head is not None:
                pooled = h.mean(dim=(2, 3))
        c = self.config
        if c.output == "image":
            raw = {"image": h}
        else:
            correction = (0.1 * torch.tanh(self.airlight_head(pooled)) if pooled is not None
                          else h.new_zeros(h.shape[0], 3))
            raw = ({"t_residual": h} if c.t_prior == "dcp" else {"t": transmission_from_logit(h, c.t_min)})
            raw["airlight_correction"] = correction
        return raw, [found[i] for i in layers]

    def raw_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> what the network itself predicts (:func:`odcr_cli.haze.readout.output_names`):
        ``image`` (B, 3, H, W) for the paper's output; for scattering ``t`` (B, 1, H, W) in
        [t_min, 1], or with the DCP prior the logit residual ``t_residual`` (B, 1, H, W), and
        ``airlight_correction`` (B, 3)."""
        return self._run(x)[0]

    def haze_estimate(self, x: torch.Tensor, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What a scattering output says about the haze of the input ``x`` ([-1, 1]), each
        computed once: ``t`` (B, 1, H, W) in [t_min, 1], ``airlight`` (B, 3) (the dark-channel rule
        plus the correction) and, with the DCP prior, ``t_dcp`` (B, 1, H, W), the prior itself."""
        c = self.config
        x01 = to_unit(x)
        rule = prior_torch.estimate_airlight(x01, c.airlight_patch, c.airlight_top)
        est = {"airlight": (rule + raw["airlight_correction"]).clamp(AIRLIGHT_FLOOR, 1.0)}
        if "t" in raw:
            est["t"] = raw["t"]
        else:
            est["t_dcp"] = prior_torch.dcp_transmission(x01, rule)
            est["t"] = transmission_from_residual(raw["t_residual"], est["t_dcp"], c.t_min)
        return est

    def _compose(self, x: torch.Tensor, raw: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.config.output == "image":
            return raw["image"], {}
        est = self.haze_estimate(x, raw)
        clear = remove_haze(to_unit(x), est["t"], est["airlight"][:, :, None, None])
        return to_signed(clear.clamp(0.0, 1.0)), est

    def compose(self, x: torch.Tensor, raw: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw outputs of input ``x`` -> the clear image (B, 3, H, W) in [-1, 1]."""
        return self._compose(x, raw)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1], the clear image."""
        return self.compose(x, self.raw_outputs(x))

    def forward_with_features(self, x: torch.Tensor, layers: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """From one pass: the clear image, the encoder features at ``layers`` and the haze estimate
        of :meth:`haze_estimate` (empty for the paper's image output)."""
        raw, feats = self._run(x, layers)
        clear, est = self._compose(x, raw)
        return clear, feats, est

    def encode(self, x: torch.Tensor, layers: Sequence[int] = NCE_LAYERS_DEFAULT) -> list[torch.Tensor]:
        """Features at the given ``model`` indices, running only as far as the last one."""
        wanted = sorted(set(layers))
        found: dict[int, torch.Tensor] = {}
        h = x
        for idx, module in enumerate(self.model):
            h = module(h)
            if idx in wanted:
                found[idx] = h
                if idx == wanted[-1]:
                    break
        return [found[i] for i in layers]

    def layer_channels(self, layers: Sequence[int] = NCE_LAYERS_DEFAULT) -> list[int]:
        """Channel width of the encoder features at ``layers`` (cheap dry run at 8x8)."""
        with torch.no_grad():
            p = next(self.parameters())
            feats = self.encode(torch.zeros(1, 3, 8, 8, dtype=p.dtype, device=p.device), layers)
        return [f.shape[1] for f in feats]


@dataclass(frozen=True)
class DiscriminatorConfig:
    ndf: int = 64
    n_layers: int = 3
    antialias: bool = True


class PatchDiscriminator(nn.Module):
    """CUT's ``basic`` PatchGAN with InstanceNorm: (B, 3, H, W) -> (B, 1, h, w) real/fake scores."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        ndf, aa = config.ndf, config.antialias
        stride = 1 if aa else 2
        seq: list[nn.Module] = [nn.Conv2d(3, ndf, 4, stride=stride, padding=1), nn.LeakyReLU(0.2, True)]
        if aa:
            seq.append(BlurDownsample(ndf))
        mult = 1
        for n in range(1, config.n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=True),
                    _instance_norm(ndf * mult), nn.LeakyReLU(0.2, True)]
            if aa:
                seq.append(BlurDownsample(ndf * mult))
        prev, mult = mult, min(2**config.n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True),
                _instance_norm(ndf * mult), nn.LeakyReLU(0.2, True),
                nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _MLP(nn.Module):
    """Linear(C -> d) - ReLU - Linear(d -> d). Input (N, C), output (N, d)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class _StiefelLinear(nn.Module):
    """A single isometry x -> W x with W (d x C) on the Stiefel manifold, no bias."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, in_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class ProjectionHead(nn.Module):
    """One projection per NCE layer, followed by L2 normalisation.

    ``kind="mlp"`` with ``orthogonal=False`` is CUT's head (560,384 parameters at the defaults);
    with ``orthogonal=True`` the weight matrices of both Linear layers are Stiefel points
    (W^T W = I), initialised as random orthogonal matrices and updated by
    :class:`odcr_cli.core.stiefel.StiefelSGD`, never by Adam (docs/method.md, section 3.2).
    ``kind="linear"`` is a single Stiefel matrix per layer (spec 2.2, alternative).
    Forward: list of (N_l, C_l) patch features -> list of (N_l, dim) unit vectors.
    """

    def __init__(self, in_channels: Sequence[int], dim: int = 256, kind: str = "mlp",
                 orthogonal: bool = False) -> None:
        super().__init__()
        if kind not in ("mlp", "linear"):
            raise ValueError(f"unknown head kind {kind!r}")
        if kind == "linear" and not orthogonal:
            raise ValueError("the linear head exists only as an orthogonal head")
        self.kind, self.orthogonal, self.dim = kind, orthogonal, dim
        make = _MLP if kind == "mlp" else _StiefelLinear
        self.mlps = nn.ModuleList(make(c, dim) for c in in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for mlp in self.mlps:
            for m in mlp.modules():
                if isinstance(m, (nn.Linear, _StiefelLinear)):
                    if self.orthogonal:
                        nn.init.orthogonal_(m.weight)
                    else:
                        nn.init.xavier_normal_(m.weight, gain=0.02)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)

    def stiefel_parameters(self) -> list[nn.Parameter]:
        """Matrices constrained to W^T W = I (empty for CUT's head)."""
        if not self.orthogonal:
            return []
        return [p for n, p in self.named_parameters() if n.endswith("weight")]

    def euclidean_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.stiefel_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def project(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """(..., C_layer) patch features of one NCE layer -> (..., dim) unit vectors."""
        return F.normalize(self.mlps[layer](x), dim=-1, eps=1e-7)

    def forward(self, patches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.project(x, i) for i, x in enumerate(patches)]


class ChannelClassifiers(nn.Module):
    """ODCR's depth-wise feature classifiers (spec 2.4): per layer, theta_h and theta_c in R^dim.

    ``forward(z, layer)``: (N, dim) -> (N, 2) logits for (hazy, clear).
    ``theta(layer)``: (2, dim), rows theta_h and theta_c, used for the channel weights.
    """

    def __init__(self, n_layers: int, dim: int = 256) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_layers, 2, dim))
        self.bias = nn.Parameter(torch.zeros(n_layers, 2))
        nn.init.normal_(self.weight, std=dim**-0.5)

    def theta(self, layer: int) -> torch.Tensor:
        return self.weight[layer]

    def forward(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        return z @ self.weight[layer].t() + self.bias[layer]


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """CUT's default init: xavier-normal with ``gain`` for Conv/ConvTranspose/Linear, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def count_parameters(modules: Iterable[nn.Module] | nn.Module) -> int:
    if isinstance(modules, nn.Module):
        modules = [modules]
    return sum(p.numel() for m in modules for p in m.parameters())
