"""A training's model as a self-contained package folder, and its publication: log, register, apply the rule.

The training handler writes the package when the training ends (the TorchScript network, an input example, the
run's own ``model.pt`` with its model artifact, and a JSON description); :func:`publish_model` sends it to MLflow.
Splitting the two lets a training whose tracking server is down keep the package next to its outputs and publish it
later (``xray-seg models replay``), exactly as it would have been published at once.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["ModelPackage", "publish_model", "write_package"]

logger = logging.getLogger(__name__)

_NETWORK, _EXAMPLE, _META, _CHECKPOINT = "model.ts", "example.pt", "package.json", "model.pt"


@dataclass
class ModelPackage:
    """What a training publishes besides its records: the description stored beside the network.

    Attributes:
        registered_model_name: register under this name; empty: log the model without registering it.
        version_tags: tags of the new version (metrics, run name, hashes, datalist hash, metric definition).
        description: description of the new version.
        key_metric: the validation metric the promotion rule compares.
        value: the version's value of ``key_metric`` (None: no validation, not registered).
        datalist_hash: hash of the datalist the value was measured on.
        metric_definition: how the value was measured (metric, image size, classes).
    """

    registered_model_name: str = ""
    version_tags: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    key_metric: str = "val_mean_dice"
    value: float | None = None
    datalist_hash: str = ""
    metric_definition: str = ""


def write_package(folder: str | Path, network: torch.jit.ScriptModule, example: torch.Tensor,
                  checkpoint: str | Path, package: ModelPackage) -> Path:  # fmt: skip
    """Write ``network`` (TorchScript), ``example``, a copy of ``checkpoint`` and ``package`` into ``folder``.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, folder / _CHECKPOINT)
    torch.jit.save(network, str(folder / _NETWORK))
    torch.save(example.detach().cpu(), folder / _EXAMPLE)
    (folder / _META).write_text(json.dumps(asdict(package), indent=2, default=str))
    return folder


def publish_model(client: MlflowClient, run_id: str, folder: str | Path) -> tuple[str, str | None]:
    """Log the package in ``folder`` as the run's MLflow model; register it and apply the promotion rule.

    Returns:
        ``(model_uri, version)``; version is None when the package is not to be registered.
    """
    from pipeline.model import read_artifact
    from pipeline.tracking.registry import apply_promotion_rule, log_model_version
    from pipeline.tracking.session import TrackedRun

    folder = Path(folder)
    meta = ModelPackage(**json.loads((folder / _META).read_text()))
    checkpoint = folder / _CHECKPOINT
    network = torch.jit.load(str(folder / _NETWORK), map_location="cpu")
    example = torch.load(folder / _EXAMPLE, map_location="cpu", weights_only=True)
    run = TrackedRun(client, run_id)
    register = bool(meta.registered_model_name) and meta.value is not None
    model_uri, version = log_model_version(
        run,
        network,
        example,
        read_artifact(checkpoint),
        checkpoint,
        registered_model_name=meta.registered_model_name if register else None,
        version_tags=meta.version_tags,
        description=meta.description,
    )
    run.set_tags({"model_uri": model_uri})
    if version is not None and meta.value is not None:
        decision = apply_promotion_rule(
            client, meta.registered_model_name, version, meta.value, meta.key_metric,
            datalist_hash=meta.datalist_hash, metric_definition=meta.metric_definition,
        )  # fmt: skip
        run.set_tags({
            "registered_model": f"{meta.registered_model_name}/{version}",
            "promotion.decision": "champion" if decision.promoted else "challenger",
            "promotion.reason": decision.reason,
        })
    return model_uri, version

