"""optimize_for_inference: the chosen fast path gives the eager network's masks (within bf16 tolerance).

The networks get a last layer scaled x20 so their logits are as large as a trained network's (tens), which is where
low precision shows: probabilities may move by ~1e-3 on average and only pixels with logits near zero flip.
"""

from __future__ import annotations

import pytest
import torch

from xray_test_paths import TINY_BASIC_UNET
from pipeline.inference.acceleration import (
    InferenceOptions,
    OptimizedNetwork,
    candidate_options,
    cpu_has_native_bf16,
    optimize_for_inference,
)
from pipeline.networks import get_network

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _trained_like(name: str = "basic_unet", **kwargs) -> torch.nn.Module:
    """A network with confident outputs (large logits), as a trained one has: scaled last layer."""
    torch.manual_seed(0)
    net = get_network(name, **kwargs).eval()
    with torch.no_grad():
        last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.mul_(20.0)
    return net


def _probs(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.sigmoid(net(x).float())


def test_cpu_keeps_the_eager_network():
    net = _trained_like(**{"features": TINY_BASIC_UNET["features"]})
    x = torch.randn(2, 1, 32, 32)
    expected = _probs(net, x)
    fast, info = optimize_for_inference(net, "cpu", (2, 1, 32, 32))
    assert isinstance(fast, OptimizedNetwork) and info["chosen"] == "fp32"
    assert candidate_options(torch.device("cpu")) == [InferenceOptions()]
    opt_in = candidate_options(torch.device("cpu"), cpu_bf16=True)  # bf16 only where the CPU computes it natively
    native = [InferenceOptions(), InferenceOptions(torch.bfloat16)]
    assert opt_in == (native if cpu_has_native_bf16() else [InferenceOptions()])
    assert torch.equal(_probs(fast, x), expected)


def test_low_precision_and_channels_last_candidates_match_eager_on_cpu():
    """The selection machinery on CPU: bf16 autocast and channels-last run, are checked and compared."""
    net = _trained_like(**{"features": TINY_BASIC_UNET["features"]})
    x = torch.randn(2, 1, 32, 32).clamp(-1, 1)
    expected = _probs(net, x)
    options = [InferenceOptions(torch.bfloat16), InferenceOptions(channels_last=True),
               InferenceOptions(torch.bfloat16, channels_last=True)]
    fast, info = optimize_for_inference(net, "cpu", (2, 1, 32, 32), candidates=options, warmup=1, repeats=2)
    assert set(info["seconds_per_batch"]) == {"fp32", "bf16", "fp32+channels_last", "bf16+channels_last"}
    assert not info["errors"], info["errors"]
    assert info["max_prob_diff"]["fp32+channels_last"] < 1e-4  # layout alone changes nothing but rounding
    got = _probs(fast, x)
    assert got.dtype == torch.float32 and (got - expected).abs().mean() <= 0.01
    assert ((got > 0.5) == (expected > 0.5)).float().mean() >= 0.995


def test_a_candidate_that_breaks_the_outputs_is_rejected():
    net = _trained_like(**{"features": TINY_BASIC_UNET["features"]})
    _, info = optimize_for_inference(net, "cpu", (2, 1, 32, 32), candidates=[InferenceOptions(torch.bfloat16)],
                                     min_mask_agreement=1.01, warmup=1, repeats=1)
    assert info["chosen"] == "fp32" and "bf16" in info["errors"]


def test_checkpoints_load_into_the_optimized_network():
    net = _trained_like(**{"features": TINY_BASIC_UNET["features"]})
    fast, _ = optimize_for_inference(net, "cpu", (1, 1, 32, 32), candidates=[InferenceOptions(channels_last=True)],
                                     warmup=1, repeats=1)
    other = get_network("basic_unet", **TINY_BASIC_UNET).eval()
    assert fast.state_dict().keys() == other.state_dict().keys()  # no wrapper / _orig_mod prefixes
    fast.load_state_dict(other.state_dict())
    x = torch.randn(1, 1, 32, 32)
    assert torch.allclose(_probs(fast, x), _probs(other, x), atol=1e-5)


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["basic_unet", "xnet", "lite_unet"])
def test_cuda_fast_path_matches_eager_within_bf16_tolerance(name):
    """On CUDA every candidate (bf16, channels-last, torch.compile) is checked; the chosen one matches eager."""
    net = _trained_like(name).cuda()
    x = torch.randn(8, 1, 256, 256, device="cuda").clamp(-1, 1)
    expected = _probs(net, x)
    fast, info = optimize_for_inference(net, "cuda", (8, 1, 256, 256), warmup=2, repeats=3)
    assert not any("compile" in k for k in info["errors"]), info["errors"]
    got = _probs(fast, x)
    assert (got - expected).abs().mean() <= 0.01
    assert ((got > 0.5) == (expected > 0.5)).float().mean() >= 0.995


def test_cpu_choice_is_untimed_and_deterministic():
    """On CPU the most preferred matching candidate wins without timing runs, so reruns give the same path."""
    net = _trained_like(**{"features": TINY_BASIC_UNET["features"]})
    options = [InferenceOptions(channels_last=True), InferenceOptions(torch.bfloat16)]
    chosen = {optimize_for_inference(net, "cpu", (1, 1, 32, 32), candidates=options)[1]["chosen"] for _ in range(3)}
    assert chosen == {"bf16"}
    _, info = optimize_for_inference(net, "cpu", (1, 1, 32, 32), candidates=options, timed=True, repeats=1)
    assert info["chosen"] in {"fp32", "fp32+channels_last", "bf16"}

