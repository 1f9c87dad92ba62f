"""Per-class Dice and IoU of one image, computed by MONAI's ``compute_dice`` and ``compute_iou``."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice, compute_iou

from pipeline.metrics.utils import one_hot_tensor

__all__ = ["overlap_metrics"]


def overlap_metrics(
    pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, num_classes: int
) -> dict[str, np.ndarray]:
    """Dice and IoU of every class of one image.

    Empty masks follow MONAI's ``ignore_empty=False`` convention, so a case never drops out of a mean silently:
    a class absent from both the ground truth and the prediction scores **1.0** (a perfect "nothing there"), and a
    class absent from exactly one of them scores **0.0**.

    Args:
        pred: predicted label map ``(H, W)`` with values in ``[0, num_classes)``.
        label: ground-truth label map ``(H, W)``, same value range.
        num_classes: ``K``; use 2 for a binary lung task (0 background, 1 lung).

    Returns:
        ``{"dice": (K,), "iou": (K,)}`` float64 arrays indexed by class.

    Example::

        >>> m = overlap_metrics(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]), 2)
        >>> m["dice"][1]  # 2 * 2 / (3 + 2)
        0.8
    """
    yp = one_hot_tensor(pred, num_classes)
    y = one_hot_tensor(label, num_classes)
    dice = compute_dice(yp, y, include_background=True, ignore_empty=False, num_classes=num_classes)
    iou = compute_iou(yp, y, include_background=True, ignore_empty=False)
    return {"dice": dice[0].double().numpy(), "iou": iou[0].double().numpy()}
