"""Segmentation metrics on MONAI: overlap, confusion, surface distance, ROC, calibration, QC, validation handlers."""

from pipeline.metrics.aggregation import SegmentationAggregator, describe
from pipeline.metrics.calibration import (
    CALIBRATION_BINS,
    CalibrationAccumulator,
    calibration_errors,
    class_confidence,
    reduce_calibration_bins,
    top_label_calibration_error,
)
from pipeline.metrics.confusion import (
    CONFUSION_METRICS,
    class_frequencies,
    class_weighted_average,
    confusion_counts,
    confusion_matrix,
    confusion_metrics,
)
from pipeline.metrics.evaluation import HEADLINE_METRICS, evaluate_segmentation
from pipeline.metrics.handlers import PROB_KEY, validation_metrics
from pipeline.metrics.overlap import overlap_metrics
from pipeline.metrics.qc import (
    AREA_FRACTION_RANGE,
    ENTROPY_MAX,
    EXPECTED_COMPONENTS,
    LR_RATIO_MIN,
    MIN_COMPONENT_FRACTION,
    QC_FLAGS,
    assess,
    component_count,
    left_right_ratio,
    mean_entropy,
    qc_flags,
    qc_scores,
    uncertainty_dice_correlation,
    uncertainty_score,
)
from pipeline.metrics.qc_reference import QC_SCORES, build_qc_reference, check_reference
from pipeline.metrics.roc import PIXELS_PER_IMAGE, ROC_SAMPLE_SIZE, PixelSampler, ROCCurve, pixel_roc, roc_curve_points
from pipeline.metrics.surface import HD_PERCENTILE, SURFACE_STATUSES, surface_distances
from pipeline.metrics.utils import (
    BINARY_CLASS_NAMES,
    as_numpy,
    class_probabilities,
    column_name,
    num_classes_of,
    one_hot_tensor,
    probabilities_to_labels,
    resolve_class_names,
)

__all__ = [
    "AREA_FRACTION_RANGE",
    "BINARY_CLASS_NAMES",
    "CALIBRATION_BINS",
    "CONFUSION_METRICS",
    "ENTROPY_MAX",
    "EXPECTED_COMPONENTS",
    "HD_PERCENTILE",
    "HEADLINE_METRICS",
    "LR_RATIO_MIN",
    "MIN_COMPONENT_FRACTION",
    "PIXELS_PER_IMAGE",
    "PROB_KEY",
    "QC_FLAGS",
    "ROC_SAMPLE_SIZE",
    "SURFACE_STATUSES",
    "CalibrationAccumulator",
    "PixelSampler",
    "ROCCurve",
    "SegmentationAggregator",
    "as_numpy",
    "calibration_errors",
    "class_confidence",
    "class_frequencies",
    "class_probabilities",
    "class_weighted_average",
    "column_name",
    "component_count",
    "confusion_counts",
    "confusion_matrix",
    "confusion_metrics",
    "describe",
    "evaluate_segmentation",
    "left_right_ratio",
    "mean_entropy",
    "num_classes_of",
    "one_hot_tensor",
    "overlap_metrics",
    "pixel_roc",
    "probabilities_to_labels",
    "qc_flags",
    "reduce_calibration_bins",
    "resolve_class_names",
    "roc_curve_points",
    "surface_distances",
    "top_label_calibration_error",
    "uncertainty_dice_correlation",
    "uncertainty_score",
    "validation_metrics",
]
__all__ += ["QC_SCORES", "assess", "build_qc_reference", "check_reference", "qc_scores"]
