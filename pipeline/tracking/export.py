"""The best checkpoint as a self-contained TorchScript network (no project code needed to run it)."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = ["SETTINGS_FILE", "best_network", "save_torchscript", "trace_network", "unwrap_network"]

#: Name of the JSON file embedded in the TorchScript archive with the preprocessing settings.
SETTINGS_FILE = "settings.json"


def unwrap_network(network: nn.Module) -> nn.Module:
    """The bare network inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile`` wrappers."""
    while True:
        inner = getattr(network, "module", None) or getattr(network, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return network
        network = inner


def best_network(network: nn.Module, checkpoint: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A CPU copy of ``network`` holding the weights of ``checkpoint``, in eval mode; the training network is untouched.

    Returns:
        ``(network, extras)``: extras are the entries saved beside the weights (e.g. ``temperature``).
    """
    from pipeline.inference.predictor import load_checkpoint

    copy_ = copy.deepcopy(unwrap_network(network)).to("cpu")
    extras = load_checkpoint(copy_, checkpoint, map_location="cpu")
    return copy_.eval(), extras


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


def save_torchscript(module: torch.jit.ScriptModule, path: str | Path, settings: Mapping[str, Any]) -> Path:
    """Save a TorchScript network with its preprocessing settings embedded as ``settings.json``.

    Read them back with ``extra = {"settings.json": ""}; torch.jit.load(path, _extra_files=extra)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, str(path), _extra_files={SETTINGS_FILE: json.dumps(dict(settings), default=str)})
    return path
