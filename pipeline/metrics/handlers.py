"""MONAI/ignite validation metrics for the bundle evaluator's ``additional_metrics``.

The evaluator's post-processing must leave, per decollated item:

* ``pred``: the discrete prediction, one channel ``(1, H, W)`` of 0/1 for the binary lung task, one-hot
  ``(K, H, W)`` for the multi-class task;
* ``label``: the ground truth in the same form (binary ``(1, H, W)``, multi-class one-hot);
* ``prob``: (:data:`PROB_KEY`) the probabilities *before* discretisation, same shape as ``pred``, for the
  calibration handler, which cannot work on discrete values.

:func:`pipeline.postprocessing.postprocessing_transforms` builds exactly that chain (activation, copy of the
probabilities to ``prob``, thresholds, optional lung cleanup, one-hot label).

MONAI's workflows attach ``additional_metrics`` only when a ``key_val_metric`` is given (e.g. ``MeanDice``).

Empty masks: MONAI's Hausdorff handler yields NaN for an image whose prediction or ground truth is empty, and the
epoch mean skips NaNs, so the HD95 mean covers only images where both exist; IoU and F1 count those images as 0.
"""

from __future__ import annotations

from typing import Any

from monai.handlers import CalibrationError, ConfusionMatrix, HausdorffDistance, MeanIoUHandler, from_engine
from monai.handlers.ignite_metric import IgniteMetricHandler

from pipeline.keys import Keys
from pipeline.metrics.calibration import CALIBRATION_BINS
from pipeline.metrics.surface import HD_PERCENTILE

__all__ = ["PROB_KEY", "validation_metrics"]

PROB_KEY: str = Keys.PROB.value
"""Key under which post-processing keeps the probabilities for calibration metrics."""


def validation_metrics(
    num_classes: int,
    include_background: bool | None = None,
    hd95: bool = True,
    calibration: bool = True,
    prefix: str = "val_",
    num_bins: int = CALIBRATION_BINS,
    pred_key: str = str(Keys.PRED),
    label_key: str = str(Keys.LABEL),
    prob_key: str = PROB_KEY,
) -> dict[str, IgniteMetricHandler]:
    """Handlers for ``SupervisedEvaluator(additional_metrics=...)``: IoU, F1, HD95 and expected calibration error.

    All are cheap enough for per-epoch validation on a CPU at 256 x 256 (HD95 is the costliest, one distance
    transform per image and class; pass ``hd95=False`` to drop it).

    Args:
        num_classes: number of network output channels: 1 for the binary sigmoid lung task, 3 for XNet.
        include_background: whether channel 0 counts. Default: ``True`` for one channel (it *is* the lung),
            ``False`` for multi-class (channel 0 is background / open beam).
        hd95: add ``<prefix>hd95`` (MONAI ``HausdorffDistance(percentile=95)``, pixels).
        calibration: add ``<prefix>ece`` (MONAI ``CalibrationError``, expected calibration error, reading
            ``prob_key``).
        prefix: prefix of the metric names.
        num_bins: calibration bins.
        pred_key, label_key, prob_key: keys of the engine output.

    Returns:
        ``{"<prefix>iou": MeanIoUHandler, "<prefix>f1": ConfusionMatrix(f1 score), "<prefix>hd95": HausdorffDistance,
        "<prefix>ece": CalibrationError}``, each with ``output_transform=from_engine([...])`` and mean reduction.

    Example (bundle YAML)::

        validate:
          evaluator:
            _target_: SupervisedEvaluator
            additional_metrics: "$pipeline.metrics.validation_metrics(@num_classes)"
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    bg = num_classes == 1 if include_background is None else include_background
    discrete = from_engine([pred_key, label_key])
    metrics: dict[str, Any] = {
        f"{prefix}iou": MeanIoUHandler(include_background=bg, output_transform=discrete),
        f"{prefix}f1": ConfusionMatrix(include_background=bg, metric_name="f1 score", output_transform=discrete),
    }
    if hd95:
        metrics[f"{prefix}hd95"] = HausdorffDistance(
            include_background=bg, percentile=HD_PERCENTILE, output_transform=discrete
        )
    if calibration:
        metrics[f"{prefix}ece"] = CalibrationError(
            num_bins=num_bins,
            include_background=bg,
            calibration_reduction="expected",
            output_transform=from_engine([prob_key, label_key]),
        )
    return metrics
