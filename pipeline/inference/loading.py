"""Load a Predictor from whatever the user names: a checkpoint file, or an MLflow model URI."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipeline.inference.predictor import Predictor

__all__ = ["DEFAULT_BUNDLE", "checkpoint_version", "load_predictor", "is_model_uri"]

#: The lung bundle, relative to the repository root (the default source of the network definition).
DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "chest_xray_lung_segmentation"


def is_model_uri(model: str) -> bool:
    """True for MLflow URIs such as ``models:/chest-xray-lung-seg@champion`` or ``runs:/<id>/model``."""
    return str(model).startswith(("models:/", "runs:/", "mlflow-artifacts:/"))


def load_predictor(
    model: str | Path,
    bundle_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Predictor:
    """Build a :class:`Predictor` from a checkpoint path or an MLflow model URI.

    Args:
        model: ``path/to/model.pt`` (network and preprocessing from the bundle config) or an MLflow URI
            (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN/model``), resolved by
            :mod:`pipeline.tracking`, which records the version used.
        bundle_dir: bundle whose ``configs/train.yaml`` defines the network; defaults to the lung bundle.
        overrides: config overrides (e.g. ``{"network_name": "xnet"}``) for checkpoint paths.
        kwargs: passed to the Predictor (``device``, ``postprocess``, ...).

    Raises:
        FileNotFoundError: the checkpoint does not exist.
    """
    if is_model_uri(str(model)):
        from pipeline.tracking import load_predictor_from_uri  # the only road into mlflow

        return load_predictor_from_uri(str(model), **kwargs)
    return Predictor.from_bundle(bundle_dir or DEFAULT_BUNDLE, checkpoint=model, overrides=overrides, **kwargs)


def checkpoint_version(path: str | Path) -> str:
    """``sha256:<12 hex>`` of a checkpoint file: a stable model version when no registry version is given."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:12]}"
