"""LiteUNet: the lightweight XNet-inspired lung U-Net (Khalid & Ahmed, 2025)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from pipeline.networks._blocks import check_spatial_size, conv_norm_act

__all__ = ["LiteUNet"]


class _DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and activation."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, act, norm, dropout, bias: bool) -> None:
        super().__init__(
            conv_norm_act(spatial_dims, cin, cout, act, norm, dropout, bias),
            conv_norm_act(spatial_dims, cout, cout, act, norm, dropout, bias),
        )


class _Up(nn.Module):
    """Transposed-convolution up-step, concatenation with the skip, then a DoubleConv."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, act, norm, dropout, bias: bool) -> None:
        super().__init__()
        self.up = Conv[Conv.CONVTRANS, spatial_dims](cin, cout, kernel_size=2, stride=2)
        self.conv = _DoubleConv(spatial_dims, 2 * cout, cout, act, norm, dropout, bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class LiteUNet(nn.Module):
    """The lightweight lung U-Net: two pooling levels, DoubleConv blocks and transposed-conv up-steps.

    Khalid & Ahmed (FAST NUCES, 2025), an XNet-inspired U-Net for binary lung segmentation on chest X-rays:
    ``DoubleConv(1→64)``, pool, ``DoubleConv(64→128)``, pool, bottleneck ``DoubleConv(128→256)``, two
    ``ConvTranspose`` up-steps with concatenated skips, and a 1x1 head (about 1.86 M parameters with the defaults).

    Args:
        spatial_dims: number of spatial dimensions. Defaults to 2.
        in_channels: number of input channels. Defaults to 1.
        out_channels: number of output channels. Defaults to 1 (one lung logit).
        features: the three widths ``(encoder 1, encoder 2, bottleneck)``. Defaults to ``(64, 128, 256)``.
        act: activation spec. Defaults to ``"relu"``.
        norm: ``"batch"`` (the paper), ``"instance"``, ``"group"`` or a MONAI spec. Defaults to ``"batch"``.
        dropout: dropout probability after each convolution. Defaults to 0.0.
        bias: whether convolutions have a bias term. Defaults to True.

    Raises:
        ValueError: when ``features`` does not have three entries, or (in ``forward``) when a spatial side of the
            input is not a multiple of 4.

    Examples::

        >>> net = LiteUNet(out_channels=1)
        >>> net(torch.zeros(1, 1, 256, 256)).shape
        torch.Size([1, 1, 256, 256])
    """

    __constants__ = ["divisor"]  # a TorchScript constant: the networks export by scripting
    divisor = 4

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (64, 128, 256),
        act: str | tuple = "relu",
        norm: str | tuple = "batch",
        dropout: float | tuple = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if len(features) != 3:
            raise ValueError(f"features must have 3 entries (enc1, enc2, bottleneck), got {tuple(features)}.")
        f0, f1, f2 = (int(f) for f in features)
        args = (act, norm, dropout, bias)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.enc1 = _DoubleConv(spatial_dims, in_channels, f0, *args)
        self.enc2 = _DoubleConv(spatial_dims, f0, f1, *args)
        self.bottleneck = _DoubleConv(spatial_dims, f1, f2, *args)
        self.up2 = _Up(spatial_dims, f2, f1, *args)
        self.up1 = _Up(spatial_dims, f1, f0, *args)
        self.head = Conv[Conv.CONV, spatial_dims](f0, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute logits.

        Args:
            x: input of shape ``(batch, in_channels, dim_0[, dim_1, ...])``; every spatial side a multiple of 4.

        Returns:
            Logits of shape ``(batch, out_channels, dim_0[, dim_1, ...])``.
        """
        check_spatial_size(x, self.divisor, "LiteUNet")
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        return self.head(self.up1(self.up2(b, e2), e1))
