"""Paths and tiny settings shared by the tests (a module with a unique name: several test folders have a conftest)."""

from __future__ import annotations

import os
from pathlib import Path

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
