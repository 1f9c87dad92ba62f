"""Pick the fastest correct way to run a segmentation network for inference on the device at hand.

On CUDA the candidates are combinations of bf16 (fp16 where bf16 is unsupported) autocast, channels-last memory
layout and ``torch.compile``. Each is timed on an example batch and checked against the eager fp32 output: the
fastest one whose probabilities stay within a low-precision tolerance of eager wins. On CPU the eager fp32 network is
returned as it is (compilation takes longer than a typical CPU job saves, and bf16 is slow on CPUs without native
bf16); ``cpu_bf16=True`` also tries bf16 autocast on CPUs that have it (AVX512-BF16 / AMX). On CPU the choice is not
timed: bf16 is taken whenever it matches fp32 (it ran every network 1.5-2.4x faster on a 2-core AVX512-BF16 machine,
``docs/performance.md``), so the same weights on the same machine always give the same path and the same masks.

Measured on one H100 at 256², batch 256 (``docs/performance.md``): ``torch.compile`` + channels-last + bf16 roughly
doubles BasicUNet over eager bf16; channels-last alone is slower; XNet gains from compile only.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from pipeline.hardware import cpu_has_native_bf16

__all__ = ["InferenceOptions", "OptimizedNetwork", "candidate_options", "cpu_has_native_bf16", "optimize_for_inference"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceOptions:
    """One way of running a network.

    Attributes:
        dtype: autocast dtype (``torch.bfloat16`` / ``torch.float16``), or ``None`` for fp32.
        channels_last: NHWC memory layout for the weights and the input.
        compile: wrap the network in ``torch.compile``.
    """

    dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    @property
    def name(self) -> str:
        """A short label such as ``"bf16+channels_last+compile"`` (``"fp32"`` for eager fp32)."""
        parts = [str(self.dtype).replace("torch.", "").replace("bfloat16", "bf16").replace("float16", "fp16")
                 if self.dtype is not None else "fp32"]
        parts += ["channels_last"] * self.channels_last + ["compile"] * self.compile
        return "+".join(parts)


class OptimizedNetwork(nn.Module):
    """A network run with :class:`InferenceOptions`; returns float32 logits like the eager network.

    Weights stay those of the wrapped network: ``state_dict`` / ``load_state_dict`` go to it directly (no
    ``_orig_mod.`` prefixes from ``torch.compile``), so checkpoints load into the optimised network unchanged.

    Args:
        network: the network (already on its device, in eval mode); it is converted in place to the layout asked.
        options: how to run it.
        compile_kwargs: arguments for ``torch.compile`` (e.g. ``{"mode": "max-autotune"}``).
    """

    def __init__(self, network: nn.Module, options: InferenceOptions, compile_kwargs: dict[str, Any] | None = None):
        super().__init__()
        self.options = options
        if options.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        self._run: nn.Module = torch.compile(network, **(compile_kwargs or {})) if options.compile else network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (float32) for a ``(B, C, H, W)`` batch."""
        if self.options.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.options.dtype is None:
            return self._run(x).float()
        with torch.autocast(x.device.type, dtype=self.options.dtype):
            return self._run(x).float()

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The wrapped network's state dict."""
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Any, strict: bool = True, assign: bool = False
    ) -> Any:
        """Load weights into the wrapped network (compiled graphs see them: parameters are shared)."""
        return self.network.load_state_dict(state_dict, strict=strict, assign=assign)


def candidate_options(
    device: torch.device, allow_compile: bool = True, low_precision: bool = True, cpu_bf16: bool = False
) -> list[InferenceOptions]:
    """The options worth trying on ``device``.

    Args:
        device: where the network runs. On CPU eager fp32 (plus bf16 with ``cpu_bf16`` on a CPU with native bf16).
        allow_compile: include ``torch.compile`` (with and without channels-last) on CUDA.
        low_precision: use bf16 autocast (fp16 where the GPU lacks bf16); False keeps fp32 throughout.
        cpu_bf16: on CPU, also offer bf16 autocast when the CPU has native bf16 (opt-in).
    """
    if device.type != "cuda":
        if cpu_bf16 and low_precision and cpu_has_native_bf16():
            return [InferenceOptions(), InferenceOptions(torch.bfloat16)]
        return [InferenceOptions()]
    low = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if low_precision else None
    out = [InferenceOptions(), InferenceOptions(low), InferenceOptions(low, channels_last=True)]
    if allow_compile:
        out += [InferenceOptions(low, compile=True), InferenceOptions(low, channels_last=True, compile=True)]
    return list(dict.fromkeys(out))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _time(network: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> tuple[torch.Tensor, float]:
    for _ in range(warmup):
        out = network(x)
    _sync(x.device)
    start = time.perf_counter()
    for _ in range(repeats):
        out = network(x)
    _sync(x.device)
    return out, (time.perf_counter() - start) / repeats


def optimize_for_inference(
    network: nn.Module,
    device: str | torch.device,
    example_shape: Sequence[int],
    candidates: Sequence[InferenceOptions] | None = None,
    allow_compile: bool = True,
    low_precision: bool = True,
    cpu_bf16: bool = False,
    tolerance: float = 0.01,
    min_mask_agreement: float = 0.995,
    warmup: int = 3,
    repeats: int = 10,
    compile_kwargs: dict[str, Any] | None = None,
    timed: bool | None = None,
    example: torch.Tensor | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Return the fastest way to run ``network`` whose outputs match eager fp32, with what was measured.

    Every candidate runs on a copy of the network with a random example batch: timed after ``warmup`` calls (which
    include compilation), then checked against eager fp32: the mean absolute difference of the sigmoid
    probabilities must stay within ``tolerance`` and the masks thresholded at 0.5 must agree on at least
    ``min_mask_agreement`` of the pixels (bf16 keeps 8 bits of mantissa: pixels whose logit is within about 1 % of
    zero may flip). A candidate that fails to run or to match is reported and skipped.

    Args:
        network: the network, returning logits.
        device: where it will run.
        example_shape: ``(B, C, H, W)`` of a typical batch (the batch size the caller will use).
        candidates: options to try; defaults to :func:`candidate_options` for ``device``. Eager fp32 is always the
            reference and the fallback.
        allow_compile: include ``torch.compile`` candidates (CUDA only by default).
        low_precision: allow bf16 / fp16 autocast candidates (pass the caller's AMP setting).
        cpu_bf16: on CPU, also try bf16 autocast where the CPU has native bf16 (opt-in; pass a batch-1
            ``example_shape`` and few ``repeats`` to keep start-up short).
        tolerance: largest allowed mean absolute difference of probabilities from eager fp32. Defaults to 0.01.
        min_mask_agreement: smallest allowed share of mask pixels equal to eager fp32's. Defaults to 0.995.
        warmup: untimed calls per candidate.
        repeats: timed calls per candidate.
        compile_kwargs: arguments for ``torch.compile``.
        timed: choose the fastest matching candidate (True) or the last matching one in ``candidates`` order, i.e.
            the most preferred, without timing runs (False). Defaults to timing on CUDA only, so that CPU runs make
            a deterministic choice.
        example: the batch to time and check on (e.g. real preprocessed radiographs, as the Predictor passes);
            defaults to seeded noise in [-1, 1] of ``example_shape``.

    Returns:
        ``(network, info)``: an :class:`OptimizedNetwork` (eval mode, on ``device``) and ``info`` with ``chosen``
        (the option name), ``options``, per candidate ``seconds_per_batch``, ``max_prob_diff``, ``mean_prob_diff``
        and ``mask_agreement``, and ``errors`` (candidates that failed or did not match).

    Examples::

        >>> net, info = optimize_for_inference(get_network("basic_unet"), "cuda", (64, 1, 256, 256))
        >>> info["chosen"]
        'bf16+channels_last+compile'
    """
    device = torch.device(device)
    base = network.to(device).eval()
    options = (list(candidates) if candidates is not None
               else candidate_options(device, allow_compile, low_precision, cpu_bf16))
    reference_options = InferenceOptions()
    options = [reference_options] + [o for o in dict.fromkeys(options) if o != reference_options]
    if len(options) == 1:  # nothing to choose from (CPU): no timing runs
        logger.info("inference path on %s: eager fp32", device)
        return OptimizedNetwork(base, reference_options), {"device": str(device), "chosen": reference_options.name,
                                                            "options": reference_options, "errors": {}}
    timed = device.type == "cuda" if timed is None else bool(timed)
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = (torch.as_tensor(example, dtype=torch.float32) if example is not None
         else torch.randn(tuple(example_shape), generator=generator).clamp(-1, 1)).to(device)
    example_shape = tuple(x.shape)
    info: dict[str, Any] = {"device": str(device), "example_shape": list(example_shape), "seconds_per_batch": {},
                            "max_prob_diff": {}, "mean_prob_diff": {}, "mask_agreement": {}, "errors": {}}
    reference: torch.Tensor | None = None
    best: tuple[float, InferenceOptions, OptimizedNetwork] | None = None
    for opt in options:
        try:
            candidate = OptimizedNetwork(copy.deepcopy(base) if opt != reference_options else base, opt,
                                         compile_kwargs).eval()
            if timed:
                out, seconds = _time(candidate, x, warmup if opt.compile or device.type == "cuda" else 1, repeats)
            else:
                out, seconds = _time(candidate, x, 0, 1)
        except Exception as err:  # a backend that cannot compile or run this option: report and go on
            info["errors"][opt.name] = f"{type(err).__name__}: {err}"[:500]
            logger.warning("inference option %s failed: %s", opt.name, info["errors"][opt.name])
            continue
        prob = torch.sigmoid(out.float())
        if reference is None:
            reference = prob
        diff = (prob - reference).abs()
        agreement = float(((prob > 0.5) == (reference > 0.5)).float().mean())
        info["seconds_per_batch"][opt.name] = seconds
        info["max_prob_diff"][opt.name], info["mean_prob_diff"][opt.name] = float(diff.max()), float(diff.mean())
        info["mask_agreement"][opt.name] = agreement
        if float(diff.mean()) > tolerance or agreement < min_mask_agreement:
            info["errors"][opt.name] = (f"outputs differ from eager fp32: mean probability difference "
                                        f"{float(diff.mean()):.3g} (max {tolerance}), mask agreement {agreement:.4f} "
                                        f"(min {min_mask_agreement})")
            continue
        if best is None or not timed or seconds < best[0]:
            best = (seconds, opt, candidate)
    if best is None:  # even eager failed: let the caller see the real error when it runs the network
        return OptimizedNetwork(base, reference_options), {**info, "chosen": reference_options.name}
    _, chosen, optimized = best
    info["chosen"], info["options"] = chosen.name, chosen
    logger.info("inference path on %s: %s (%.2f ms per batch of %d)", device, chosen.name, 1e3 * best[0],
                example_shape[0])
    return optimized, info
