"""Typer options built from the fields of a settings dataclass: a field made with
:func:`odcr_cli.core.configs.flag` is a flag (``--`` and its name with - for _; a bool is
``--name/--no-name``), with the field's help text and default, so a setting is declared once, in
its dataclass, and a command never restates it. Typer reads a command's options from
``inspect.signature``, which honours the ``__signature__`` that :func:`with_options` sets."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import typer

DefaultOf = Callable[[dataclasses.Field], Any]


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of the dataclass ``cls`` that are flags (those with a help text)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def parameter_name(f: dataclasses.Field) -> str:
    """The command's parameter of a flag field: the flag's own name (``--method``: method) when it
    has one, else the field's."""
    decls = f.metadata.get("decls")
    return decls.split("/")[0].removeprefix("--").replace("-", "_") if decls else f.name


def field_default(f: dataclasses.Field) -> Any:
    """The flag's default: ``flag_default`` when the field has one, else the field's (required
    when the field has none; an empty list is the flag not given, a list of numbers is written
    with commas)."""
    if "flag_default" in f.metadata:
        return f.metadata["flag_default"]
    if f.default is dataclasses.MISSING:
        return ...
    if isinstance(f.default, tuple):
        return None if not f.default else list(f.default) if f.metadata.get("path") else ",".join(map(str, f.default))
    return f.default


def options(cls: type, panel: str, default_of: DefaultOf = field_default,
            without_default: Iterable[str] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per flag of ``cls``, under the help panel ``panel``. ``default_of``
    gives a field's default; the flags named in ``without_default`` show none (a recipe sets them)
    and say so in their help."""
    hints = typing.get_type_hints(cls)
    quiet = set(without_default)
    params = []
    for f in flag_fields(cls):
        name, default = parameter_name(f), default_of(f)
        kind, optional = _unwrap_optional(hints[f.name])
        if f.metadata.get("path"):
            kind = list[Path] if typing.get_origin(kind) is tuple else Path
        elif typing.get_origin(kind) is tuple:
            kind = str  # a comma-separated list, e.g. --nce-layers 0,4,8
        dash = f.name.replace("_", "-")
        decls = f.metadata.get("decls") or (f"--{dash}/--no-{dash}" if kind is bool else f"--{dash}")
        text = f.metadata["help"]
        if name in quiet:
            text = text.removesuffix(".") + r" \[default: from --recipe]."  # \[: not rich markup
        option = typer.Option(default, decls, help=text, show_default=name not in quiet, min=f.metadata.get("min"),
                              max=f.metadata.get("max"), rich_help_panel=panel)
        annotation = Optional[kind] if optional or default is None else kind
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


def with_options(command: Callable, *groups: list[inspect.Parameter]) -> Callable:
    """``command``'s own parameters (its ``**settings`` dropped) followed by ``groups``, as the
    signature Typer reads; a flag name given twice is an error here, not a silent override."""
    own = [p for p in inspect.signature(command).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params = own + [p for group in groups for p in group]
    names = [p.name for p in params]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{command.__name__}: options defined twice: {', '.join(twice)}")
    command.__signature__ = inspect.Signature(params)
    return command


def field_values(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """{field name: value} for the flags of ``cls`` in ``given`` (the command's parameters), in the
    field's types; a flag left at None is left out (the field's default, or a preset's, applies).
    Raises ValueError for a list flag that does not parse."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in flag_fields(cls):
        value = given[parameter_name(f)]
        kind, _ = _unwrap_optional(hints[f.name])
        if isinstance(value, str) and typing.get_origin(kind) is tuple:
            if not value:
                continue
            item = typing.get_args(kind)[0]
            if item is float:  # a range may also be written LOW:HIGH, as odcr synth's --beta takes it
                value = value.replace(":", ",")
            value = tuple(item(v) for v in value.split(","))
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, (list, tuple)):
            value = tuple(str(v) for v in value)
        if value is not None:
            out[f.name] = value
    return out


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return hint, False
