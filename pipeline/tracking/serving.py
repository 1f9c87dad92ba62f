"""Serve from the registry: the model file (``model.pt`` with its artifact) behind ``models:/NAME@ALIAS`` and friends.

Registered models carry the training's ``model.pt`` (weights + :class:`~pipeline.model.ModelArtifact`) beside the
TorchScript network, so :meth:`pipeline.inference.Predictor.from_checkpoint` builds the same Predictor from a URI as
from the file. Versions logged before the artifact existed (TorchScript with ``settings.json`` only) are converted:
a traced network keeps its parameter names, so its state dict loads into the network the settings name.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pipeline.model import ModelArtifact, save_model
from pipeline.tracking.export import ARTIFACT_FILE, LEGACY_SETTINGS_FILE, MODEL_FILE
from pipeline.tracking.registry import get_version
from pipeline.tracking.store import get_client

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

__all__ = ["FetchedModel", "fetch_model", "resolve_model_version"]

logger = logging.getLogger(__name__)


@dataclass
class FetchedModel:
    """A model file fetched from the tracking store.

    Attributes:
        path: local ``model.pt`` (weights + artifact).
        name: registered model name (or the URI for models outside the registry).
        version: registry version number (``""`` outside the registry).
        run_id: the training run, when known.
    """

    path: Path
    name: str
    version: str
    run_id: str = ""


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


def fetch_model(model_uri: str, tracking_uri: str | None = None) -> FetchedModel:
    """Download the model a URI names and return its ``model.pt`` with the registry version it resolved to.

    Args:
        model_uri: ``models:/chest-xray-lung-seg@champion``, ``models:/NAME/3``, ``models:/NAME/latest``,
            ``runs:/<run_id>/model`` or ``models:/<logged model id>``.
        tracking_uri: store holding the model; defaults to ``$MLFLOW_TRACKING_URI``, else the current folder's store.

    Raises:
        mlflow.exceptions.MlflowException: unknown model, version, alias or run.
        FileNotFoundError: the logged model holds neither a model file nor a TorchScript network.
    """
    import mlflow

    client = get_client(tracking_uri)
    version = resolve_model_version(model_uri, client)
    # a version's storage location needs no registry lookup (MLflow would otherwise use the *global* registry URI)
    source = client.get_model_version_download_uri(version.name, version.version) if version is not None else model_uri
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=client.tracking_uri))
    path = model_dir / "extra_files" / MODEL_FILE
    if not path.is_file():
        path = _convert_legacy(model_dir)
    name = version.name if version is not None else model_uri
    number = str(version.version) if version is not None else ""
    run_id = str(getattr(version, "run_id", "") or "")
    logger.info("fetched %s: %s version %s (run %s)", model_uri, name, number or "-", run_id or "-")
    return FetchedModel(path, name, number, run_id)


def _convert_legacy(model_dir: Path) -> Path:
    """``model.pt`` for a version logged as TorchScript only (artifact from its embedded record or settings)."""
    scripted = model_dir / "data" / "model.pth"
    if not scripted.is_file():
        raise FileNotFoundError(f"{model_dir}: the logged model holds neither {MODEL_FILE} nor a TorchScript network.")
    extra = {ARTIFACT_FILE: "", LEGACY_SETTINGS_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        network = torch.jit.load(str(scripted), map_location="cpu", _extra_files=extra)
    record = json.loads(extra[ARTIFACT_FILE] or extra[LEGACY_SETTINGS_FILE] or "{}")
    artifact = ModelArtifact.from_dict(record)
    out = model_dir / "converted" / MODEL_FILE
    if not out.is_file():
        save_model(out, dict(network.state_dict()), artifact)
    logger.info("converted a TorchScript-only model version to %s", MODEL_FILE)
    return out
