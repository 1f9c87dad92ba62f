"""Load a Predictor from whatever the user names: a model file, or an MLflow model URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.inference.predictor import Predictor, is_model_uri
from pipeline.model import ModelArtifact

__all__ = ["is_model_uri", "load_predictor"]

#: Artifact fields that describe the network itself: for files holding bare weights they say which network it is.
_NETWORK_FIELDS = ("network_name", "network_kwargs", "num_classes", "class_names")


def load_predictor(model: str | Path, overrides: dict[str, Any] | None = None, **kwargs: Any) -> Predictor:
    """Build a :class:`Predictor` from a model file or an MLflow model URI.

    Args:
        model: ``path/to/model.pt`` or an MLflow URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
            ``runs:/RUN/model``); see :meth:`Predictor.from_checkpoint`.
        overrides: artifact fields to change (e.g. ``{"threshold": 0.4}``). For a file that holds bare weights
            without an artifact, they also say which network and preprocessing it was trained with
            (``{"network_name": "xnet", "image_size": 256}``).
        kwargs: passed to :meth:`Predictor.from_checkpoint` (``device``, ``amp``, ``postprocess``, ...).

    Raises:
        FileNotFoundError: the model file does not exist.
        pipeline.model.ModelFileError: the file is not a usable model file.
    """
    overrides = dict(overrides or {})
    network = {k: overrides.pop(k) for k in _NETWORK_FIELDS if k in overrides}
    default = ModelArtifact(**network, **{k: v for k, v in overrides.items() if k in ModelArtifact.__dataclass_fields__})
    return Predictor.from_checkpoint(model, default=default, **overrides, **kwargs)

