"""Serve from the registry: a :class:`~pipeline.inference.Predictor` from ``models:/NAME@ALIAS`` and friends."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.tracking.export import SETTINGS_FILE
from pipeline.tracking.registry import MODEL_SETTING_KEYS, get_version, version_settings
from pipeline.tracking.store import get_client

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from pipeline.inference.predictor import Predictor

__all__ = ["load_predictor_from_uri", "resolve_model_version"]

logger = logging.getLogger(__name__)


def resolve_model_version(model_uri: str, client: Any) -> ModelVersion | None:
    """The registered version a URI names: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.

    Returns:
        The version, or None for URIs outside the registry (``runs:/...``, ``models:/<logged model id>``).
    """
    if not model_uri.startswith("models:/"):
        return None
    ref = model_uri[len("models:/") :].strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return get_version(client, name, "@" + alias)
    if "/" in ref:
        name, version = ref.split("/", 1)
        if version.isdigit():
            return get_version(client, name, version)
        if version == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            return max(versions, key=lambda v: int(v.version)) if versions else None
    return None


def _load_torchscript(model_dir: Path, device: torch.device) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The TorchScript network of an MLflow model folder and the settings embedded in it (if any)."""
    extra = {SETTINGS_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        network = torch.jit.load(str(model_dir / "data" / "model.pth"), map_location=device, _extra_files=extra)
    return network, json.loads(extra[SETTINGS_FILE] or "{}")


def load_predictor_from_uri(
    model_uri: str, tracking_uri: str | None = None, device: str | torch.device | None = None, **kwargs: Any
) -> Predictor:
    """A Predictor for a registered (or logged) model, with the preprocessing it was trained with.

    The network is the TorchScript module logged at the end of training; the preprocessing settings (image size,
    intensity scaling, classes, threshold, temperature) come from the version's tags, else the model's MLflow
    metadata (written at logging time and immutable; tags may be updated, e.g. with a fitted temperature). No
    bundle config is read. The version used is recorded on the predictor (``model_name``, ``model_version``) and
    logged.

    Args:
        model_uri: ``models:/chest-xray-lung-seg@champion``, ``models:/NAME/3``, ``models:/NAME/latest``,
            ``runs:/<run_id>/model`` or ``models:/<logged model id>``.
        tracking_uri: store holding the model; defaults to ``$MLFLOW_TRACKING_URI``, else the lung bundle's
            embedded store.
        device: ``"cuda"``, ``"cpu"`` or None (CUDA when available).
        kwargs: passed to the Predictor; they override the stored settings (e.g. ``threshold``, ``postprocess``).

    Raises:
        mlflow.exceptions.MlflowException: unknown model, version, alias or run.

    Examples::

        >>> predictor = load_predictor_from_uri("models:/chest-xray-lung-seg@champion")
        >>> predictor.model_version
        '3'
    """
    import mlflow

    from pipeline.inference.predictor import Predictor

    client = get_client(tracking_uri)
    version = resolve_model_version(model_uri, client)
    # a version's storage location needs no registry lookup (MLflow would otherwise use the *global* registry URI)
    source = client.get_model_version_download_uri(version.name, version.version) if version is not None else model_uri
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=client.tracking_uri))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    network, embedded = _load_torchscript(model_dir, target)

    settings: dict[str, Any] = dict(embedded)
    metadata = _model_metadata(model_dir)
    settings.update({k: metadata[k] for k in MODEL_SETTING_KEYS if k in metadata})
    if version is not None:  # version tags can be updated later (e.g. the temperature fitted by the evaluation)
        settings.update(version_settings(version))
    missing = [k for k in ("image_size", "intensity", "num_classes") if k not in settings]
    if missing:
        logger.warning("%s stores no %s: using the Predictor's defaults", model_uri, ", ".join(missing))
    name = version.name if version is not None else model_uri
    number = str(version.version) if version is not None else ""
    predictor_kwargs: dict[str, Any] = {
        k: settings[k] for k in ("image_size", "intensity", "num_classes", "threshold", "temperature") if k in settings
    }
    predictor_kwargs.update(model_name=name, model_version=number)
    predictor_kwargs.update(kwargs)
    predictor = Predictor(network, device=target, **predictor_kwargs)
    logger.info(
        "serving %s: %s version %s (run %s, network %s, %s px)",
        model_uri, name, number or "-", getattr(version, "run_id", "-"), settings.get("network_name", "?"),
        predictor.image_size,
    )
    return predictor


def _model_metadata(model_dir: Path) -> dict[str, Any]:
    """The ``metadata`` block of a downloaded model's ``MLmodel`` file."""
    from mlflow.models import Model

    try:
        return dict(Model.load(str(model_dir)).metadata or {})
    except Exception as err:  # an MLmodel without metadata, or a folder that is not an MLflow model
        logger.debug("no metadata in %s: %s", model_dir, err)
        return {}
