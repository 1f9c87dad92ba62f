"""CpuAutocastInferer: bf16 forward for CPU training, float32 logits, a plain SimpleInferer when off."""

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.engines import CpuAutocastInferer, cpu_has_native_bf16
from pipeline.networks import get_network

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "chest_xray_lung_segmentation" / "configs"


def _net_and_batch():
    torch.manual_seed(0)
    net = get_network("basic_unet", features=[4, 4, 8, 16, 32, 4])
    return net, torch.randn(2, 1, 32, 32)


def _conv_dtypes(net: torch.nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_enabled_runs_convolutions_in_bf16_and_returns_float32_logits_close_to_fp32():
    net, x = _net_and_batch()
    reference = CpuAutocastInferer(enabled=False)(x, net)
    seen = _conv_dtypes(net)
    out = CpuAutocastInferer(enabled=True)(x, net)
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert torch.allclose(out, reference, atol=0.1, rtol=0.05)
    assert not torch.equal(out, reference)  # it really ran in lower precision


def test_backward_gives_float32_gradients():
    net, x = _net_and_batch()
    CpuAutocastInferer(enabled=True)(x, net).mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_disabled_is_simple_inferer():
    net, x = _net_and_batch()
    seen = _conv_dtypes(net)
    out = CpuAutocastInferer(enabled=False)(x, net)
    assert all(dtype == torch.float32 for dtype in seen)
    with torch.no_grad():
        assert torch.equal(out.detach(), net(x))


def test_auto_follows_the_cpu_and_bad_values_are_refused():
    assert CpuAutocastInferer().enabled == cpu_has_native_bf16()
    with pytest.raises(ValueError, match="enabled must be true, false or 'auto'"):
        CpuAutocastInferer(enabled="yes")


@pytest.mark.parametrize("value", [True, False])
def test_lung_bundle_training_inferer_follows_cpu_bf16(value):
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "common.yaml"), str(CONFIGS / "train.yaml")])
    parser["cpu_bf16"] = value
    inferer = parser.get_parsed_content("train#inferer")
    assert isinstance(inferer, CpuAutocastInferer) and inferer.enabled is value
