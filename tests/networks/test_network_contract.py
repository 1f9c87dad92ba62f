"""The contract every network of the project passes: shapes, backward, size checks, export round-trip."""

from __future__ import annotations

import pytest
import torch

from pipeline.networks import NETWORKS, LiteUNet, XNet, get_network, network_divisor

SMALL = {
    "xnet": {"features": (8, 16, 32, 64)},
    "lite_unet": {"features": (8, 16, 32)},
    "basic_unet": {"features": (4, 4, 8, 16, 32, 4)},
    "unet": {"channels": (4, 8, 16, 32, 64)},
    "flexible_unet": {},
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("out_channels", [1, 3])
def test_shapes_and_backward(name, out_channels):
    torch.manual_seed(0)
    net = get_network(name, out_channels=out_channels, **SMALL[name])
    side = 64
    x = torch.randn(2, 1, side, side, requires_grad=True)
    y = net(x)
    assert y.shape == (2, out_channels, side, side)
    y.float().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    reached = [g for g in grads if g is not None]
    # FlexibleUNet's encoder keeps a few unused classifier layers; every other network trains all parameters
    assert len(reached) >= (0.9 if name == "flexible_unet" else 1.0) * len(grads)
    assert any(float(g.abs().sum()) > 0 for g in reached)


@pytest.mark.parametrize("cls,divisor", [(XNet, 8), (LiteUNet, 4)])
def test_odd_sizes_rejected_with_advice(cls, divisor):
    net = cls(features=(8, 16, 32, 64) if cls is XNet else (8, 16, 32))
    with pytest.raises(ValueError, match=f"multiple of {divisor}") as err:
        net(torch.zeros(1, 1, 60 + divisor // 2 + 1, 64))
    assert "e.g." in str(err.value)
    # a valid, non-square size works
    assert net(torch.zeros(1, 1, 8 * divisor, 4 * divisor)).shape[2:] == (8 * divisor, 4 * divisor)


def test_xnet_matches_the_paper_table():
    net = XNet()  # defaults: batch norm, nearest upsampling, 64/128/256/512
    n_params = sum(p.numel() for p in net.parameters())
    assert 11.6e6 < n_params < 11.8e6  # the spec: about 11.7 M with one output channel
    assert isinstance(net.up, torch.nn.Upsample) and net.up.mode == "nearest"
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    # channel widths of the decoders after concatenation, as in the table (512 @ 1/4, 256 @ 1/2, 128 @ 1)
    assert net.y2.conv.in_channels == 512 and net.u2.conv.in_channels == 256 and net.head.in_channels == 128


@pytest.mark.parametrize("norm,layer", [("instance", torch.nn.InstanceNorm2d), ("group", torch.nn.GroupNorm)])
def test_norm_is_configurable(norm, layer):
    for net in (XNet(features=(8, 16, 32, 64), norm=norm), LiteUNet(features=(8, 16, 32), norm=norm)):
        assert any(isinstance(m, layer) for m in net.modules())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_lite_unet_matches_the_paper():
    net = LiteUNet()
    assert 1.8e6 < sum(p.numel() for p in net.parameters()) < 1.9e6
    assert isinstance(net.up2.up, torch.nn.ConvTranspose2d)


@pytest.mark.parametrize("name", ["xnet", "lite_unet", "basic_unet"])
def test_torchscript_round_trip(name, tmp_path):
    torch.manual_seed(0)
    net = get_network(name, **SMALL[name]).eval()
    x = torch.randn(1, 1, 32, 32)
    traced = torch.jit.trace(net, x)
    path = tmp_path / f"{name}.ts"
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_factory_errors_and_divisors():
    with pytest.raises(KeyError, match="Valid names"):
        get_network("segnet")
    assert network_divisor("xnet") == 8 and network_divisor("lite-unet") == 4
    assert get_network("flexible_unet") is not None  # never tries to download weights
