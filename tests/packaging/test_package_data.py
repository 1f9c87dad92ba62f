"""Package code never reaches outside the package: default rules, the sample and the git commit come from inside it,
an argument, an environment variable or the current folder."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from pipeline.dicom import DEFAULT_RULES, DEFAULT_RULES_FILE, SelectionRules, default_source_images
from pipeline.tracking import git_commit

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "pipeline"

#: Modules that may still locate files outside the package through ``__file__`` (keep it empty).
KNOWN_TO_FIX: set[str] = set()


def _reaches_outside(tree: ast.AST) -> list[int]:
    """Lines that climb from ``__file__`` above the package (``parents[N]``, ``parent.parent``) or into ``../shared``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "parent"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parent"
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "shared/data" in node.value:
            lines.append(node.lineno)
    return lines


def test_no_module_climbs_out_of_the_package():
    bad = []
    for path in sorted(PIPELINE.rglob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel in KNOWN_TO_FIX:
            continue
        bad += [f"{rel}:{line}" for line in _reaches_outside(ast.parse(path.read_text(encoding="utf-8")))]
    assert not bad, "package code reaching outside the package (use importlib.resources or an argument):\n" + "\n".join(
        bad
    )


def test_default_selection_rules_ship_in_the_package_and_equal_the_documented_copy():
    packaged = DEFAULT_RULES_FILE.read_bytes()
    assert Path(str(DEFAULT_RULES_FILE)).is_relative_to(PIPELINE / "dicom")
    assert packaged == (REPO / "configs" / "dicom_selection.yaml").read_bytes(), (
        "pipeline/dicom/default_selection.yaml and configs/dicom_selection.yaml differ: edit both (or copy one)"
    )
    assert SelectionRules.default() == SelectionRules.from_mapping(DEFAULT_RULES)
    assert SelectionRules.default() == SelectionRules.from_file(REPO / "configs" / "dicom_selection.yaml")


def test_sample_sources_come_from_the_package_unless_a_folder_is_given(tmp_path, monkeypatch):
    monkeypatch.delenv("XRAY_SHARED_DATA", raising=False)
    sources = default_source_images()
    assert len(sources) == 30
    assert all(p.is_relative_to(PIPELINE / "data" / "sample") for p in sources)
    hires = tmp_path / "jsrt_scr_hires" / "images"
    hires.mkdir(parents=True)
    (hires / "a.png").write_bytes((sources[0]).read_bytes())
    assert default_source_images(tmp_path) == [hires / "a.png"]
    monkeypatch.setenv("XRAY_SHARED_DATA", str(tmp_path))
    assert default_source_images() == [hires / "a.png"]
    assert default_source_images(tmp_path / "empty") == sources  # a folder without films: the embedded sample


def test_git_commit_comes_from_the_current_folder_or_an_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert git_commit() == ("unknown", False)  # not a checkout: no commit, whatever the package's location
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (repo / "f.txt").write_text("x")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "one")
    sha = git("rev-parse", "HEAD").strip()
    assert git_commit(repo) == (sha, False)
    monkeypatch.chdir(repo)
    (repo / "f.txt").write_text("changed")
    assert git_commit() == (sha, True)


@pytest.mark.parametrize("source", ["from pathlib import Path\nROOT = Path(__file__).resolve().parents[2]\n",
                                    "import os\nX = os.path.join('..', 'shared/data')\n",
                                    "from pathlib import Path\nR = Path(__file__).parent.parent\n"])
def test_the_checker_sees_climbing_paths(source):
    assert _reaches_outside(ast.parse(source))
