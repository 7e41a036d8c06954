"""The shape of the package, as the README's architecture section describes it: no import cycle
(module- or function-level), the layers only import downwards, and no module or function grows
past what one reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "odcr_cli"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
# a layer may import itself and the layers after it in this list, never one before it
LAYERS = ("cli", "tasks", "engine", "files", "imaging", "core", "errors")
# where the user interface libraries may be imported
UI_LIBRARIES = {"typer", "rich", "click"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """Every module this file imports, at module level or inside functions (annotation-only
    imports under ``if TYPE_CHECKING:`` excluded: they never run)."""
    found: set[str] = set()
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in MODULES)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_layers_only_import_downwards() -> None:
    bad = []
    for m, targets in GRAPH.items():
        here = _layer(m)
        if here not in LAYERS:
            continue
        for t in targets:
            there = _layer(t)
            if there in LAYERS and LAYERS.index(there) < LAYERS.index(here):
                bad.append(f"{m} imports {t}")
    assert not bad, "; ".join(sorted(bad))


def test_only_the_cli_imports_the_user_interface_libraries() -> None:
    bad = [f"{m} imports {lib}" for m, path in MODULES.items() if _layer(m) != "cli"
           for lib in {i.split(".")[0] for i in _imports(path)} & UI_LIBRARIES]
    assert not bad, "; ".join(sorted(bad))


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for m, path in MODULES.items():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES:
            too_long.append(f"{m}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str)
                start = body[1].lineno if has_doc and len(body) > 1 else body[0].lineno
                if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                    too_long.append(f"{m}.{node.name}: {node.end_lineno - start + 1} body lines")
    assert not too_long, "; ".join(too_long)


def test_the_checks_see_the_whole_package() -> None:
    # a guard for the guards: the graph must hold the modules and edges they are about
    assert {"odcr_cli.cli.app", "odcr_cli.engine.dehazer", "odcr_cli.core.networks"} <= set(GRAPH)
    assert "odcr_cli.engine.backends" in GRAPH["odcr_cli.engine.dehazer"]
    assert "odcr_cli.engine.torch_backend" in GRAPH["odcr_cli.engine.backends"]  # a function-level import


def test_the_readme_architecture_names_every_module() -> None:
    """The README's architecture section is the map of the package: every module is on it, under
    its folder (a subpackage's modules in the part of its layer's text that begins at ``name/``,
    up to the next subpackage), and every folder on it exists."""
    import re

    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme[readme.index("## Architecture"):]
    section = section[: section.index("```", section.index("```") + 3)]
    blocks = dict(re.findall(r"^odcr_cli/(\w+)/\s+(.*?)(?=^\S|\Z)", section, flags=re.M | re.S))
    assert set(blocks) == {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    missing = []
    for layer, text in blocks.items():
        subs = {p.name: m.span() for p in (PACKAGE / layer).iterdir() if (p / "__init__.py").is_file()
                for m in [re.search(rf"\b{p.name}/", text)] if m}
        missing += [f"{layer}/{p.name}/" for p in (PACKAGE / layer).iterdir()
                    if (p / "__init__.py").is_file() and p.name not in subs]
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            folder = path.parent.name if path.parent != PACKAGE / layer else None
            start, end = 0, len(text)
            if folder in subs:  # from after "folder/" to the next subpackage's name
                start = subs[folder][1]
                end = min([a for a, _ in subs.values() if a > start], default=len(text))
            if path.stem != "__init__" and not re.search(rf"\b{path.stem}\b", text[start:end]):
                missing.append(str(path.relative_to(PACKAGE)))
    assert not missing, f"not on the README's map: {', '.join(missing)}"


def test_every_subpackage_is_installed() -> None:
    """``pip install .`` ships the packages pyproject.toml lists: every folder of the package must be there."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(p / "__init__.py") for p in [PACKAGE, *PACKAGE.rglob("*")]
             if p.is_dir() and (p / "__init__.py").is_file()}
    assert found <= listed, f"missing from pyproject.toml: {sorted(found - listed)}"


def test_the_command_line_starts_without_numpy_or_torch() -> None:
    """``odcr --help`` and the start of every command stay fast: the heavy libraries load inside the
    command that needs them."""
    import subprocess
    import sys

    code = "import sys, odcr_cli.cli.app; print(sorted({'numpy', 'torch', 'cv2', 'onnxruntime'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]", out
