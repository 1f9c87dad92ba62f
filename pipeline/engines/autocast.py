"""bf16 autocast for training on CPUs that compute bf16 natively (AVX512-BF16 / AMX).

MONAI's ``SupervisedTrainer(amp=True)`` enters ``torch.autocast("cuda")`` and a CUDA ``GradScaler``, so its ``amp``
flag does nothing for a CPU run. ``CpuAutocastInferer`` brings mixed precision to CPU training the MONAI way: it is
the trainer's ``inferer``, runs the network's forward pass under ``torch.autocast("cpu", dtype=torch.bfloat16)`` when
the batch lives on the CPU and the CPU has native bf16, and hands the loss float32 logits. Autograd runs the backward
pass in the forward's dtypes; the weights and the optimiser stay float32 (bf16 needs no loss scaling). On CUDA
batches, or CPUs without native bf16, it is MONAI's ``SimpleInferer`` unchanged (CUDA AMP stays the trainer's job).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from monai.inferers import SimpleInferer

from pipeline.hardware import cpu_has_native_bf16

__all__ = ["CpuAutocastInferer", "cpu_has_native_bf16"]

logger = logging.getLogger(__name__)


class CpuAutocastInferer(SimpleInferer):
    """``SimpleInferer`` whose forward pass runs in bf16 autocast on CPUs with native bf16.

    Args:
        enabled: use bf16 autocast for CPU batches. ``"auto"`` (default) enables it where the CPU computes bf16
            natively (:func:`cpu_has_native_bf16`); ``True`` forces it on any CPU (slow without native bf16);
            ``False`` makes this a plain ``SimpleInferer``.

    Example::

        inferer = CpuAutocastInferer()                   # bf16 on an AVX512-BF16 / AMX CPU, float32 elsewhere
        logits = inferer(images, network)                # float32 logits either way
    """

    def __init__(self, enabled: bool | str = "auto") -> None:
        super().__init__()
        if enabled not in (True, False, "auto"):
            raise ValueError(f"CpuAutocastInferer: enabled must be true, false or 'auto', got {enabled!r}")
        self.enabled = cpu_has_native_bf16() if enabled == "auto" else bool(enabled)
        if self.enabled:
            logger.info("CPU batches: forward pass in bf16 autocast (weights and optimiser in float32)")

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``network(inputs, *args, **kwargs)``; in bf16 autocast (float32 result) for CPU inputs when enabled."""
        if not (self.enabled and isinstance(inputs, torch.Tensor) and inputs.device.type == "cpu"):
            return super().__call__(inputs, network, *args, **kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = super().__call__(inputs, network, *args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out
