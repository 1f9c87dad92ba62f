"""The settings a checkpoint needs to be used again, saved beside its weights.

A network's weights alone do not say how to feed it: the image size it was trained at (which differs between the
CPU and GPU defaults of the lung bundle), the intensity scaling, the number of classes, the network and its
constructor arguments. :class:`ModelSettings` goes into the bundle's ``CheckpointSaver`` next to the network, so
``model.pt`` holds ``{"model": state_dict, "settings": {...}}``; :func:`stored_settings` reads them back for the
evaluation and inference configs and for :meth:`pipeline.inference.Predictor.from_bundle`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["SETTINGS_KEY", "ModelSettings", "stored_settings"]

#: Key of the settings in a checkpoint dictionary.
SETTINGS_KEY = "settings"


class ModelSettings:
    """Preprocessing and network settings, checkpointed like a module (``state_dict`` / ``load_state_dict``).

    Args:
        image_size: side the network sees.
        intensity: intensity scaling (``"minmax"`` or ``"percentile"``).
        num_classes: network output channels (1 = binary sigmoid).
        threshold: probability threshold of the binary case.
        network_name: name for :func:`pipeline.networks.get_network`.
        network_kwargs: extra constructor arguments of the network.

    Examples::

        # bundle config: save the settings with the best model
        CheckpointSaver:
          save_dict: {model: '@network', settings: '@model_settings'}
    """

    def __init__(
        self,
        image_size: int,
        intensity: str = "minmax",
        num_classes: int = 1,
        threshold: float = 0.5,
        network_name: str = "basic_unet",
        network_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings: dict[str, Any] = {
            "image_size": int(image_size),
            "intensity": str(intensity),
            "num_classes": int(num_classes),
            "threshold": float(threshold),
            "network_name": str(network_name),
            "network_kwargs": _plain(dict(network_kwargs or {})),
        }

    def state_dict(self) -> dict[str, Any]:
        """The settings as plain Python values (loadable with ``torch.load(weights_only=True)``)."""
        return dict(self.settings)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the settings with stored ones."""
        self.settings.update(dict(state))

    def __repr__(self) -> str:
        return f"ModelSettings({self.settings})"


def stored_settings(checkpoint: str | Path) -> dict[str, Any]:
    """The settings saved in a bundle checkpoint, or ``{}`` when it has none or does not exist (yet).

    A missing checkpoint is not an error here: the loader that needs the weights reports it with its path.
    """
    path = Path(checkpoint)
    if not path.is_file():
        return {}
    state = torch.load(path, map_location="cpu", weights_only=True)
    settings = state.get(SETTINGS_KEY) if isinstance(state, dict) else None
    return dict(settings) if isinstance(settings, Mapping) else {}


def _plain(value: Any) -> Any:
    """Config values (ConfigParser may give tuples, lists, nested dicts) as plain lists / dicts / scalars."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
