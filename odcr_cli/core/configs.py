"""The settings of the model as frozen dataclasses, free of torch and numpy: the generator's shape
(:class:`GeneratorConfig`) and the losses of a method (:class:`MethodConfig`, with the presets of
odcr, cut and fastcut; docs/method.md, section 4).

A field made with :func:`flag` is also an ``odcr train`` flag: its metadata carries the help text
(plain strings), and the command line builds the option from the field, so that a new setting is
added in one place. Torch-free, because the command line reads these fields whenever it starts.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import PurePath
from typing import Any

from odcr_cli.haze.constants import PATCH, T_MIN, TOP

METHODS = ("odcr", "cut", "fastcut")
NCE_LAYERS_DEFAULT: tuple[int, ...] = (0, 4, 8, 12, 16)
OUTPUT_KINDS: tuple[str, ...] = ("image", "scattering")
T_PRIORS: tuple[str, ...] = ("none", "dcp")
WEIGHT_SCALES: tuple[str, ...] = ("std", "max", "printed")


def flag(default: Any = MISSING, *, help: str, **cli: Any) -> Any:
    """A dataclass field that is also a command-line flag, ``--`` and its name with - for _.

    ``help``: its help text. ``cli``: what the flag needs beyond the field, as plain values:
    ``decls`` (its names when not the field's, e.g. ``"--method"``), ``flag_default`` (the flag's
    default when it is not the field's), ``path`` (the value is a file or folder), ``min``/``max``."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of a :class:`~odcr_cli.core.networks.ResnetGenerator`. Defaults are CUT's
    ``resnet_9blocks``, ngf 64.

    ``output="image"`` is the paper's generator (a Tanh image). ``output="scattering"`` keeps the
    trunk and ends in a one-channel transmission logit instead; the clear image is then
    J = (I - A) / t + A with t >= ``t_min`` and A from the dark-channel rule (``airlight_patch``,
    ``airlight_top``), plus a small learned correction when ``learned_airlight``.

    ``t_prior="dcp"``: the network's logit is a residual on the logit of the dark-channel-prior
    transmission of its input, so it starts at the classical estimate and learns corrections.
    Why: InstanceNorm after the first convolution makes the trunk blind to any affine change of
    the input (a hazy photo and its contrast-stretched version give the same features), so on
    its own it can see where haze is relatively thicker, never how thick it is."""

    ngf: int = flag(64, help="Generator width.")
    n_blocks: int = flag(9, help="Generator residual blocks.")
    antialias: bool = flag(True, help="Blur down/upsampling (CUT default).")
    output: str = flag("image", help="image (the paper's generator writes J) | scattering (it predicts t; "
                                     "J = (I - A)/t + A).")
    t_min: float = flag(T_MIN, help="Scattering output: floor of the transmission (bounds 1/t noise gain).")
    learned_airlight: bool = flag(False, help="Scattering output: learn a small correction of the dark-channel airlight.",
                                  decls="--learned-airlight/--rule-airlight")
    airlight_patch: int = PATCH
    airlight_top: float = TOP
    # the flag's default is a scattering run's; the field's, none, is a direct generator's and that
    # of every saved config without the field
    t_prior: str = flag("none", help="Scattering output: dcp (the network refines the dark-channel-prior t, default) | "
                                     "none (it predicts t alone).", flag_default="dcp")
    # the longer side `odcr dehaze` runs a scattering network at by default (its copy of the photo);
    # 0: the engine's own default. A student distilled to run smaller records its side here.
    inference_side: int = 0

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"unknown generator output {self.output!r}; choose one of {', '.join(OUTPUT_KINDS)}")
        if self.t_prior not in T_PRIORS:
            raise ValueError(f"unknown t prior {self.t_prior!r}; choose one of {', '.join(T_PRIORS)}")
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {self.t_min}")
        if self.inference_side < 0:
            raise ValueError(f"inference_side must be 0 or more, got {self.inference_side}")

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GeneratorConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def _tuple_fields(cls: type) -> list[str]:
    """The fields of ``cls`` that hold tuples (lists in a run's config.json)."""
    return [f.name for f in fields(cls) if str(f.type).startswith("tuple")]


@dataclass(frozen=True)
class MethodConfig:
    """Every loss-side hyper-parameter of a method (docs/method.md, sections 2 and 3.5); the
    fields with a help text are flags of ``odcr train``, their defaults the ``--method`` preset's."""

    name: str = flag("odcr", help="odcr | cut | fastcut.", decls="--method")
    lambda_gan: float = flag(1.0, help="Weight of the adversarial (LSGAN) term.")
    lambda_nce: float = flag(1.0, help="Weight of the PatchNCE / weighted PatchNCE term.")
    lambda_ce: float = flag(1.0, help="Weight of the hazy/clear channel classifiers' loss (ODCR).")
    lambda_idt: float = flag(1.0, help="Weight of the identity term on clear images.")
    nce_idt: bool = flag(True, help="Identity term on the clear image.")
    halve_nce: bool = False                  # CUT: 0.5 * (NCE + NCE_idt); ODCR Eq. 15: no halving
    flip_equivariance: bool = flag(False, help="FastCUT's flip equivariance.")
    nce_layers: tuple[int, ...] = flag(NCE_LAYERS_DEFAULT, help="Generator layer indices, e.g. 0,4,8,12,16.")
    num_patches: int = flag(256, help="Sampled locations per layer (S).")
    num_clear_patches: int = flag(256, help="Clear negatives per query (ODCR).")  # N_{-+}
    nce_t: float = flag(0.07, help="Temperature tau.")
    negatives_from_batch: bool = False       # SinCUT-style negatives over the whole batch
    head: str = flag("mlp", help="mlp | linear (orthogonal head shape).")  # linear only when orthogonal
    head_dim: int = 256
    orthogonal_head: bool = flag(True, help="Projection head on the Stiefel manifold (ODCR) or CUT's free MLP.")
    weighted_nce: bool = True                # WPNCE with channel classifiers (ODCR)
    wpnce_hazy_pair: str = flag("swapped", help="swapped (default) | literal.")  # ours | as printed
    idt: str = flag("nce", help="nce (default) | l1.")
    ce_trains_head: bool = flag(True, help="Let the classifiers' loss also move the orthogonal head.")
    # normalisation of |theta (.) x| (WPNCE), then a softmax at this temperature
    weight_scale: str = flag("std", help="WPNCE channel weights: std (default) | max | printed (the paper's, flat).")
    weight_temperature: float = flag(1.0, help="Softmax temperature of the channel weights.")
    # priors of the scattering output (docs/scattering.md); 0 switches a term off
    lambda_dcp: float = flag(0.0, help="Warm start: weight of |t - t_dcp| (scattering).")
    dcp_warm_iters: int = flag(0, help="--lambda-dcp decays linearly to 0 over this many iterations (0: constant).")
    lambda_dark: float = flag(0.0, help="Weight of the dark channel energy of J.")
    lambda_tv: float = flag(0.0, help="Weight of the edge-aware smoothness of t (scattering).")
    lambda_synth: float = flag(0.0, help="Semi-supervised: weight of |t - t_true| on synthetic haze of the clear "
                                         "crops (scattering).")
    # the synthetic haze's density: t at the far end is exp(-beta); 0 includes haze-free crops
    synth_beta: tuple[float, ...] = flag((0.5, 3.0), help="Range LO,HI (or LO:HI, as odcr synth --beta) of "
                                         "the synthetic haze's scattering coefficient beta (t at the far end: "
                                         "exp(-beta)), drawn uniformly.")
    lambda_density: float = flag(0.0, help="Density consistency: weight of |t' - t**k|, t' the transmission of "
                                           "the output re-hazed with t**k (scattering).")
    # k > 1 thickens the model's own haze, k < 1 thins it; drawn log-uniformly so that each is as likely
    density_k: tuple[float, ...] = flag((0.5, 2.0), help="Range LO,HI of the exponent k of the density "
                                        "consistency term, drawn log-uniformly.")

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in _tuple_fields(MethodConfig):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, values: dict) -> "MethodConfig":
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in names}
        for name in _tuple_fields(cls):  # JSON gives lists
            if name in kept:
                kept[name] = tuple(kept[name])
        return cls(**kept)

    @property
    def transmission_terms(self) -> bool:
        """Whether a term of the scattering output's transmission is on (they need --output scattering)."""
        return bool(self.lambda_dcp or self.lambda_tv or self.lambda_synth or self.lambda_density)


TRANSMISSION_TERMS_NEED_SCATTERING = ("the transmission terms (--lambda-dcp, --lambda-tv, --lambda-synth, "
                                      "--lambda-density) need --output scattering")


def check_synth_beta(lo_hi: tuple[float, ...]) -> None:
    """A synthetic haze's --synth-beta range (odcr train's term, odcr distill --truth): LO,HI with
    0 <= LO <= HI, or a ValueError saying so."""
    if len(lo_hi) != 2 or not all(math.isfinite(b) for b in lo_hi) or not 0 <= lo_hi[0] <= lo_hi[1]:
        raise ValueError(f"--synth-beta: expected LO,HI with 0 <= LO <= HI, got {','.join(map(str, lo_hi))}")


def method_config(name: str, **overrides: Any) -> MethodConfig:
    """Preset of ``name`` with ``overrides`` (None values are ignored)."""
    presets = {
        "odcr": MethodConfig(name="odcr"),
        "cut": MethodConfig(name="cut", orthogonal_head=False, weighted_nce=False, halve_nce=True,
                            lambda_ce=0.0),
        "fastcut": MethodConfig(name="fastcut", orthogonal_head=False, weighted_nce=False,
                                lambda_nce=10.0, nce_idt=False, flip_equivariance=True, lambda_ce=0.0,
                                lambda_idt=0.0),
    }
    if name not in presets:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    config = replace(presets[name], **{k: v for k, v in overrides.items() if v is not None})
    if config.head == "linear" and not config.orthogonal_head:
        raise ValueError("--head linear needs the orthogonal head")
    if config.wpnce_hazy_pair not in ("swapped", "literal"):
        raise ValueError(f"unknown --wpnce-hazy-pair {config.wpnce_hazy_pair!r}")
    if config.idt not in ("nce", "l1"):
        raise ValueError(f"unknown --idt {config.idt!r}")
    if config.weight_scale not in WEIGHT_SCALES:
        raise ValueError(f"unknown --weight-scale {config.weight_scale!r}; choose one of {', '.join(WEIGHT_SCALES)}")
    check_synth_beta(config.synth_beta)
    lo_hi = config.density_k
    if len(lo_hi) != 2 or not all(math.isfinite(k) for k in lo_hi) or not 0 < lo_hi[0] <= lo_hi[1]:
        raise ValueError(f"--density-k: expected LO,HI with 0 < LO <= HI, got {','.join(map(str, lo_hi))}")
    if config.weight_temperature <= 0:
        raise ValueError("--weight-temperature must be positive")
    return config


# The flags of a settings dataclass, read back: shared by the command line (odcr_cli.cli.field_options
# builds the options) and the recipes (odcr_cli.tasks.train.recipe reads settings files).


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of the dataclass ``cls`` that are flags (those with a help text)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def parameter_name(f: dataclasses.Field) -> str:
    """The command's parameter of a flag field: the flag's own name (``--method``: method) when it
    has one, else the field's."""
    decls = f.metadata.get("decls")
    return decls.split("/")[0].removeprefix("--").replace("-", "_") if decls else f.name


def field_values(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """{field name: value} for the flags of ``cls`` in ``given`` ({flag's parameter name: value}: a
    command's parameters, a settings file's), in the field's types; a flag missing or left at None
    is left out (the field's default, or a preset's, applies).
    Raises ValueError for a list flag that does not parse."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in flag_fields(cls):
        value = given.get(parameter_name(f))
        kind, _ = unwrap_optional(hints[f.name])
        path = bool(f.metadata.get("path"))
        if isinstance(value, str) and typing.get_origin(kind) is tuple and not path:
            if not value:
                continue
            item = typing.get_args(kind)[0]
            if item is float:  # a range may also be written LOW:HIGH, as odcr synth's --beta takes it
                value = value.replace(":", ",")
            value = tuple(item(v) for v in value.split(","))
        elif isinstance(value, PurePath):
            value = str(value)
        elif isinstance(value, (list, tuple)):  # folders, or numbers given as numbers (a file, the API)
            item = str if path or typing.get_origin(kind) is not tuple else typing.get_args(kind)[0]
            value = tuple(item(v) for v in value)
        if value is not None:
            out[f.name] = value
    return out


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return hint, False
