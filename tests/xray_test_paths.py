"""Paths and tiny settings shared by the tests (a module with a unique name: several test folders have a conftest)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def train_lung_bundle(out: Path, tracking_uri: str | None = None, **overrides: Any) -> Any:
    """Train the lung bundle in this process as ``python -m monai.bundle run training`` does; returns the workflow.

    Tiny by default (the sample, 32 px, one epoch, :data:`TINY_BASIC_UNET`); ``out`` receives ``eval/`` and
    ``models/``. With ``tracking_uri`` the run is tracked (``--tracking mlflow --tracking_uri ...``).
    """
    from monai.bundle import ConfigWorkflow

    configs = LUNG_BUNDLE / "configs"
    settings = {"dataset_dir": "sample", "image_size": 32, "max_epochs": 1, "batch_size": 4, "num_workers": 0,
                "network_kwargs": TINY_BASIC_UNET, **overrides}
    if tracking_uri:
        settings.update(tracking="mlflow", tracking_uri=tracking_uri)
    workflow = ConfigWorkflow(
        config_file=[str(configs / "common.yaml"), str(configs / "train.yaml")],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf") if "tracking" not in settings else False,
        run_id="training",
        workflow_type=None,
        bundle_root=str(LUNG_BUNDLE),
        output_dir=f"$'{Path(out) / 'eval'}'",
        ckpt_dir=str(Path(out) / "models"),
        **settings,
    )
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()
    return workflow
