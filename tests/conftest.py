"""Shared fixtures: the committed sample, the bundles, the shared data folder (when present), tiny networks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")

from xray_test_paths import LUNG_BUNDLE, REPO_ROOT, SAMPLE_DIR, TINY_BASIC_UNET, shared_data_dir  # noqa: F401


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
