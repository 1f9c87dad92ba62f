"""Arrows point down: every pipeline module imports, and imports between packages go in the allowed direction only.

Imports are read with :mod:`ast` from every module under ``pipeline/``. An import inside a function ("lazy") is
still an edge for the circle check (a lazy circle is a circle that waits for the first call); imports under
``if TYPE_CHECKING:`` are not edges (type hints only).
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"

#: Edges that break the rules below and are being removed (with the issue that removes them). Keep it empty: the
#: issue 12 edges (the inference <-> tracking circle, inference -> data / engines) are gone.
KNOWN_TO_FIX: set[tuple[str, str]] = set()

#: ``package -> packages it must never import`` (module level or lazily).
NEVER: dict[str, set[str]] = {
    "io": {"dicom", "inference", "engines", "tracking", "web", "transforms", "data", "cli", "node", "model",
           "networks", "metrics", "postprocessing", "reporting"},
    "keys": {"*"},
    "dicom": {"inference", "engines", "tracking", "web", "cli", "node"},
    "transforms": {"inference", "engines", "tracking", "web", "cli", "node"},
    "networks": {"inference", "engines", "tracking", "web", "cli", "node", "data", "dicom", "io"},
    "metrics": {"inference", "engines", "tracking", "web", "cli", "node"},
    "model": {"inference", "engines", "tracking", "web", "cli", "node", "data", "dicom"},
    "inference": {"data", "engines", "cli", "web", "node"},
    "tracking": {"cli", "web"},
    "web": {"cli"},
}

#: ``package -> packages it must not import at module level`` (a lazy import inside a function is allowed: the
#: Predictor resolves ``models:/...`` URIs through tracking only when given one).
NOT_AT_MODULE_LEVEL: dict[str, set[str]] = {
    "inference": {"data", "engines", "tracking"},
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing package
    target: str  # imported package
    where: str  # file:line
    lazy: bool  # inside a function


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pipeline" or len(parts) < 2:
        return None
    return parts[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, package: str = "") -> list[tuple[str, int, bool]]:
    """``(module, line, lazy)`` of every import, skipping ``if TYPE_CHECKING:`` blocks.

    Relative imports are resolved against ``package`` (the dotted package the module lives in).
    """
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, lazy)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(parent + ([child.module] if child.module else []))
                if base:
                    found.append((base, child.lineno, lazy))
                    found.extend((f"{base}.{a.name}", child.lineno, lazy) for a in child.names)
            visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def _modules() -> list[tuple[str, Path]]:
    """``(dotted name, file)`` of every module under ``pipeline/``."""
    out = []
    for path in sorted(PIPELINE.rglob("*.py")):
        rel = path.relative_to(PIPELINE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _edges() -> list[Edge]:
    edges = []
    for module, path in _modules():
        source = _package(module) or "pipeline"
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for name, line, lazy in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path)), package):
            target = _package(name)
            if target is None or target == source:
                continue
            # `from pipeline import x` names the module pipeline.x: _package already gave x
            edges.append(Edge(source, target, f"{path.relative_to(PIPELINE.parent)}:{line}", lazy))
    return edges


EDGES = _edges()


@pytest.mark.parametrize("module", [m for m, _ in _modules() if not m.endswith("__main__")])
def test_every_module_imports(module):
    importlib.import_module(module)


def test_forbidden_directions():
    bad = []
    for e in EDGES:
        if (e.source, e.target) in KNOWN_TO_FIX:
            continue
        never = NEVER.get(e.source, set())
        if "*" in never or e.target in never:
            bad.append(f"{e.source} -> {e.target} ({e.where})")
        elif not e.lazy and e.target in NOT_AT_MODULE_LEVEL.get(e.source, set()):
            bad.append(f"{e.source} -> {e.target} at module level ({e.where}; import it inside the function)")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(set(bad)))


def test_no_circles_between_packages():
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for e in EDGES:
        if (e.source, e.target) in KNOWN_TO_FIX:
            continue
        graph.setdefault(e.source, set()).add(e.target)
        where.setdefault((e.source, e.target), e.where)

    def find_cycle() -> list[str] | None:
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        stack: list[str] = []

        def dfs(node: str) -> list[str] | None:
            state[node] = 1
            stack.append(node)
            for nxt in sorted(graph.get(node, ())):
                if state.get(nxt) == 1:
                    return stack[stack.index(nxt):] + [nxt]
                if nxt not in state and (cycle := dfs(nxt)):
                    return cycle
            stack.pop()
            state[node] = 2
            return None

        for node in sorted(graph):
            if node not in state and (cycle := dfs(node)):
                return cycle
        return None

    cycle = find_cycle()
    assert cycle is None, "import circle between packages: " + " -> ".join(cycle) + "\n" + "\n".join(
        f"  {a} -> {b}: {where[(a, b)]}" for a, b in zip(cycle, cycle[1:])
    )


def test_known_edges_are_still_there():
    """``KNOWN_TO_FIX`` only lists edges that exist: remove an entry as soon as its edge is gone."""
    present = {(e.source, e.target) for e in EDGES}
    gone = sorted(KNOWN_TO_FIX - present)
    assert not gone, f"these edges are gone; remove them from KNOWN_TO_FIX: {gone}"


def test_the_checker_sees_lazy_and_module_level_imports():
    """The parser itself: a function-level import is lazy, a TYPE_CHECKING import is no edge."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import pipeline.io\n"
        "if TYPE_CHECKING:\n    from pipeline.web import app\n"
        "def f():\n    from pipeline.dicom import reader\n"
        "from ..metrics import qc\n"
    )
    got = {(m, lazy) for m, _, lazy in _imports(ast.parse(source), "pipeline.web")}
    assert ("pipeline.metrics.qc", False) in got
    assert ("pipeline.io", False) in got
    assert ("pipeline.dicom", True) in got
    assert not any(m.startswith("pipeline.web") for m, _ in got)
