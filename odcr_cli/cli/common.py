"""What every command shares: help without type labels, the one error boundary (an
:class:`~odcr_cli.errors.OdcrError` becomes ``error: <message>`` and its exit code), and
Python warnings as one line."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from odcr_cli.errors import OdcrError, install_hint


def _no_type_label(ctx: object = None) -> None:
    return None


class _NoTypeLabels:
    """Help without Typer's ``<bool>``/``<str>``/``<int>`` type labels: every option's help text
    says what it takes, and the labels only crowd the table."""

    def format_help(self, ctx, formatter) -> None:  # noqa: ANN001 - Typer's signature
        for param in self.get_params(ctx):
            param.display_type_rich = _no_type_label  # what the rich help table asks for
        super().format_help(ctx, formatter)


# The base install is what `odcr dehaze` with the bundled model needs (ONNX Runtime on the CPU);
# the rest comes with extras (pyproject.toml). A module of an extra that is missing is named here
# once, with the extra that brings it.
EXTRA_OF_MODULE = {"torch": "train", "safetensors": "train", "onnx": "train", "onnxscript": "train",
                   "skimage": "evaluate", "ray": "ray"}


class _OneLineUsage:
    """Usage errors (an unknown option, a missing value) in the style of every other error: one
    line, ``error: ...``, exit 2, instead of Typer's boxed panel."""

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001, ANN201 - click's signature
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except Exception as exc:
            if not _is_usage_error(exc):
                raise
            command = " ".join(filter(None, [parent.command_path if parent else None, info_name]))
            fail(f"{exc.format_message()} (see {command} --help)", 2)


def _is_usage_error(exc: BaseException) -> bool:
    """Click's UsageError, whether Typer uses click or its own copy of it (Typer >= 0.23); not the
    'no arguments: print the help' signal, which must go through."""
    names = [c.__name__ for c in type(exc).__mro__]
    return "UsageError" in names and "NoArgsIsHelpError" not in names


class Command(_OneLineUsage, _NoTypeLabels, TyperCommand):
    """Every odcr command: a problem the user can act on is one red line and the error's exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OdcrError as exc:
            fail(str(exc), exc.exit_code)
        except ModuleNotFoundError as exc:
            root = (exc.name or "").split(".")[0]
            if root not in EXTRA_OF_MODULE:
                raise
            fail(f"odcr {ctx.info_name} needs {root}, which the base install leaves out: "
                 f"{install_hint(EXTRA_OF_MODULE[root])}")


class Group(_OneLineUsage, _NoTypeLabels, TyperGroup):
    def resolve_command(self, ctx, args):  # noqa: ANN001, ANN201 - click's signature
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:
            if not _is_usage_error(exc):
                raise
            fail(f"{exc.format_message()} (see {ctx.command_path} --help)", 2)


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    # A library's Python warning reaches the user as one line from the tool, without source lines.
    print(f"odcr: warning: {str(message).splitlines()[0] if str(message) else category.__name__}", file=sys.stderr)
