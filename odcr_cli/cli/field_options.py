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
from typing import Any, Callable, Optional

import typer

from odcr_cli.core.configs import flag_fields, parameter_name, unwrap_optional

DefaultOf = Callable[[dataclasses.Field], Any]


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


def options(cls: type, panel: str, default_of: DefaultOf = field_default) -> list[inspect.Parameter]:
    """One keyword parameter per flag of ``cls``, under the help panel ``panel``. ``default_of``
    gives a field's default."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in flag_fields(cls):
        name, default = parameter_name(f), default_of(f)
        kind, optional = unwrap_optional(hints[f.name])
        if f.metadata.get("path"):
            kind = list[Path] if typing.get_origin(kind) is tuple else Path
        elif typing.get_origin(kind) is tuple:
            kind = str  # a comma-separated list, e.g. --nce-layers 0,4,8
        dash = f.name.replace("_", "-")
        decls = f.metadata.get("decls") or (f"--{dash}/--no-{dash}" if kind is bool else f"--{dash}")
        option = typer.Option(default, decls, help=f.metadata["help"], min=f.metadata.get("min"),
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
