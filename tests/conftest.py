"""Shared fixtures: the committed sample, the bundles, the shared data folder (when present), tiny networks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
LUNG_BUNDLE = REPO_ROOT / "bundles" / "chest_xray_lung_segmentation"
SAMPLE_DIR = REPO_ROOT / "pipeline" / "data" / "sample" / "jsrt30"

#: A BasicUNet small enough for CPU tests in seconds.
TINY_BASIC_UNET = {"features": [4, 4, 8, 16, 32, 4]}


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the repository (or ``$XRAY_SHARED_DATA``), if present."""
    env = os.environ.get("XRAY_SHARED_DATA")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def lung_bundle() -> Path:
    return LUNG_BUNDLE


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
