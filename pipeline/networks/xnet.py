"""XNet: two encoder-decoder modules in succession for X-ray segmentation (Bullock et al., 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from pipeline.networks._blocks import check_spatial_size, conv_norm_act

__all__ = ["XNet"]


class XNet(nn.Module):
    """XNet for segmenting radiographs, following the layer table of the original paper.

    Bullock J., Cuesta-Lázaro C., Quera-Bofarull A. "XNet: a convolutional neural network (CNN) implementation for
    medical X-ray image segmentation suitable for small datasets." SPIE Medical Imaging 2019, arXiv:1812.00548.

    The network is two encoder-decoder modules in succession. The first goes down three times (flat block A at 1/8
    resolution) and up twice; the second goes down twice more (flat block B) and up three times to full resolution.
    Encoder feature maps of the same size are concatenated into the decoders. Every convolution is 3x3 with 'same'
    padding followed by normalisation and activation; pooling is 2x2 max; upsampling is x2 nearest-neighbour.
    With the defaults it has about 11.7 M parameters (one output channel).

    Args:
        spatial_dims: number of spatial dimensions (2 for radiographs; 3 also works). Defaults to 2.
        in_channels: number of input channels. Defaults to 1.
        out_channels: number of output channels (classes). Defaults to 1 (binary, sigmoid). The original task uses 3
            (open beam, soft tissue, bone, softmax).
        features: the four feature widths ``(f0, f1, f2, f3)``. Defaults to ``(64, 128, 256, 512)`` as in the paper.
        act: activation, a MONAI spec such as ``"relu"`` or ``("leakyrelu", {"negative_slope": 0.1})``.
            Defaults to ``"relu"``.
        norm: normalisation: ``"batch"`` (the paper), ``"instance"`` or ``"group"`` (8 groups), or a MONAI spec
            tuple. Defaults to ``"batch"``. Instance or group norm generalise better to another hospital's images.
        dropout: dropout probability after each convolution. Defaults to 0.0.
        bias: whether convolutions have a bias term. Defaults to True.

    Raises:
        ValueError: when ``features`` does not have four entries, or (in ``forward``) when a spatial side of the
            input is not a multiple of 8.

    Examples::

        >>> net = XNet(spatial_dims=2, in_channels=1, out_channels=3)
        >>> net(torch.zeros(2, 1, 256, 256)).shape
        torch.Size([2, 3, 256, 256])
    """

    __constants__ = ["divisor"]  # a TorchScript constant: the networks export by scripting
    divisor = 8

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (64, 128, 256, 512),
        act: str | tuple = "relu",
        norm: str | tuple = "batch",
        dropout: float | tuple = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if len(features) != 4:
            raise ValueError(f"features must have 4 entries (f0, f1, f2, f3), got {tuple(features)}.")
        f0, f1, f2, f3 = (int(f) for f in features)

        def conv(cin: int, cout: int) -> nn.Module:
            return conv_norm_act(spatial_dims, cin, cout, act, norm, dropout, bias)

        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # first encoder-decoder module
        self.x1 = conv(in_channels, f0)
        self.x2 = conv(f0, f1)
        self.x3 = conv(f1, f2)
        self.flat_a = nn.Sequential(conv(f2, f3), conv(f3, f3))
        self.y3 = conv(f3, f2)
        self.y2 = conv(2 * f2, f1)
        # second encoder-decoder module
        self.u2 = conv(2 * f1, f1)
        self.u3 = conv(f1, f2)
        self.flat_b = nn.Sequential(conv(f2, f3), conv(f3, f3))
        self.z3 = conv(f3, f2)
        self.z2 = conv(2 * f2, f1)
        self.z1 = conv(2 * f1, f0)
        self.head = Conv[Conv.CONV, spatial_dims](2 * f0, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute logits.

        Args:
            x: input of shape ``(batch, in_channels, dim_0[, dim_1, ...])``; every spatial side a multiple of 8.

        Returns:
            Logits of shape ``(batch, out_channels, dim_0[, dim_1, ...])`` (no activation applied).
        """
        check_spatial_size(x, self.divisor, "XNet")
        x1 = self.x1(x)
        x2 = self.x2(self.pool(x1))
        x3 = self.x3(self.pool(x2))
        a = self.flat_a(self.pool(x3))
        y3 = torch.cat([self.y3(self.up(a)), x3], dim=1)
        y2 = torch.cat([self.y2(self.up(y3)), x2], dim=1)
        u2 = self.u2(y2)
        u3 = self.u3(self.pool(u2))
        b = self.flat_b(self.pool(u3))
        z3 = torch.cat([self.z3(self.up(b)), u3], dim=1)
        z2 = torch.cat([self.z2(self.up(z3)), u2], dim=1)
        z1 = torch.cat([self.z1(self.up(z2)), x1], dim=1)
        return self.head(z1)
