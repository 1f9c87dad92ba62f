"""Small building blocks shared by the project's own networks (private module)."""

from __future__ import annotations


import torch
from monai.networks.blocks import Convolution

__all__ = ["conv_norm_act", "resolve_norm", "check_spatial_size"]


def resolve_norm(norm: str | tuple | None, num_groups: int = 8) -> str | tuple | None:
    """Turn a short norm name into a MONAI norm spec.

    ``"group"`` alone is not enough for ``torch.nn.GroupNorm``; it becomes ``("group", {"num_groups": num_groups})``.
    ``"instance"`` gets learnable affine parameters, as in MONAI's ``BasicUNet``.
    """
    if isinstance(norm, str):
        name = norm.lower()
        if name == "group":
            return ("group", {"num_groups": num_groups})
        if name == "instance":
            return ("instance", {"affine": True})
        if name in ("none", ""):
            return None
    return norm


def conv_norm_act(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    act: str | tuple,
    norm: str | tuple | None,
    dropout: float | tuple | None,
    bias: bool,
) -> Convolution:
    """3x3 ('same' padding) convolution followed by normalisation, dropout and activation."""
    return Convolution(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=3,
        act=act,
        norm=resolve_norm(norm),
        dropout=dropout,
        bias=bias,
        padding=1,
    )


def check_spatial_size(x: torch.Tensor, divisor: int, network: str) -> None:
    """Raise a ``ValueError`` naming the sizes that work when a spatial side is not a multiple of ``divisor``.

    Written with plain loops so that the networks calling it stay scriptable (``torch.jit.script``).
    """
    sizes: list[int] = []
    suggestion: list[int] = []
    bad = False
    for s in x.shape[2:]:
        sizes.append(int(s))
        suggestion.append(((int(s) + divisor - 1) // divisor) * divisor)
        if int(s) % divisor != 0:
            bad = True
    if bad:
        raise ValueError(
            f"{network} needs every spatial side to be a multiple of {divisor}, got input of spatial size {sizes}. "
            f"Resize or pad the image to e.g. {suggestion} (sizes such as 128, 200, 256 or 512 work)."
        )