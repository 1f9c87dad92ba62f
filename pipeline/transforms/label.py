"""Mask normalisation: stored masks (0/255, 0/1, or class indices) → what the loss and metrics expect."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["NormalizeLabel", "NormalizeLabeld"]


class NormalizeLabel(Transform):
    """Binarise a lung mask, or check and cast a class-index mask.

    * ``num_classes == 1`` (binary, one sigmoid channel): foreground is any value above half the mask's scale, where
      the scale is 255 for masks stored as 0/255 and 1 for masks stored as 0/1. Anti-aliased grey edges are split at
      the midpoint.
    * ``num_classes > 1`` (softmax): values are class indices ``0 .. num_classes - 1``; anything else is an error.

    Args:
        num_classes: number of network output channels (1 for binary). Defaults to 1.

    Raises:
        ValueError: a multi-class mask holds a value outside ``0 .. num_classes - 1``; the message names the file.
    """

    def __init__(self, num_classes: int = 1) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.num_classes = num_classes

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return a float tensor of 0/1 (binary) or class indices (multi-class), same shape and metadata."""
        if self.num_classes == 1:
            scale = 255.0 if float(mask.max()) > 1.0 else 1.0
            out = (mask > 0.5 * scale).to(torch.float32)
        else:
            out = torch.round(mask).to(torch.float32)
            if float(out.min()) < 0 or float(out.max()) > self.num_classes - 1:
                name = mask.meta.get("filename_or_obj", "mask") if isinstance(mask, MetaTensor) else "mask"
                raise ValueError(
                    f"{name}: mask values {sorted(torch.unique(out).tolist())[:10]} are not class indices "
                    f"0..{self.num_classes - 1}. Store masks as class indices (0 open beam, 1 soft tissue, 2 bone) "
                    "or set num_classes to match."
                )
        return out


class NormalizeLabeld(MapTransform):
    """Dictionary version of :class:`NormalizeLabel`."""

    def __init__(self, keys: KeysCollection, num_classes: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeLabel(num_classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d
