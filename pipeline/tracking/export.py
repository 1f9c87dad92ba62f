"""The best checkpoint as a self-contained TorchScript network (no project code needed to run it)."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from pipeline.model import ModelArtifact, load_model

__all__ = ["ARTIFACT_FILE", "MODEL_FILE", "best_network", "save_torchscript", "trace_network", "unwrap_network"]

#: Name of the JSON file embedded in the TorchScript archive with the model artifact (:mod:`pipeline.model`).
ARTIFACT_FILE = "artifact.json"
#: What TorchScript exports before the artifact embedded (preprocessing settings only); still read.
LEGACY_SETTINGS_FILE = "settings.json"
#: File name of the model (weights + artifact) inside a logged MLflow model's ``extra_files``.
MODEL_FILE = "model.pt"


def unwrap_network(network: nn.Module) -> nn.Module:
    """The bare network inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers."""
    while True:
        inner = getattr(network, "module", None) or getattr(network, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return network
        network = inner


def best_network(network: nn.Module, checkpoint: str | Path) -> tuple[nn.Module, ModelArtifact]:
    """A CPU copy of ``network`` holding the weights of ``checkpoint``, in eval mode; the training network is untouched.

    Returns:
        ``(network, artifact)``: the copy and the model artifact stored with the weights.
    """
    copy_ = copy.deepcopy(unwrap_network(network)).to("cpu")
    artifact, weights = load_model(checkpoint, default=ModelArtifact())
    copy_.load_state_dict(weights)
    return copy_.eval(), artifact


def trace_network(network: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace ``network`` (eval mode, CPU, float32) on ``example`` ``(B, C, S, S)`` and check the trace reproduces it.

    Tracing records the operations for inputs of ``example``'s spatial size, which is what the bundle's
    preprocessing always produces; the batch size may vary.

    Raises:
        RuntimeError: the traced network's output differs from the network's.
    """
    network = network.eval()
    example = example.detach().float().cpu()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # input-size checks become constants: intended
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(network, example, check_trace=False)
        expected, got = network(example), traced(example)
    if not torch.allclose(expected, got, atol=1e-5, rtol=1e-4):
        diff = float((expected - got).abs().max())
        raise RuntimeError(f"TorchScript trace differs from the network (max |diff| {diff:.3g}).")
    return traced


def save_torchscript(module: torch.jit.ScriptModule, path: str | Path, artifact: ModelArtifact) -> Path:
    """Save a TorchScript network with its model artifact embedded as ``artifact.json``.

    Read it back with ``extra = {"artifact.json": ""}; torch.jit.load(path, _extra_files=extra)``, then
    ``ModelArtifact.from_dict(json.loads(extra["artifact.json"]))``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, str(path), _extra_files={ARTIFACT_FILE: json.dumps(artifact.to_dict(), default=str)})
    return path
