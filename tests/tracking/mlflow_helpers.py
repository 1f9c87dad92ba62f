"""Helpers of the MLflow tests: paths, fast bundle settings, in-process bundle runs (imported by name, not a test)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")  # offline: no pip dry run in log_model

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "chest_xray_lung_segmentation"
SETTINGS_FILE = REPO / "configs" / "mlflow_tracking.yaml"
MODEL_NAME = "chest-xray-lung-seg"

SAMPLE = REPO / "pipeline" / "data" / "sample" / "jsrt30"

#: Small and fast: a 31 k-parameter BasicUNet at 32 px (``dataset_dir`` is set by :func:`make_dataset`).
FAST = {
    "image_size": 32,
    "num_workers": 0,
    "batch_size": 4,
    "network_kwargs": {"features": [4, 4, 8, 16, 32, 4]},
}


def run_bundle(run_id: str, configs: list[str], tracking: str | None, **overrides: Any) -> Any:
    """Run a bundle workflow in this process (as ``python -m monai.bundle run RUN_ID ...`` does); returns it."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / name) for name in configs],
        logging_file=False,
        run_id=run_id,
        workflow_type=None,
        tracking=tracking,
        bundle_root=str(BUNDLE),
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def train(workdir: Path, tracking: str | None, tracking_uri: str | None, **overrides: Any) -> dict[str, Any]:
    """A short tracked training; returns the run id, model version, best Dice and paths."""
    from pipeline.tracking import MLflowTrainingHandler

    settings = {**FAST, "output_dir": f"$'{workdir / 'eval'}'", "ckpt_dir": str(workdir / "models"), **overrides}
    if tracking_uri:
        settings["tracking_uri"] = tracking_uri
    workflow = run_bundle("training", ["train.yaml"], tracking, **settings)
    handlers = workflow.parser.get_parsed_content("train#handlers")
    handler = next(h for h in handlers if isinstance(h, MLflowTrainingHandler))
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    return {
        "workflow": workflow,
        "run_id": handler.run.run_id if handler.run else None,
        "version": handler.model_version,
        "best": float(evaluator.state.best_metric),
        "checkpoint": workdir / "models" / "model.pt",
        "output_dir": workdir / "eval",
        "overrides": settings,
    }


def make_dataset(folder: Path, n: int = 12) -> Path:
    """The first ``n`` image/mask pairs of the embedded JSRT sample in ``folder/jsrt12`` (fewer images, faster runs)."""
    target = folder / f"jsrt{n}"
    for sub in ("images", "masks"):
        (target / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((SAMPLE / sub).iterdir())[:n]:
            (target / sub / path.name).write_bytes(path.read_bytes())
    return target
