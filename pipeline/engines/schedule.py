"""Learning-rate schedules selectable by name from a bundle config."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, OneCycleLR

__all__ = ["SCHEDULES", "build_scheduler", "is_epoch_level"]

#: ``constant`` (the papers' recipe), ``cosine`` (per epoch, to 1 % of the start) or ``onecycle`` (per iteration,
#: peaking at ``max_lr``, as the strongest bare-loop baseline used).
SCHEDULES = ("constant", "cosine", "onecycle")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str = "constant",
    max_epochs: int = 100,
    steps_per_epoch: int = 1,
    max_lr: float | None = None,
) -> LRScheduler:
    """Create a learning-rate scheduler.

    Args:
        optimizer: the optimiser.
        name: one of :data:`SCHEDULES`. Defaults to ``"constant"``.
        max_epochs: number of epochs of the run.
        steps_per_epoch: iterations per epoch (``onecycle`` only).
        max_lr: peak learning rate for ``onecycle``; defaults to 10x the optimiser's learning rate.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    if name == "constant":
        return LambdaLR(optimizer, lambda _: 1.0)
    if name == "cosine":
        base = optimizer.param_groups[0]["lr"]
        return CosineAnnealingLR(optimizer, T_max=max(1, max_epochs), eta_min=base * 0.01)
    if name == "onecycle":
        peak = max_lr if max_lr is not None else 10 * optimizer.param_groups[0]["lr"]
        return OneCycleLR(optimizer, max_lr=peak, epochs=max(1, max_epochs), steps_per_epoch=max(1, steps_per_epoch))
    raise ValueError(f"Unknown lr schedule {name!r}. Valid: {', '.join(SCHEDULES)}.")


def is_epoch_level(name: str) -> bool:
    """Whether the schedule steps once per epoch (``onecycle`` steps every iteration)."""
    return name != "onecycle"
