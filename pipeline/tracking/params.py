"""Turn a training's settings, objects and data split into flat MLflow parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

__all__ = ["MAX_PARAM_LENGTH", "datalist_params", "describe_training_objects", "flatten_params", "to_param_value"]

#: MLflow rejects longer parameter values (6000 characters since MLflow 2.x); longer ones are cut with a marker.
MAX_PARAM_LENGTH = 6000


def to_param_value(value: Any) -> str:
    """A parameter value as MLflow stores it: scalars as ``str``, sequences and mappings as compact JSON."""
    if isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, default=str, separators=(",", ":"))
    else:
        text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def flatten_params(
    params: Mapping[str, Any], prefix: str = "", expand: tuple[str, ...] = ("augment",)
) -> dict[str, str]:
    """Flatten settings into ``{key: str}`` MLflow parameters.

    Mappings named in ``expand`` become one parameter per entry (``augment.flip_prob``), so runs can be filtered
    and compared on each setting; other mappings and lists stay one JSON parameter (``network_kwargs``).

    Args:
        params: the settings, possibly nested.
        prefix: prefix of every key (used for recursion).
        expand: names of mappings to expand into dotted keys.

    Examples::

        >>> flatten_params({"augment": {"flip_prob": 0.5}, "network_kwargs": {"features": [4, 8]}})
        {'augment.flip_prob': '0.5', 'network_kwargs': '{"features":[4,8]}'}
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and key in expand:
            flat.update(flatten_params(value, prefix=f"{name}.", expand=tuple(value.keys())))
        else:
            flat[name] = to_param_value(dict(value) if isinstance(value, Mapping) else value)
    return flat


def describe_training_objects(
    network: nn.Module | None = None, loss: Any = None, optimizer: Any = None
) -> dict[str, Any]:
    """What the config built: network class and size, loss class, optimiser class and its hyper-parameters.

    Returns:
        e.g. ``{"network_class": "BasicUNet", "network_parameters": 125320, "loss": "DiceCELoss",
        "optimizer": "Adam", "optimizer.lr": 0.0001, "optimizer.weight_decay": 0.0005, ...}``.
    """
    out: dict[str, Any] = {}
    if network is not None:
        module = getattr(network, "module", network)  # DistributedDataParallel / DataParallel
        out["network_class"] = type(module).__name__
        out["network_parameters"] = sum(p.numel() for p in module.parameters())
    if loss is not None:
        out["loss"] = type(loss).__name__
        for attr in ("lambda_dice", "lambda_ce", "lambda_focal", "gamma"):
            if isinstance(getattr(loss, attr, None), (int, float)):
                out[f"loss.{attr}"] = getattr(loss, attr)
    if optimizer is not None:
        out["optimizer"] = type(optimizer).__name__
        defaults = getattr(optimizer, "defaults", {})
        for key in ("lr", "betas", "eps", "weight_decay", "momentum", "nesterov", "amsgrad"):
            if defaults.get(key) is not None:
                out[f"optimizer.{key}"] = defaults[key]
    return out


def datalist_params(datalist: Mapping[str, Any]) -> dict[str, Any]:
    """Images per split, the split's content hash and where the data came from.

    Args:
        datalist: the bundle's datalist (``training`` / ``validation`` / ``test`` lists, ``hash``, ...).
    """
    out: dict[str, Any] = {f"n_{name}": len(datalist.get(name) or []) for name in ("training", "validation", "test")}
    for key in ("hash", "dataset_dir", "source", "seed"):
        if key in datalist:
            out["datalist_hash" if key == "hash" else f"datalist.{key}"] = datalist[key]
    return out


def lineage_tags(datalist: Mapping[str, Any] | None, provenance: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Tags that say what a model was fine-tuned from and on which added training data.

    Args:
        datalist: the bundle's datalist; its ``extra_training`` record (folders joined to the training split only,
            e.g. the review page's corrections) gives ``corrections_count`` and ``corrections_hash``.
        provenance: the model artifact's provenance; its ``fine_tuned_from`` record (see
            :func:`pipeline.bundle.starting_network`) gives ``fine_tuned_from`` (the registered ``NAME/VERSION`` or
            the path passed) and ``fine_tuned_from_model_version``.
    """
    tags: dict[str, str] = {}
    extra = (datalist or {}).get("extra_training")
    if isinstance(extra, Mapping):
        tags["corrections_count"] = str(int(extra.get("count", 0)))
        tags["corrections_hash"] = str(extra.get("hash", ""))
    start = (provenance or {}).get("fine_tuned_from")
    if isinstance(start, Mapping):
        tags["fine_tuned_from"] = str(start.get("registered") or start.get("source", ""))
        tags["fine_tuned_from_model_version"] = str(start.get("model_version", ""))
    return tags
