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
LAYERS = ("cli", "tasks", "engine", "files", "imaging", "core", "haze", "errors")
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


HAZE = "odcr_cli.haze"


def _closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += sorted(GRAPH[m])
    return seen


def test_the_method_is_one_folder_and_its_photo_path_stays_there() -> None:
    """The default method lives in ``haze/``: the pipeline a photo runs through reaches only
    modules of that folder (and ``errors``), never back up a layer, and never torch; only the
    ``*_torch`` modules of the folder import torch, so that the ONNX path stays torch-free."""
    assert HAZE + ".pipeline" in GRAPH["odcr_cli.engine.dehazer"]
    reached = _closure(HAZE + ".pipeline")
    assert {m for m in reached if not m.startswith(HAZE) and m != "odcr_cli.errors"} == set()
    torch_users = {m for m, p in MODULES.items() if m.startswith(HAZE + ".")
                   and "torch" in {i.split(".")[0] for i in _imports(p)}}
    assert torch_users == {m for m in MODULES if m.startswith(HAZE + ".") and m.endswith("_torch")}
    assert not torch_users & reached


# a setting of the method, by the names it goes by in a signature, a field or a flag: its value
# must come from odcr_cli/haze/constants.py, never be written again as a literal
_SAID_ONCE = {"patch": "PATCH", "airlight_patch": "PATCH", "omega": "OMEGA", "top": "TOP",
              "airlight_top": "TOP", "t_min": "T_MIN", "t0": "T_MIN", "margin": "MARGIN", "pad": "MARGIN",
              "side": "MODEL_SIDE", "max_side": "MODEL_SIDE"}


def _restated(tree: ast.AST, values: dict[str, float]) -> list[tuple[int, str]]:
    def literal(node: ast.AST | None) -> object:
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "flag" and node.args:
            node = node.args[0]  # a field made with flag(default, ...)
        return node.value if isinstance(node, ast.Constant) and type(node.value) in (int, float) else None

    def check(name: str | None, node: ast.AST | None, line: int) -> None:
        name = (name or "").lstrip("-").replace("-", "_")
        if name in _SAID_ONCE and literal(node) == values[_SAID_ONCE[name]]:
            found.append((line, f"{name} = {literal(node)!r}"))

    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            for arg, default in zip(a.args[len(a.args) - len(a.defaults):] + a.kwonlyargs,
                                    a.defaults + a.kw_defaults):
                check(arg.arg, default, node.lineno)
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                check(kw.arg, kw.value, node.lineno)
            options = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            default = next((kw.value for kw in node.keywords if kw.arg == "default"), None)
            for option in options:  # argparse: add_argument("--side", default=384)
                check(option, default, node.lineno)
            if getattr(node.func, "attr", None) == "get" and len(node.args) == 2:  # config.get("t_min", 0.1)
                check(options[0] if options else None, node.args[1], node.lineno)
            if getattr(node.func, "attr", None) == "log1p" and node.args and isinstance(node.args[0], ast.UnaryOp):
                found.append((node.lineno, "the logit log(u) - log1p(-u)"))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            check(node.target.id, node.value, node.lineno)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and literal(node.left) == 1 \
                and isinstance(node.right, ast.BinOp) and isinstance(node.right.op, ast.Mult) \
                and any(isinstance(f, ast.BinOp) and isinstance(f.op, ast.Sub) and literal(f.left) == 1
                        for f in (node.right.left, node.right.right)):
            found.append((node.lineno, "the strength rule 1 - s (1 - t)"))
        elif isinstance(node, ast.Attribute) and node.attr == "sigmoid":
            found.append((node.lineno, "the logit's sigmoid"))
    return found


def test_the_methods_constants_and_rules_are_said_once() -> None:
    """No setting of the method is restated as a literal (patch 15, t floor 0.1, side 384,
    margin 32...) and the strength rule and the logit are written only in ``haze/transmission*``,
    across the package, the scripts and the benchmarks."""
    from odcr_cli.haze import constants

    values = {k: v for k, v in vars(constants).items() if k.isupper()}
    root = PACKAGE.parent
    homes = {PACKAGE / "haze" / "constants.py", PACKAGE / "haze" / "transmission.py",
             PACKAGE / "haze" / "transmission_torch.py"}
    files = [p for p in [*PACKAGE.rglob("*.py"), *(root / "scripts").glob("*.py"), *(root / "benchmarks").glob("*.py")]
             if p not in homes]
    bad = [f"{p.relative_to(root)}:{line}: {what}" for p in files
           for line, what in _restated(ast.parse(p.read_text()), values)]
    assert not bad, "; ".join(bad)
    # the check sees what it is about
    assert _restated(ast.parse("def f(patch=15, t_min=0.1): return 1.0 - s * (1.0 - t)"), values)


@pytest.mark.slow
def test_every_script_and_benchmark_still_starts() -> None:
    """The scripts and benchmarks that back a figure in the README or the model card import what
    they use from the package: after a move inside odcr_cli they must still start (``--help``)."""
    import subprocess
    import sys

    root = PACKAGE.parent
    files = [f for folder in ("benchmarks", "scripts") for f in sorted((root / folder).glob("*.py"))
             if not f.name.startswith("_")]  # _paths.py is imported, not run
    assert files
    for f in files:
        done = subprocess.run([sys.executable, str(f), "--help"], capture_output=True, text=True, timeout=120, cwd=root)
        assert done.returncode == 0 and "usage" in done.stdout.lower(), f"{f.name}: {done.stderr.strip()[-300:]}"
