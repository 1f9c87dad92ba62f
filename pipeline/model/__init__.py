"""The trained model as one artifact: weights plus the record of how to run and judge them (:mod:`.artifact`)."""

from pipeline.model.artifact import (
    ARTIFACT_KEY,
    FORMAT_VERSION,
    WEIGHTS_KEY,
    ModelArtifact,
    ModelFileError,
    load_model,
    model_version,
    read_artifact,
    save_model,
    update_model,
)

__all__ = [
    "ARTIFACT_KEY",
    "FORMAT_VERSION",
    "WEIGHTS_KEY",
    "ModelArtifact",
    "ModelFileError",
    "load_model",
    "model_version",
    "read_artifact",
    "save_model",
    "update_model",
]
