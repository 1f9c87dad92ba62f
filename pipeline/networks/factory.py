"""Name → network factory shared by bundle configs, the CLI, the registry and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn
from monai.networks.nets import BasicUNet, FlexibleUNet, UNet

from pipeline.networks.lite_unet import LiteUNet
from pipeline.networks.xnet import XNet

__all__ = ["NETWORKS", "get_network", "network_divisor"]


def _monai_unet(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    kwargs.setdefault("channels", (32, 64, 128, 256, 512))
    kwargs.setdefault("strides", (2, 2, 2, 2))
    kwargs.setdefault("num_res_units", 2)
    kwargs.setdefault("norm", "instance")
    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


def _flexible_unet(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    kwargs.setdefault("backbone", "efficientnet-b0")
    kwargs["pretrained"] = False  # no weights are downloaded: hospitals run offline
    return FlexibleUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


#: Every network the configs can name, with the divisor its input sides must respect.
NETWORKS: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "xnet": (XNet, 8),
    "lite_unet": (LiteUNet, 4),
    "basic_unet": (BasicUNet, 16),
    "unet": (_monai_unet, 16),
    "flexible_unet": (_flexible_unet, 32),
}


def get_network(
    name: str, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1, **kwargs: Any
) -> nn.Module:
    """Build a network by name.

    Args:
        name: one of ``xnet``, ``lite_unet``, ``basic_unet`` (MONAI ``BasicUNet``), ``unet`` (MONAI ``UNet``,
            residual units, instance norm) or ``flexible_unet`` (MONAI ``FlexibleUNet``, never pretrained).
        spatial_dims: number of spatial dimensions. Defaults to 2.
        in_channels: number of input channels. Defaults to 1.
        out_channels: number of output channels: 1 for binary (sigmoid), the number of classes for softmax.
        kwargs: passed to the network's constructor (e.g. ``features``, ``norm``, ``dropout``).

    Returns:
        The network, returning logits.

    Raises:
        KeyError: for an unknown name; the message lists the valid ones.

    Examples::

        >>> net = get_network("xnet", out_channels=3, norm="instance")
    """
    key = name.lower().replace("-", "_")
    if key not in NETWORKS:
        raise KeyError(f"Unknown network {name!r}. Valid names: {', '.join(sorted(NETWORKS))}.")
    builder, _ = NETWORKS[key]
    return builder(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


def network_divisor(name: str) -> int:
    """The number every spatial side of the input must be a multiple of for network ``name``."""
    key = name.lower().replace("-", "_")
    if key not in NETWORKS:
        raise KeyError(f"Unknown network {name!r}. Valid names: {', '.join(sorted(NETWORKS))}.")
    return NETWORKS[key][1]
