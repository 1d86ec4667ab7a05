"""The package's layering, read from the source with ``ast`` (nothing is imported).

- ``synapseg.io`` depends on nothing above it: no import (module- or function-level) of
  post-processing, inference, models, training, the pipeline or the CLI.
- No import cycle among the package's modules at module level, and none inside ``io`` even
  counting function-level imports.
- No module over 400 lines, except the listed ones (printed, each with its issue).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "synapseg"
MAX_LINES = 400

FORBIDDEN_FOR_IO = ("post", "infer", "model", "train", "pipeline", "commands", "cli")
"""Subpackages/modules of ``synapseg`` that ``synapseg.io`` must not import."""

OVER_400_ALLOWED: dict[str, str] = {}
"""Modules allowed over :data:`MAX_LINES` lines, with the issue that will shrink them."""

KNOWN_IO_CYCLES: dict = {}
"""Import cycles inside io (counting function-level imports) still to break, and where."""

CLI_HINT = (
    "\n(command modules import app, err_console, handle_errors and show_progress from "
    "synapseg.commands.base, never from synapseg.cli, which imports every command)"
)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    module_level: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[ast.AST, bool]]:
    """Every import node with whether it runs at import time (module level)."""
    found: list[tuple[ast.AST, bool]] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, module_level))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)  # never runs: not an import-time dependency
            else:
                visit(child, module_level)

    visit(tree, True)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` refers to (its longest existing prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _edges() -> list[Edge]:
    modules = _modules()
    edges: list[Edge] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, module_level in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                assert isinstance(node, ast.ImportFrom)
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import sub`` imports the submodule ``pkg.sub`` when it exists
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for target in targets:
                if not target.startswith(PACKAGE):
                    continue
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    edges.append(Edge(name, resolved, node.lineno, module_level))
    return edges


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = dfs(start)
            if found:
                return found
    return None


def _graph(edges: list[Edge], *, module_level_only: bool, within: str = PACKAGE):
    graph: dict[str, set[str]] = {}
    for e in edges:
        if module_level_only and not e.module_level:
            continue
        if e.source.startswith(within) and e.target.startswith(within):
            graph.setdefault(e.source, set()).add(e.target)
    return graph


def _describe(cycle: list[str], edges: list[Edge]) -> str:
    where = []
    for a, b in zip(cycle, cycle[1:]):
        lines = sorted({e.line for e in edges if e.source == a and e.target == b})
        where.append(f"{a} -> {b} (line {', '.join(map(str, lines))})")
    return "; ".join(where)


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return _edges()


def test_io_imports_nothing_above_it(edges):
    bad = [
        f"{e.source} line {e.line} imports {e.target}"
        for e in edges
        if e.source.split(".")[:2] == [PACKAGE, "io"]
        and e.target.split(".")[1:2] in [[name] for name in FORBIDDEN_FOR_IO]
    ]
    assert not bad, "synapseg.io must not depend on the layers above it:\n" + "\n".join(bad)


def test_no_import_cycle_at_module_level(edges):
    cycle = _find_cycle(_graph(edges, module_level_only=True))
    hint = CLI_HINT if cycle and f"{PACKAGE}.cli" in cycle else ""
    assert cycle is None, f"module-level import cycle: {_describe(cycle, edges)}{hint}"


def test_no_import_cycle_inside_io(edges):
    print("known io cycles:", {" <-> ".join(sorted(k)): v for k, v in KNOWN_IO_CYCLES.items()})
    io_edges = [e for e in edges if frozenset({e.source, e.target}) not in KNOWN_IO_CYCLES]
    cycle = _find_cycle(_graph(io_edges, module_level_only=False, within=f"{PACKAGE}.io."))
    assert cycle is None, f"import cycle inside synapseg.io: {_describe(cycle, edges)}"


def test_modules_under_400_lines():
    counts = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules().items()
    }
    print(f"modules allowed over {MAX_LINES} lines:")
    for name, why in sorted(OVER_400_ALLOWED.items()):
        n = counts.get(name)
        state = "gone" if n is None else f"{n} lines"
        stale = "  (now within the limit: remove it from the list)" if n and n <= MAX_LINES else ""
        print(f"  {name}: {state}, {why}{stale}")
    too_long = {
        name: n for name, n in counts.items() if n > MAX_LINES and name not in OVER_400_ALLOWED
    }
    assert not too_long, (
        f"modules over {MAX_LINES} lines (one module, one job: split them): {too_long}"
    )


# -- the checker itself -------------------------------------------------------------------


def test_cycle_finder_reports_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_are_seen(tmp_path):
    tree = ast.parse(
        "import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n"
        "class C:\n    import y\ndef f():\n    import z\n"
    )
    levels = {ast.unparse(node).split()[-1]: module_level for node, module_level in _imports(tree)}
    assert levels == {"os": True, "TYPE_CHECKING": True, "x": False, "y": True, "z": False}
