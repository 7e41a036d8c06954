"""Recipes as files, and the one way a run's settings are put together.

A recipe (``recipes/*.toml`` beside this module) is a whole training recipe: the model's shape,
its losses beyond the ``--method`` preset's, and the schedule. ``scattering`` is the bundled
default's, ``paper`` the ODCR paper's generator; ``fine-tune`` is the schedule ``--init`` lays
over a recipe, ``distill`` that of ``odcr distill``, and ``adapt`` what ``odcr distill --init``
lays over it. The command line and the Python API read the
same files and build the settings with the same function, lowest layer first:

    the dataclass fields  <  the recipe  <  fine-tune (with --init)  <  a --config file  <  typed

    from odcr_cli.tasks.train.recipe import configs
    train_cfg, method, generator = configs(hazy="mine/hazy", clear="mine/clear", out="runs/mine", iters=600)

Settings files (a recipe, ``--config``: a TOML of flag names, or a run's ``config.json``) are read
here too: an unknown key is an error that names it, and relative paths are read from the file's
folder. Torch-free: ``odcr train --help`` shows the default recipe's values.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

from odcr_cli.core.configs import GeneratorConfig, MethodConfig, field_values, flag_fields, method_config, parameter_name
from odcr_cli.errors import TrainingError
from odcr_cli.tasks.train.settings import TrainConfig

RECIPE_DIR = Path(__file__).resolve().with_name("recipes")
# the whole recipes (--recipe), the default first; the overlays are FINE_TUNE, DISTILL and ADAPT
# (what odcr distill --init lays over DISTILL)
RECIPES = ("scattering", "paper")
FINE_TUNE = "fine-tune"
DISTILL = "distill"
ADAPT = "adapt"

# What a recipe leaves to the command: the run's data and files, the machine, how it reports, where
# this invocation stops; t_min is the method's floor (haze.constants) and stiefel_lr follows --lr.
# Every other flag of the generator and the run is set by every whole recipe (a test holds them to it).
NOT_A_RECIPE = frozenset({"hazy", "clear", "out", "exclude_clear", "val_hazy", "val_gt", "val_every", "training_data",
                          "device", "amp", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every",
                          "until", "max_minutes", "stiefel_lr", "t_min"})
# Of the method's flags a recipe sets its name and the scattering output's terms; the others (the
# contrastive and adversarial losses) are the --method preset's (docs/method.md, section 4).
RECIPE_METHOD_FLAGS = frozenset({"method", "lambda_dcp", "dcp_warm_iters", "lambda_dark", "lambda_tv", "lambda_synth",
                                 "synth_beta", "lambda_density", "density_k"})

# Keys of a run's config.json that are records, not settings (an old run's too).
_RECORD_KEYS = frozenset({"odcr_version", "device", "world_size", "torch", "init_weights"})


def recipe_keys() -> frozenset[str]:
    """The flags (parameter names) every whole recipe sets."""
    run = {parameter_name(f) for cls in (TrainConfig, GeneratorConfig) for f in flag_fields(cls)}
    return frozenset(run - NOT_A_RECIPE) | RECIPE_METHOD_FLAGS


def recipe_file(recipe: str | os.PathLike) -> Path:
    """A bundled recipe's file (by name) or the user's own (a path); a one-line TrainingError otherwise."""
    if str(recipe) in (*RECIPES, FINE_TUNE, DISTILL, ADAPT):
        return RECIPE_DIR / f"{recipe}.toml"
    path = Path(recipe).expanduser()
    if not path.is_file():
        raise TrainingError(f"--recipe {recipe}: use {' or '.join(RECIPES)}, or a recipe file (a TOML of flag names)")
    return path


def load(recipe: str | os.PathLike, names: set[str] | None = None) -> dict[str, object]:
    """{flag's parameter name: value} of a recipe, as a settings file is read (:func:`read_settings`;
    ``names``: a command's parameters, for a recipe that sets more than odcr train's)."""
    path = recipe_file(recipe)
    try:
        return read_settings(path, names)
    except ValueError as exc:
        raise TrainingError(f"--recipe {recipe}: {exc}") from None


def _known_keys() -> frozenset[str]:
    """Every name a settings file may hold: the fields of the three settings dataclasses (flags or
    not: a run's config.json writes them all), their flags' names, the records of a run and its sections."""
    classes = (TrainConfig, GeneratorConfig, MethodConfig)
    names = {f.name for cls in classes for f in dataclasses.fields(cls)}
    names |= {parameter_name(f) for cls in classes for f in flag_fields(cls)}
    return frozenset(names | _RECORD_KEYS | {"train", "generator"})


def _path_fields() -> dict[str, bool]:
    """{parameter name: must exist} of the options that are files or folders (--out need not)."""
    return {f.name: f.name != "out" for f in dataclasses.fields(TrainConfig) if f.metadata.get("path")}


def _resolve_config_path(text: str, base: Path, key: str, must_exist: bool) -> str:
    """A path of a settings file: relative to the file's folder (a run's config.json written
    before 2026-12-07 held paths relative to where the run started: those are used while they
    exist), absolute in the result; a missing input says it came from the file."""
    p = Path(text).expanduser()
    if p.is_absolute():
        found = p
    elif (base / p).exists() or not Path(p).exists():
        found = base / p
    else:
        found = Path(p)
    if must_exist and not found.exists():
        raise ValueError(f"{key.replace('_', '-')} {text}: no such file or folder"
                         + ("" if p.is_absolute() else f" (relative paths are read from {base})"))
    return os.path.abspath(found)


def _load_toml(text: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the backport, a dependency there
        import tomli as tomllib
    return tomllib.loads(text)


def read_settings(path: Path, names: set[str] | None = None) -> dict[str, object]:
    """A run's ``config.json`` (sections train / method / generator) or a TOML file (flag names,
    with - or _, at the top or in any table) -> {flag's parameter name: value}, kept to ``names``
    when given (a command's parameters). A key that is no setting is a ValueError naming it; paths
    are read relative to the file; a list of numbers is written with commas, as typed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it ({type(exc).__name__})") from None
    try:
        if path.suffix.lower() == ".json":
            import json

            data = json.loads(text)
        else:
            data = _load_toml(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ValueError(f"not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("expected a table of settings")
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):  # config.json's train/method/generator, or TOML tables
            flat.update(value)
        else:
            flat[key] = value
    known, paths, base = _known_keys() | (names or set()), _path_fields(), path.resolve().parent
    out: dict[str, object] = {}
    for key, value in flat.items():
        name = {"name": "method"}.get(key, key).replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0].replace('_', '-')}?)" if close else ""
            raise ValueError(f"unknown setting {key!r}{hint}")
        if name in paths and value not in (None, ""):
            many = isinstance(value, (list, tuple))
            resolved = [_resolve_config_path(str(v), base, name, paths[name]) for v in (value if many else [value])]
            value = resolved if many else resolved[0]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            value = ",".join(str(v) for v in value)  # a list of numbers (--nce-layers, --synth-beta) as typed
        if (names is None or name in names) and name not in ("config", "resume", "run") and value is not None:
            out[name] = value
    return out


def assemble(given: dict[str, Any]) -> tuple[TrainConfig, MethodConfig, GeneratorConfig]:
    """The run's settings from {flag's parameter name: value} (typed or as written on a command
    line; None: not given). A bad value is a ValueError or TrainingError in one line."""
    from odcr_cli.engine.options import Device

    method = method_config(**{"name": "odcr", **field_values(MethodConfig, given)})
    shape = field_values(GeneratorConfig, given)
    if shape.get("output", GeneratorConfig.output) != "scattering":
        shape["t_prior"] = "none"
    generator = GeneratorConfig(**shape)
    run = field_values(TrainConfig, given)
    if (run.get("val_hazy") is None) != (run.get("val_gt") is None):
        raise TrainingError("--val-hazy and --val-gt go together")
    for name in _path_fields():  # stored absolute: a run's config.json works from any folder
        if isinstance(run.get(name), str):
            run[name] = os.path.abspath(run[name])
        elif isinstance(run.get(name), tuple):
            run[name] = tuple(os.path.abspath(v) for v in run[name])
    init = given.get("init")
    if init is not None:
        run["init"] = os.path.abspath(init) if Path(init).exists() else str(init)
    run["device"] = str(Device.parse(run.get("device", "auto")))
    return TrainConfig(**run), method, generator


def layers(recipe_name: str | os.PathLike = "scattering", init: str | os.PathLike | None = None,
           config: str | os.PathLike | None = None, names: set[str] | None = None) -> dict[str, object]:
    """The defaults below the typed flags, merged lowest first: the recipe, then the fine-tune's
    schedule when ``init`` is given, then a ``config`` file."""
    merged = dict(load(recipe_name))
    if init is not None:
        merged.update(load(FINE_TUNE))
    if config is not None:
        try:
            merged.update(read_settings(Path(config), names))
        except ValueError as exc:
            raise TrainingError(f"--config {config}: {exc}") from None
    return merged


def configs(recipe: str | os.PathLike = "scattering", *, init: str | os.PathLike | None = None,
            config: str | os.PathLike | None = None, **settings: Any) -> tuple[TrainConfig, MethodConfig, GeneratorConfig]:
    """The settings ``odcr train`` would run with: ``recipe`` (a name or a file), ``init`` (a model
    to fine-tune: its schedule on top), a ``config`` file, then ``settings`` by flag name
    (``hazy``, ``out``, ``iters``, ``method``, ``synth_beta`` ...), as typed flags override."""
    known = {parameter_name(f) for cls in (TrainConfig, GeneratorConfig, MethodConfig) for f in flag_fields(cls)}
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise TypeError(f"configs() got an unknown setting {key!r}" + (f" (did you mean {close[0]}?)" if close else ""))
    given = {**layers(recipe, init, config), **{k: v for k, v in settings.items() if v is not None}}
    if init is not None:
        given["init"] = str(init)
    return assemble(given)
