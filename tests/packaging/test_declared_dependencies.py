"""Every third-party module the package imports comes from a distribution that ``pyproject.toml`` declares.

A module that arrives only as another package's dependency works in the developers' environment and breaks in a
user's (``sklearn`` came with ``mlflow`` while the end-of-training calibration imported it). Imports are read with
:mod:`ast` from every module under ``pipeline/`` (lazy ones too; ``if TYPE_CHECKING:`` blocks excluded) and mapped to
their distributions with :func:`importlib.metadata.packages_distributions`.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipeline"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    """Distribution names in ``[project] dependencies`` and every optional group except ``dev``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for group, items in project.get("optional-dependencies", {}).items():
        if group != "dev":
            requirements += items
    return {_normal(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imported_top_level_modules() -> dict[str, str]:
    """``module -> first file:line`` of every absolute import under ``pipeline/`` outside the standard library."""
    found: dict[str, str] = {}
    for path in sorted(PIPELINE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "pipeline" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_every_imported_module_is_declared():
    declared = declared_distributions()
    providers = packages_distributions()
    missing = []
    for module, where in sorted(imported_top_level_modules().items()):
        distributions = {_normal(d) for d in providers.get(module, [])}
        if not distributions & declared:
            missing.append(f"{module} ({where}; from {sorted(distributions) or 'no installed distribution'})")
    assert not missing, "declare in pyproject.toml: " + ", ".join(missing)


def test_the_checker_sees_lazy_imports_and_skips_type_hints(tmp_path):
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import foo\n\ndef f():\n    import bar\n")
    assert _type_checking_lines(tree) == {3}
    assert "sklearn" in imported_top_level_modules()  # imported lazily, inside a function
    assert "scikit-learn" in declared_distributions() and "pytest" not in declared_distributions()
