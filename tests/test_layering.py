"""The package's import graph: acyclic, the bottom layer imports nothing of the package, and
nothing inside the package imports the ``Model`` facade.

The graph is read from the source with ``ast`` (every ``import`` statement, including those
inside functions and ``TYPE_CHECKING`` blocks), so an import hidden in a function to dodge a
cycle still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG_DIR = Path(__file__).resolve().parents[1] / "bayesglmm"
PKG = PKG_DIR.name
# the user-facing entry points built on Model: only the package's __init__ (and the facade's own
# modules) may import them
FACADE_PREFIXES = (f"{PKG}.models", f"{PKG}.ttest")
BOTTOM = f"{PKG}.core"


def _modules() -> dict[str, tuple[Path, list[str]]]:
    """module name -> (file, package parts used to resolve relative imports)."""
    out = {}
    for path in sorted(PKG_DIR.rglob("*.py")):
        parts = [PKG, *path.relative_to(PKG_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
            package = parts
        else:
            package = parts[:-1]
        out[".".join(parts)] = (path, package)
    return out


def import_graph() -> dict[str, dict[str, list[int]]]:
    """importer -> {imported module of the package: line numbers}."""
    mods = _modules()
    graph: dict[str, dict[str, list[int]]] = {m: {} for m in mods}
    for name, (path, package) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [mod, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t in mods and t != name:
                    graph[name].setdefault(t, []).append(node.lineno)
    return graph


def _find_cycle(graph: dict[str, dict[str, list[int]]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in graph[v]:
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in graph:
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_graph_sees_function_level_imports():
    # the reader must see imports inside functions, or the acyclicity test proves nothing
    g = import_graph()
    assert f"{PKG}.post.predict" in g[f"{PKG}.results.base"]  # imported inside Fit.predict()
    assert f"{PKG}.core.naming" in g[f"{PKG}.results"]
    assert _find_cycle({"a": {"b": [1]}, "b": {"a": [2]}}) == ["a", "b", "a"]


def test_import_graph_is_acyclic():
    g = import_graph()
    cycle = _find_cycle(g)
    if cycle:
        steps = [f"{a} -> {b} (line {g[a][b][0]})" for a, b in zip(cycle, cycle[1:])]
        pytest.fail("import cycle: " + "; ".join(steps))


def test_nothing_inside_the_package_imports_the_model_facade():
    g = import_graph()
    def facade(m: str) -> bool:
        return any(m == f or m.startswith(f + ".") for f in FACADE_PREFIXES)

    offenders = [f"{a} imports {b} (line {lines[0]})" for a, deps in g.items()
                 for b, lines in deps.items() if facade(b) and a != PKG and not facade(a)]
    assert offenders == []


def test_bottom_layer_imports_nothing_of_the_package():
    g = import_graph()
    offenders = [f"{a} imports {b}" for a, deps in g.items() if a.startswith(BOTTOM)
                 for b in deps if not b.startswith(BOTTOM)]
    assert offenders == []


def test_no_module_imports_private_names_of_another():
    mods = _modules()
    offenders = []
    for name, (path, package) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == PKG or mod.startswith(PKG + "."):
                offenders += [f"{name} imports {mod}.{a.name} (line {node.lineno})"
                              for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []
