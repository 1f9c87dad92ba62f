"""Dataset-level metrics: per-image rows plus pixel-pooled confusion, calibration and ROC over many images."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pipeline.metrics.calibration import CALIBRATION_BINS, CalibrationAccumulator
from pipeline.metrics.confusion import (
    class_weighted_average,
    confusion_counts,
    confusion_matrix,
    confusion_metrics,
)
from pipeline.metrics.evaluation import evaluate_segmentation
from pipeline.metrics.qc import QC_FLAGS, uncertainty_dice_correlation
from pipeline.metrics.roc import PIXELS_PER_IMAGE, ROC_SAMPLE_SIZE, PixelSampler, ROCCurve, pixel_roc
from pipeline.metrics.utils import (
    as_numpy,
    class_probabilities,
    column_name,
    probabilities_to_labels,
    resolve_class_names,
)

__all__ = ["SegmentationAggregator", "describe"]


def describe(values: Sequence[float]) -> dict[str, float | int]:
    """NaN-aware summary of one per-image column: ``n`` (finite values), mean, std, median, q25, q75, min, max."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, **{k: math.nan for k in ("mean", "std", "median", "q25", "q75", "min", "max")}}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "median": float(med),
        "q25": float(q25),
        "q75": float(q75),
        "min": float(v.min()),
        "max": float(v.max()),
    }


class SegmentationAggregator:
    """Evaluates images one at a time and keeps what dataset-level numbers need.

    Per image it stores the :func:`pipeline.metrics.evaluate_segmentation` row; across images it adds up one-vs-rest
    confusion counts and the ``K x K`` confusion matrix (pixel-pooled metrics), reliability bins
    (:class:`pipeline.metrics.CalibrationAccumulator`, exact) and a fixed-seed pixel sample for ROC
    (:class:`pipeline.metrics.PixelSampler`, at most ``roc_sample_size`` pixels).

    Args:
        class_names: names of the ``K`` classes (one name for a binary output is enough).
        num_channels: channels of the network probabilities, 1 for a sigmoid lung output.
        num_bins: calibration bins.
        roc_sample_size: pixels per evaluation for ROC/AUC (default 200,000).
        pixels_per_image: pixels drawn from each image into the ROC pool.
        seed: seed of the ROC pixel sampling.

    Example::

        >>> agg = SegmentationAggregator(["lung"], num_channels=1)
        >>> for case in cases:
        ...     agg.add(case.prob, case.label, case_id=case.case_id, spacing=case.spacing)
        >>> summary = agg.summary()
    """

    def __init__(
        self,
        class_names: Sequence[str] | None,
        num_channels: int,
        num_bins: int = CALIBRATION_BINS,
        roc_sample_size: int = ROC_SAMPLE_SIZE,
        pixels_per_image: int = PIXELS_PER_IMAGE,
        seed: int = 0,
    ) -> None:
        self.class_names = resolve_class_names(class_names, num_channels)
        self.num_channels = int(num_channels)
        self.num_classes = len(self.class_names)
        self.num_bins = int(num_bins)
        self.rows: list[dict[str, Any]] = []
        self._counts = np.zeros((self.num_classes, 4))
        self._matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._calibration = CalibrationAccumulator(self.num_classes, num_bins)
        self._sampler = PixelSampler(roc_sample_size, pixels_per_image, seed)
        self._curves: list[ROCCurve] | None = None

    def add(
        self,
        prob: np.ndarray | torch.Tensor,
        label: np.ndarray | torch.Tensor,
        pred: np.ndarray | torch.Tensor | None = None,
        spacing: Sequence[float] | None = None,
        case_id: str | None = None,
    ) -> dict[str, Any]:
        """Evaluate one image (arguments as in :func:`pipeline.metrics.evaluate_segmentation`) and return its row."""
        if int(prob.shape[0]) != self.num_channels:
            raise ValueError(f"expected {self.num_channels} probability channels, got {int(prob.shape[0])}.")
        y = as_numpy(label).astype(np.int64)
        p = probabilities_to_labels(prob) if pred is None else as_numpy(pred).astype(np.int64)
        row = {"case_id": case_id if case_id is not None else str(len(self.rows))}
        row.update(evaluate_segmentation(prob, y, p, self.class_names, spacing, self.num_bins))
        self.rows.append(row)
        cp = class_probabilities(prob)
        self._counts += confusion_counts(p, y, self.num_classes)
        self._matrix += confusion_matrix(p, y, self.num_classes)
        self._calibration.add(cp, p, y)
        self._sampler.add(cp, y)
        self._curves = None
        return row

    def __len__(self) -> int:
        return len(self.rows)

    def confusion_matrix(self, normalize: bool = True) -> np.ndarray:
        """Pooled ``K x K`` matrix (rows ground truth, columns prediction); row-normalised by default."""
        if not normalize:
            return self._matrix.copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._matrix / self._matrix.sum(axis=1, keepdims=True)

    def calibration(self) -> dict[str, Any]:
        """Pooled reliability bins and calibration errors (see :meth:`CalibrationAccumulator.result`)."""
        return self._calibration.result()

    def roc(self) -> list[ROCCurve]:
        """ROC curve and AUC per class on the pixel sample (binary: the lung class only); cached until ``add``."""
        if self._curves is None:
            classes = [1] if self.num_channels == 1 else None
            self._curves = pixel_roc(*self._sampler.sample(), self.class_names, classes=classes)
        return self._curves

    def column(self, name: str) -> np.ndarray:
        """One numeric per-image column as a float array (NaN where missing)."""
        return np.array([float(r.get(name, math.nan)) for r in self.rows], dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """Dataset-level results (plain Python types; NaN stays NaN, see :func:`pipeline.reporting.to_json_safe`).

        Keys: ``n_images``, ``class_names``, ``headline_class`` (``"lung"`` for binary, ``"weighted"`` otherwise),
        ``per_image`` (``describe`` of every numeric column), ``pooled`` (pixel-pooled confusion metrics per class and
        class-weighted, ``confusion_matrix`` counts and row-normalised), ``calibration`` (pooled per-class and top-label
        ECE/ACE/MCE, XNet confidence vs accuracy per class), ``roc`` (AUC per class, sample size, seed),
        ``qc`` (count of every flag, flagged images), ``surface_status`` (counts per class) and
        ``uncertainty_dice_spearman``.

        Raises:
            ValueError: when no image was added.
        """
        if not self.rows:
            raise ValueError("no image was added.")
        names = self.class_names
        numeric = [k for k, v in self.rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        freq = self._matrix.sum(axis=1).astype(np.float64)
        pooled_metrics = confusion_metrics(self._counts)
        pooled: dict[str, Any] = {m: dict(zip(names, map(float, v))) for m, v in pooled_metrics.items()}
        pooled["dice"] = pooled["f1"]  # pixel-pooled Dice equals pooled F1
        pooled["weighted"] = {m: class_weighted_average(v, freq) for m, v in pooled_metrics.items()}
        pooled["class_frequency"] = dict(zip(names, map(float, freq / max(freq.sum(), 1.0))))
        pooled["confusion_matrix"] = self._matrix.tolist()
        pooled["confusion_matrix_normalized"] = np.round(self.confusion_matrix(), 6).tolist()

        cal = self.calibration()
        calibration = {
            "num_bins": self.num_bins,
            "per_class": {r: dict(zip(names, map(float, cal["per_class"][r]))) for r in ("ece", "ace", "mce")},
            "top_label": {r: float(cal["top_label"][r]) for r in ("ece", "ace", "mce")},
            "confidence": dict(zip(names, map(float, cal["confidence"]))),
            "accuracy_of_assigned": dict(zip(names, map(float, cal["accuracy"]))),
        }
        curves = self.roc()
        roc = {
            "auc": {c.class_name: c.auc for c in curves},
            "n_pixels": curves[0].n_pixels,
            "max_pixels": self._sampler.max_pixels,
            "pixels_per_image": self._sampler.pixels_per_image,
            "seed": self._sampler.seed,
        }
        flag_counts = Counter(f for r in self.rows for f in str(r.get("flags", "")).split(";") if f)
        qc = {
            "flag_counts": {f: int(flag_counts.get(f, 0)) for f in QC_FLAGS},
            "n_flagged": int(sum(1 for r in self.rows if r.get("n_flags", 0))),
            "flagged_cases": [r["case_id"] for r in self.rows if r.get("n_flags", 0)],
        }
        status = {
            n: dict(Counter(str(r[column_name("surface_status", n)]) for r in self.rows))
            for n in names
            if column_name("surface_status", n) in self.rows[0]
        }
        return {
            "n_images": len(self.rows),
            "class_names": names,
            "headline_class": names[1] if self.num_channels == 1 else "weighted",
            "per_image": {k: describe(self.column(k)) for k in numeric},
            "pooled": pooled,
            "calibration": calibration,
            "roc": roc,
            "qc": qc,
            "surface_status": status,
            "uncertainty_dice_spearman": uncertainty_dice_correlation(
                self.column("uncertainty_score"), self.column("dice")
            ),
        }
