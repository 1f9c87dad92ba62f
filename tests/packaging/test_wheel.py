"""The package installs as a wheel and works from any folder: build, install into a fresh venv, run ``xray-seg``.

The wheel is built offline from a copy of what the build needs (``pyproject.toml``, ``README.md``, ``LICENSE``,
``pipeline/``), so the checkout gets no ``build/`` folder and nothing else of the checkout can sneak in. The fresh
virtual environment sees the already-installed dependencies through a ``.pth`` file that lists this interpreter's
``site-packages`` folder: ``.pth`` files *inside* a listed folder are not processed, so the project's editable install
(an import hook in a ``.pth`` file there) does not leak into it. Every command runs from a temporary folder outside
the checkout, with ``PYTHONPATH`` unset, on two real radiographs of the embedded sample, with a checkpoint trained
here.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xray_test_paths import REPO_ROOT, SAMPLE_DIR, train_lung_bundle

pytestmark = pytest.mark.slow

IMAGES = ("JPCLN008.png", "JPCNN005.png")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HOME=str(home), PYTHONNOUSERSITE="1")
    return env


def _site_packages() -> list[str]:
    """This interpreter's ``site-packages`` folders (where the dependencies are installed), from ``sys.path``."""
    found = [p for p in sys.path if Path(p).name == "site-packages" and Path(p).is_dir()]
    assert found, f"no site-packages folder on sys.path: {sys.path}"
    return found


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheel")


@pytest.fixture(scope="module")
def wheel(work) -> Path:
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "pipeline", src / "pipeline", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist),
          str(src)], cwd=work, env=_clean_env(work))
    (found,) = dist.glob("xray_seg_pipeline-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(work, wheel) -> Path:
    env_dir = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=work, env=_clean_env(work))
    python = env_dir / "bin" / "python"
    # install first, while the new environment sees nothing else (pip then never meets the editable install)
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
         cwd=work, env=_clean_env(work))
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work,
                   env=_clean_env(work)).stdout.strip()
    Path(purelib, "_dependencies.pth").write_text("\n".join(_site_packages()) + "\n")
    return env_dir


@pytest.fixture(scope="module")
def checkpoint(work) -> Path:
    """A tiny BasicUNet trained for one epoch at 32 px through the lung bundle (in this process, from the checkout)."""
    out = work / "training"
    train_lung_bundle(out)
    model = out / "models" / "model.pt"
    assert model.is_file()
    return model


def test_wheel_ships_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("pipeline/dicom/default_selection.yaml", "pipeline/web/templates/base.html",
                   "pipeline/web/static/app.js", "pipeline/data/sample/jsrt30/images/JPCLN008.png",
                   "pipeline/data/sample/jsrt30/masks/JPCLN008.png"):
        assert needed in names, f"{needed} is missing from the wheel (pyproject [tool.setuptools.package-data])"
    assert not any(n.startswith(("bundles/", "configs/", "tests/", "scripts/")) for n in names)


def test_installed_package_is_the_wheel_not_the_checkout(venv, tmp_path):
    python = venv / "bin" / "python"
    out = _run([str(python), "-c", "import pipeline, importlib.metadata as m; print(pipeline.__file__); "
                "print(m.distribution('xray-seg-pipeline').locate_file(''))"], cwd=tmp_path,
               env=_clean_env(tmp_path)).stdout.split()
    assert Path(out[0]).is_relative_to(venv), f"pipeline imported from {out[0]}, not from the fresh venv"
    assert Path(out[1]).is_relative_to(venv)


def test_xray_seg_help_and_predict_from_another_folder(venv, checkpoint, tmp_path):
    run_dir = tmp_path / "elsewhere"  # outside the checkout, nothing of the project around
    inputs = run_dir / "in"
    inputs.mkdir(parents=True)
    for name in IMAGES:
        shutil.copy2(SAMPLE_DIR / "images" / name, inputs / name)
    model = run_dir / "model.pt"
    shutil.copy2(checkpoint, model)
    assert not run_dir.resolve().is_relative_to(REPO_ROOT.resolve())
    env = _clean_env(run_dir)
    xray_seg = str(venv / "bin" / "xray-seg")

    help_text = _run([xray_seg, "--help"], cwd=run_dir, env=env).stdout
    assert "predict" in help_text and "serve" in help_text

    _run([xray_seg, "predict", "in", "--out", "out", "--model", "model.pt", "--device", "cpu", "--workers", "0",
          "--outputs", "png,overlay", "--no-progress"], cwd=run_dir, env=env)
    rows = list(csv.DictReader(open(run_dir / "out" / "manifest.csv", newline="", encoding="utf-8")))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}, rows
    for row in rows:
        mask = np.asarray(Image.open(run_dir / "out" / row["mask_png"]))
        assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
