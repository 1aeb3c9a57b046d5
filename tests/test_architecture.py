"""The package's shape: the import graph has no cycle, no layer imports a higher one, no
function imports a project module, and each family lives in its own module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pinnsiren.families import FAMILIES

PACKAGE = Path(__file__).resolve().parents[1] / "pinnsiren"
#: import layers, lowest first; a module may import its own package and lower layers only
LAYERS = ("errors", "schema", "output", "engine", "families", "problem", "run")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, imported: str | None = None) -> str | None:
    """The project module an import refers to (``from pkg import mod`` names a module)."""
    if imported and f"{name}.{imported}" in MODULES:
        return f"{name}.{imported}"
    return name if name in MODULES else None


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path: Path) -> tuple[set[str], list[str]]:
    """(project modules imported at module level, project imports inside functions)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: list[str] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found = {_resolve(a.name) for a in child.names}
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found = {_resolve(child.module, a.name) for a in child.names}
            else:
                visit(child, inner)
                continue
            found.discard(None)
            if inner:
                nested.extend(f"{path.name}:{child.lineno} {m}" for m in sorted(found))
            else:
                top.update(found)

    visit(tree, False)
    return top, nested


GRAPH = {name: imports_of(path)[0] for name, path in MODULES.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # the package itself (its version)
    return LAYERS.index(parts[1])


def test_every_module_sits_in_a_layer():
    for module in MODULES:
        assert module == "pinnsiren" or module.split(".")[1] in LAYERS + ("__main__",), module


def test_no_function_imports_a_project_module():
    nested = [n for path in MODULES.values() for n in imports_of(path)[1]]
    assert nested == []


def test_no_import_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            dfs(module)


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        if a != "pinnsiren.__main__"
        for b in targets
        if layer(b) > layer(a)
    ]
    assert upward == []


def test_reference_solvers_know_nothing_of_torch_yaml_or_pinnsiren():
    root = PACKAGE.parent / "reference_solvers"
    for path in root.glob("*.py"):
        text = path.read_text()
        for word in ("import torch", "import yaml", "pinnsiren"):
            assert word not in text, (path.name, word)


def test_each_family_is_one_module_or_package_and_registered():
    """Every registered family's class lives in a module of its own under families/."""
    for kind, family in FAMILIES.items():
        module = type(family).__module__
        assert module.startswith("pinnsiren.families."), (kind, module)
        assert module.split(".")[2] not in ("base", "registry", "walls", "metrics"), kind
    assert {"poisson", "helmholtz", "wave", "fit", "heat"} <= set(FAMILIES)


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Import each package entry point first in its own interpreter (what a user does)."""
    entries = ["pinnsiren.run.cli", "pinnsiren.families.poisson", "pinnsiren.engine.lstsq"]
    code = "import importlib, sys; importlib.import_module(sys.argv[1])"
    for entry in entries:
        done = subprocess.run([sys.executable, "-c", code, entry], capture_output=True, text=True)
        assert done.returncode == 0, (entry, done.stderr[-500:])
