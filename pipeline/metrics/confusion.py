"""Per-class confusion-matrix metrics (F1, precision, recall, specificity, accuracy) and their class-weighted averages.

The one-vs-rest counts come from MONAI's ``get_confusion_matrix`` and the ratios from
``compute_confusion_matrix_metric``. The XNet paper (Bullock et al., "XNet: a convolutional neural network (CNN)
implementation for medical X-Ray image segmentation suitable for small datasets", SPIE Medical Imaging 2019,
arXiv:1812.00548) reports averages weighted by each class's pixel frequency in the ground truth; see
:func:`class_weighted_average`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_confusion_matrix_metric, get_confusion_matrix

from pipeline.metrics.utils import as_numpy, one_hot_tensor

__all__ = [
    "CONFUSION_METRICS",
    "class_frequencies",
    "class_weighted_average",
    "confusion_counts",
    "confusion_matrix",
    "confusion_metrics",
]

CONFUSION_METRICS: dict[str, str] = {
    "f1": "f1 score",
    "precision": "precision",
    "recall": "sensitivity",
    "specificity": "specificity",
    "accuracy": "accuracy",
}
"""Short column name -> MONAI ``compute_confusion_matrix_metric`` name. Recall is the same as sensitivity (TPR)."""


def confusion_counts(
    pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, num_classes: int
) -> np.ndarray:
    """One-vs-rest counts of every class of one image.

    Args:
        pred: predicted label map ``(H, W)``.
        label: ground-truth label map ``(H, W)``.
        num_classes: ``K``.

    Returns:
        float64 array ``(K, 4)`` holding ``[TP, FP, TN, FN]`` per class (MONAI's order). Counts add up over images,
        which is how dataset-level (pixel-pooled) metrics are formed.
    """
    cm = get_confusion_matrix(one_hot_tensor(pred, num_classes), one_hot_tensor(label, num_classes))
    return cm[0].double().numpy()


def confusion_metrics(counts: np.ndarray | torch.Tensor, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Ratios from one-vs-rest counts.

    Args:
        counts: ``(..., 4)`` ``[TP, FP, TN, FN]`` counts, e.g. from :func:`confusion_counts` or summed over images.
        names: short names from :data:`CONFUSION_METRICS`; all of them when ``None``.

    Returns:
        ``{name: array of shape counts.shape[:-1]}``. A ratio whose denominator is zero is NaN (e.g. precision of a
        class never predicted); for a class absent from both prediction and ground truth, F1 is therefore NaN here,
        whereas :func:`pipeline.metrics.overlap_metrics` scores its Dice as 1.0.
    """
    cm = torch.as_tensor(as_numpy(counts), dtype=torch.float64)
    out: dict[str, np.ndarray] = {}
    for short in names or CONFUSION_METRICS:
        out[short] = compute_confusion_matrix_metric(CONFUSION_METRICS[short], cm).numpy().reshape(cm.shape[:-1])
    return out


def class_frequencies(label: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Pixel count of every class in a ground-truth label map, ``(K,)`` float64 (the weights of the XNet averages)."""
    return np.bincount(as_numpy(label).astype(np.int64).ravel(), minlength=num_classes)[:num_classes].astype(np.float64)


def class_weighted_average(values: np.ndarray, weights: np.ndarray) -> float:
    """Average of per-class values weighted by class pixel frequency, ignoring classes whose value is NaN.

    Args:
        values: ``(K,)`` per-class metric.
        weights: ``(K,)`` non-negative weights, usually :func:`class_frequencies` of the ground truth.

    Returns:
        The weighted mean, or NaN when no class has both a finite value and a positive weight.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(v) & (w > 0)
    if not ok.any():
        return float("nan")
    return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok]))


def confusion_matrix(pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Full ``K x K`` pixel confusion matrix, rows = ground truth, columns = prediction (int64 counts).

    MONAI only provides one-vs-rest counts, so this ``K x K`` table is built here with ``np.bincount``.
    """
    y = as_numpy(label).astype(np.int64).ravel()
    p = as_numpy(pred).astype(np.int64).ravel()
    return np.bincount(y * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
