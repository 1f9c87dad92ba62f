"""Every per-image metric of one prediction, as one flat, CSV-ready row.

Column names: ``<metric>_<class name>`` per class (e.g. ``dice_lung``, ``hd95_mm_soft_tissue``; spaces become
underscores), ``<metric>_weighted`` for
the XNet class-frequency-weighted averages, and a headline ``<metric>`` without suffix:

* binary task (one-channel sigmoid output, classes ``background``/``lung``): the headline is the **lung** class;
* multi-class task: the headline is the class-weighted average (weights = ground-truth pixel frequency of the class
  in this image), the way the XNet paper reports its tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pipeline.metrics.calibration import (
    CALIBRATION_BINS,
    calibration_errors,
    class_confidence,
    top_label_calibration_error,
)
from pipeline.metrics.confusion import (
    class_frequencies,
    class_weighted_average,
    confusion_counts,
    confusion_metrics,
)
from pipeline.metrics.overlap import overlap_metrics
from pipeline.metrics.qc import qc_flags
from pipeline.metrics.surface import surface_distances
from pipeline.metrics.utils import (
    as_numpy,
    class_probabilities,
    column_name,
    probabilities_to_labels,
    resolve_class_names,
)

__all__ = ["HEADLINE_METRICS", "evaluate_segmentation"]

HEADLINE_METRICS: tuple[str, ...] = (
    "dice",
    "iou",
    "f1",
    "precision",
    "recall",
    "specificity",
    "accuracy",
    "hd95_px",
    "asd_px",
    "hd95_mm",
    "asd_mm",
    "ece",
)
"""Metrics with a suffix-free headline column."""

_WEIGHTED = ("dice", "iou", "f1", "precision", "recall", "specificity", "accuracy")


def evaluate_segmentation(
    prob: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    pred: np.ndarray | torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    spacing: Sequence[float] | None = None,
    num_bins: int = CALIBRATION_BINS,
    qc: bool = True,
) -> dict[str, Any]:
    """Compute overlap, confusion, surface, calibration and QC metrics of one image.

    Args:
        prob: ``(C, H, W)`` probabilities; ``C == 1`` is a sigmoid lung output, ``C > 1`` softmax.
        label: ``(H, W)`` ground-truth classes (0/1 for binary; 0/255 masks must be mapped to 0/1 first).
        pred: ``(H, W)`` predicted classes after post-processing; by default ``p >= 0.5`` / ``argmax``.
        class_names: names of the ``max(C, 2)`` classes (one name is enough for binary); default
            ``["background", "lung"]`` for binary.
        spacing: ``(row_mm, col_mm)`` pixel spacing, for the millimetre distances; ``None`` leaves them NaN.
        num_bins: calibration bins.
        qc: add the :func:`pipeline.metrics.qc_flags` scores (``flags`` joined by ``";"``, and ``n_flags``).

    Returns:
        Flat ``{column: value}``. Undefined values are NaN (see :mod:`pipeline.metrics.surface` for the empty-mask
        rules; ``surface_status_<class>`` says why a distance is missing). For a binary task the boundary distances
        are computed for the lung only (the background boundary is the same curve).
    """
    names = resolve_class_names(class_names, int(prob.shape[0]))
    k = len(names)
    cp = class_probabilities(prob)
    y = as_numpy(label).astype(np.int64)
    p = probabilities_to_labels(prob) if pred is None else as_numpy(pred).astype(np.int64)
    binary = int(prob.shape[0]) == 1

    per_class: dict[str, np.ndarray] = {}
    per_class.update(overlap_metrics(p, y, k))
    per_class.update(confusion_metrics(confusion_counts(p, y, k)))
    surf = surface_distances(p, y, k, spacing=spacing, classes=[1] if binary else None)
    status = surf.pop("status")
    per_class.update(surf)  # type: ignore[arg-type]
    per_class.update(calibration_errors(cp, y, num_bins=num_bins))
    conf = class_confidence(cp, p, y)
    per_class["confidence"], per_class["conf_accuracy"] = conf["confidence"], conf["accuracy"]
    freq = class_frequencies(y, k)
    per_class["frequency"] = freq / max(freq.sum(), 1.0)

    row: dict[str, Any] = {}
    for metric in HEADLINE_METRICS:
        values = per_class[metric]
        row[metric] = float(values[1]) if binary else class_weighted_average(values, freq)
    top = top_label_calibration_error(cp, y, num_bins=num_bins)
    row.update({f"{r}_top_label": v for r, v in top.items()})
    for metric in _WEIGHTED:
        row[f"{metric}_weighted"] = class_weighted_average(per_class[metric], freq)
    for metric, values in per_class.items():
        for c, name in enumerate(names):
            if not (metric in surf and status[c] == "skipped"):
                row[column_name(metric, name)] = float(values[c])
    for c, name in enumerate(names):
        if status[c] != "skipped":
            row[column_name("surface_status", name)] = status[c]
    if qc:
        q = qc_flags(prob, p)
        flags = q.pop("flags")
        row.update(q)
        row["n_flags"] = len(flags)
        row["flags"] = ";".join(flags)
    return row
