"""Starting weights for a training run: fine-tune from a model file or a registered model (e.g. the champion).

``train.yaml`` wires ``network_def`` through :func:`starting_network` with ``--pretrained``::

    --pretrained models/model.pt                      # a model.pt of this project
    --pretrained "models:/chest-xray-lung-seg@champion"   # the registry's champion (MLflow store, see below)

A registered model is fetched with :func:`pipeline.tracking.fetch_model` from ``pretrained_tracking_uri``, or, when
that is empty, from the store :func:`pipeline.tracking.default_tracking_uri` finds for the bundle's ``output_dir``
(``$MLFLOW_TRACKING_URI``, else the ``mlruns.db`` that ``--tracking`` writes there). The starting
model must have the same network (name, constructor arguments, classes) as the run; a mismatch stops the run before
the first epoch with both descriptions. Preprocessing differences (image size, intensity) are allowed and logged:
fine-tuning at another resolution is a legitimate choice, but the reader of the log should see it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from pipeline.model import ModelArtifact, ModelFileError, load_model, model_version

__all__ = ["StartingWeights", "fine_tunes", "resolve_starting_weights", "starting_network"]

logger = logging.getLogger(__name__)


def fine_tunes(pretrained: str | Path | None) -> bool:
    """Whether ``pretrained`` names starting weights (``None``, ``""`` and ``none`` mean: train from scratch)."""
    return pretrained not in (None, "", "none", "None")


@dataclass(frozen=True)
class StartingWeights:
    """Where a run's starting weights came from (recorded in the artifact's provenance and the MLflow tags)."""

    source: str  #: what the user passed (path or ``models:/`` URI)
    path: Path  #: the model file read
    model_version: str  #: :func:`pipeline.model.model_version` of that file
    registered: str = ""  #: ``NAME/VERSION`` when it came from the registry

    def provenance(self) -> dict[str, str]:
        """The ``fine_tuned_from`` record of the new model's artifact."""
        record = {"source": self.source, "model_version": self.model_version}
        if self.registered:
            record["registered"] = self.registered
        return record


def resolve_starting_weights(pretrained: str | Path, tracking_uri: str | None = None,
                             store_dir: str | Path | None = None) -> StartingWeights:
    """The model file ``pretrained`` names: a path, or a registry URI fetched from the MLflow store.

    Args:
        pretrained: ``model.pt`` path, ``models:/NAME@alias``, ``models:/NAME/VERSION`` or ``runs:/RUN/model``.
        tracking_uri: store of a registry URI; empty: :func:`pipeline.tracking.default_tracking_uri` of ``store_dir``.
        store_dir: the bundle's ``output_dir`` (where ``--tracking`` keeps its SQLite store by default).

    Raises:
        FileNotFoundError: the path does not exist (the message says what to pass instead).
    """
    from pipeline.inference import is_model_uri  # here, not at import: the bundle factories stay light

    source = str(pretrained)
    if is_model_uri(source):
        from pipeline.tracking import default_tracking_uri, fetch_model

        fetched = fetch_model(source, tracking_uri or default_tracking_uri(store_dir))
        registered = f"{fetched.name}/{fetched.version}" if fetched.version else ""
        return StartingWeights(source, Path(fetched.path), model_version(fetched.path), registered)
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"--pretrained {source}: no such model file. Pass a model.pt written by this project's training, or a "
            "registered model such as \"models:/chest-xray-lung-seg@champion\" (with --pretrained_tracking_uri or "
            "$MLFLOW_TRACKING_URI naming the store)."
        )
    return StartingWeights(source, path, model_version(path))


def starting_network(network: nn.Module, artifact: ModelArtifact, pretrained: str | Path | None = None,
                     tracking_uri: str | None = None, store_dir: str | Path | None = None) -> nn.Module:
    """``network`` with the weights of ``pretrained`` loaded (unchanged when ``pretrained`` is empty).

    Args:
        network: the run's network, built from ``artifact``.
        artifact: the run's model artifact; ``provenance["fine_tuned_from"]`` is set when weights are loaded.
        pretrained: see :func:`resolve_starting_weights`; ``None`` or ``""`` trains from scratch.
        tracking_uri: store of a registry URI (see :func:`resolve_starting_weights`).
        store_dir: the bundle's ``output_dir`` (see :func:`resolve_starting_weights`).

    Raises:
        ModelFileError: the starting model's network differs from the run's (name, arguments or classes).
    """
    if not fine_tunes(pretrained):
        return network
    start = resolve_starting_weights(str(pretrained), tracking_uri, store_dir)
    source_artifact, weights = load_model(start.path)
    ours = (artifact.network_name, dict(artifact.network_kwargs), artifact.num_classes)
    theirs = (source_artifact.network_name, dict(source_artifact.network_kwargs), source_artifact.num_classes)
    if ours != theirs:
        raise ModelFileError(
            f"--pretrained {start.source}: its network is {source_artifact.describe()}, but this run trains "
            f"{artifact.describe()}. Pass --network_name {source_artifact.network_name} --network_kwargs "
            f"\"{dict(source_artifact.network_kwargs)}\" --num_classes {source_artifact.num_classes} to fine-tune it, "
            "or drop --pretrained to train from scratch."
        )
    network.load_state_dict(weights)
    for name in ("image_size", "intensity", "resize"):
        mine, before = getattr(artifact, name), getattr(source_artifact, name)
        if mine != before:
            logger.warning("fine-tuning with %s %s (the starting model was trained with %s)", name, mine, before)
    artifact.provenance = {**dict(artifact.provenance), "fine_tuned_from": start.provenance()}
    logger.info("starting weights: %s (model version %s%s)", start.source, start.model_version,
                f", registered {start.registered}" if start.registered else "")
    return network
