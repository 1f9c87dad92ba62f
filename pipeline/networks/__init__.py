"""Networks: XNet, the lightweight lung U-Net, and a factory that also builds MONAI's U-Nets by name."""

from pipeline.networks.factory import NETWORKS, get_network, network_divisor
from pipeline.networks.lite_unet import LiteUNet
from pipeline.networks.xnet import XNet

__all__ = ["NETWORKS", "LiteUNet", "XNet", "get_network", "network_divisor"]
