"""Class-balanced oversampling by group (body part), as the XNet paper balanced its 19 body parts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import WeightedRandomSampler

__all__ = ["group_balanced_sampler", "group_weights"]


def group_weights(items: Sequence[dict[str, Any]], key: str = "group") -> list[float]:
    """Per-item sampling weights that give every group the same total weight (items without ``key`` share one)."""
    groups = [str(item.get(key, "")) for item in items]
    counts = Counter(groups)
    return [1.0 / counts[g] for g in groups]


def group_balanced_sampler(
    items: Sequence[dict[str, Any]],
    per_group: int | None = None,
    key: str = "group",
    seed: int = 0,
) -> WeightedRandomSampler:
    """A sampler that draws every group equally often, with replacement (oversampling small groups).

    Args:
        items: datalist items; each may carry ``key`` (e.g. the body part, added by ``prepare_datalist``).
        per_group: draws per group and epoch; defaults to the size of the largest group (the paper oversampled
            to 500 per body part with augmentation).
        key: item key holding the group. Defaults to ``"group"``.
        seed: seed of the sampler's generator.

    Returns:
        A ``WeightedRandomSampler`` for a ``DataLoader`` (use it instead of ``shuffle=True``).
    """
    counts = Counter(str(item.get(key, "")) for item in items)
    draws = (per_group or max(counts.values())) * len(counts)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(group_weights(items, key), num_samples=draws, replacement=True, generator=generator)
