"""The model artifact of a checkpoint for the configs, and the flat state dict the MONAI model zoo tools read."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.io.writers import atomic_path
from pipeline.model import ModelArtifact, load_model

__all__ = ["checkpoint_artifact", "write_state_dict"]


def checkpoint_artifact(path: str | Path, default: ModelArtifact | Mapping[str, Any] | None = None) -> ModelArtifact:
    """The artifact stored in ``path``; ``default`` for a file holding bare weights or for no file at all.

    Evaluation and inference configs build the network and preprocessing from it, so they run the model as it was
    trained. ``default`` (the zoo layout: the config describes the network, ``model.pt`` holds only weights) also
    lets the zoo's tools (``verify_net_in_out``, ``ckpt_export``) build ``network_def`` before any weights exist.

    Args:
        path: the model file.
        default: an artifact or its fields.

    Raises:
        FileNotFoundError: no file and no default.
        pipeline.model.ModelFileError: the file is unusable (the message says how to fix it).
    """
    if isinstance(default, Mapping):
        default = ModelArtifact.from_dict(default)
    if not Path(path).is_file() and default is not None:
        return default
    return load_model(path, default=default)[0]


def write_state_dict(
    checkpoint: str | Path, out: str | Path, expect: ModelArtifact | Mapping[str, Any] | None = None
) -> Path:
    """Write the network weights of ``checkpoint`` as a bare state dict (the layout MONAI zoo tools expect).

    ``model.pt`` holds ``{"model": weights, "artifact": record}``; MONAI's ``ckpt_export`` reads it with
    ``--key_in_ckpt model``. The zoo's ``ci/verify_bundle.py`` calls ``ckpt_export`` without that key, so a bundle
    published to the zoo ships ``models/model.pt`` as a bare state dict, and ``inference.yaml``'s ``zoo_artifact``
    describes the network instead (the bundle's ``zoo_weights`` run id calls this function). Temperature and other
    post-training calibration live only in the artifact: they are not carried into the bare file.

    Args:
        checkpoint: a model file of this project.
        out: the file to write (may be ``checkpoint`` itself: the artifact is then dropped from it).
        expect: the fields the config describes the network with (``zoo_artifact``); when given, every one of them
            must equal the checkpoint's, so the bare weights stay loadable by the config.

    Returns:
        The file written.

    Raises:
        ValueError: the checkpoint's artifact differs from ``expect`` (the message names the fields to set).
    """
    artifact, weights = load_model(checkpoint, default=ModelArtifact.from_dict(dict(expect or {})))
    if expect is not None:
        wanted = expect.to_dict() if isinstance(expect, ModelArtifact) else dict(expect)
        stored = artifact.to_dict()
        differ = {k: stored[k] for k, v in wanted.items() if k in stored and ModelArtifact.from_dict({k: v}).to_dict()[k]
                  != stored[k]}
        if differ:
            fix = " ".join(f"--zoo_artifact#{k} {v!r}" for k, v in differ.items())
            raise ValueError(f"{checkpoint}: the config describes another network than the one trained ({differ}); "
                             f"describe it in inference.yaml's zoo_artifact (or pass {fix}) before writing bare weights.")
    with atomic_path(out) as tmp:
        torch.save(weights, tmp)
    return Path(out)
