"""Calibration: per-class and top-label calibration errors, reliability bins, and the XNet per-class confidence.

Three views of the same question, "do the probabilities mean what they say?":

* **Per-class (class-wise) calibration**, MONAI's ``CalibrationErrorMetric``: for every class ``k`` the pixels are
  binned by ``p_k`` and the mean ``p_k`` of a bin is compared with the fraction of its pixels that truly are ``k``.
  Reductions over the bins: expected (ECE, weighted by bin size), average (ACE, unweighted) and maximum (MCE).
* **Top-label calibration** (Guo et al., ICML 2017): the confidence ``max_k p_k`` against whether the arg-max class is
  right. This is the classic reliability diagram; it is MONAI's metric applied to ``(confidence, correct)``.
* **XNet confidence** (Bullock et al. 2019, arXiv:1812.00548): for every class, the mean predicted probability of the
  pixels *assigned* to that class, printed beside the accuracy of those pixels (the fraction whose ground truth is
  that class, i.e. the class precision). A gap between the two is over- or under-confidence of that class.

Binary (one-channel sigmoid) outputs are treated as two classes ``[1 - p, p]`` (see :mod:`pipeline.metrics.utils`).
Per-image values use MONAI's metric directly; dataset-level values pool the pixels of all images exactly by adding
the per-image bin sums of ``calibration_binning`` (:class:`CalibrationAccumulator`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.metrics import CalibrationErrorMetric, calibration_binning

from pipeline.metrics.utils import as_numpy, one_hot_tensor

__all__ = [
    "CALIBRATION_BINS",
    "CalibrationAccumulator",
    "calibration_errors",
    "class_confidence",
    "reduce_calibration_bins",
    "top_label_calibration_error",
]

CALIBRATION_BINS: int = 20
"""Equal-width probability bins on [0, 1] (MONAI's default)."""

_REDUCTIONS: dict[str, str] = {"ece": "expected", "ace": "average", "mce": "maximum"}


def _prob_tensor(class_prob: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(as_numpy(class_prob), dtype=torch.float32)[None]


def _top_label(
    class_prob: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    p = _prob_tensor(class_prob)
    conf, arg = p.max(dim=1, keepdim=True)
    correct = (arg == torch.as_tensor(as_numpy(label).astype(np.int64))[None, None]).float()
    return conf, correct


def _monai_errors(y_pred: torch.Tensor, y: torch.Tensor, num_bins: int) -> dict[str, np.ndarray]:
    out = {}
    for short, mode in _REDUCTIONS.items():
        metric = CalibrationErrorMetric(num_bins=num_bins, calibration_reduction=mode, metric_reduction="none")
        out[short] = metric(y_pred=y_pred, y=y)[0].double().numpy()
    return out


def calibration_errors(
    class_prob: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, num_bins: int = CALIBRATION_BINS
) -> dict[str, np.ndarray]:
    """Per-class ECE, ACE and MCE of one image (MONAI ``CalibrationErrorMetric``).

    Args:
        class_prob: ``(K, H, W)`` class probabilities (:func:`pipeline.metrics.class_probabilities`).
        label: ``(H, W)`` ground-truth classes.
        num_bins: equal-width bins.

    Returns:
        ``{"ece": (K,), "ace": (K,), "mce": (K,)}`` in probability units (0 = perfectly calibrated).

    Example::

        >>> p = np.full((1, 10, 10), 0.9); y = np.zeros((10, 10), int); y[:6] = 1   # 90 % sure, 60 % right
        >>> float(calibration_errors(np.concatenate([1 - p, p]), y)["ece"][1])      # |0.9 - 0.6|
        0.3...
    """
    y = one_hot_tensor(label, int(class_prob.shape[0]))
    return _monai_errors(_prob_tensor(class_prob), y, num_bins)


def top_label_calibration_error(
    class_prob: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, num_bins: int = CALIBRATION_BINS
) -> dict[str, float]:
    """Top-label ECE, ACE and MCE of one image: confidence ``max_k p_k`` against arg-max correctness."""
    conf, correct = _top_label(class_prob, label)
    return {k: float(v[0]) for k, v in _monai_errors(conf, correct, num_bins).items()}


def class_confidence(
    class_prob: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor
) -> dict[str, np.ndarray]:
    """XNet per-class confidence beside the accuracy of the same pixels.

    Args:
        class_prob: ``(K, H, W)`` class probabilities.
        pred: ``(H, W)`` assigned classes (after any thresholds or cleanup).
        label: ``(H, W)`` ground-truth classes.

    Returns:
        ``{"confidence": (K,), "accuracy": (K,), "n_assigned": (K,)}``: mean ``p_k`` over the pixels assigned to
        ``k``, the fraction of those pixels whose ground truth is ``k``, and their number. NaN for a class to which no
        pixel was assigned.
    """
    p = as_numpy(class_prob).astype(np.float64)
    a = as_numpy(pred).astype(np.int64)
    y = as_numpy(label).astype(np.int64)
    k = p.shape[0]
    n = np.bincount(a.ravel(), minlength=k)[:k].astype(np.float64)
    sum_conf = np.array([p[c][a == c].sum() for c in range(k)])
    hits = np.bincount(a[a == y].ravel(), minlength=k)[:k].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"confidence": sum_conf / n, "accuracy": hits / n, "n_assigned": n}


def reduce_calibration_bins(mean_p: np.ndarray, mean_gt: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """ECE / ACE / MCE from reliability bins (``calibration_binning`` outputs, bins on the last axis).

    Uses the same formulas as MONAI's ``CalibrationErrorMetric``; needed for pooled bins, which the metric cannot take.
    Empty bins (NaN means) are skipped; a row with no samples gives NaN.
    """
    gap = np.abs(np.asarray(mean_p, dtype=np.float64) - np.asarray(mean_gt, dtype=np.float64))
    n = np.asarray(counts, dtype=np.float64)
    filled = n > 0
    total = n.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ece = np.where(total > 0, np.where(filled, gap * n, 0.0).sum(-1) / total, np.nan)
        ace = np.where(filled.any(-1), np.where(filled, gap, 0.0).sum(-1) / filled.sum(-1), np.nan)
        mce = np.where(filled.any(-1), np.where(filled, gap, -np.inf).max(-1), np.nan)
    return {"ece": ece, "ace": ace, "mce": mce}


class CalibrationAccumulator:
    """Pools reliability bins and XNet confidence over many images, exactly (no pixel subsampling).

    Args:
        num_classes: ``K``.
        num_bins: equal-width bins.

    Example::

        >>> acc = CalibrationAccumulator(2)
        >>> acc.add(class_prob, pred, label)   # once per image
        >>> acc.result()["per_class"]["ece"]   # pooled per-class ECE
    """

    def __init__(self, num_classes: int, num_bins: int = CALIBRATION_BINS) -> None:
        self.num_classes = int(num_classes)
        self.num_bins = int(num_bins)
        self._class_sums = np.zeros((3, self.num_classes, self.num_bins))  # sum p, sum gt, count
        self._top_sums = np.zeros((3, self.num_bins))
        self._conf = np.zeros((3, self.num_classes))  # sum confidence, hits, n assigned

    @staticmethod
    def _sums(y_pred: torch.Tensor, y: torch.Tensor, num_bins: int) -> np.ndarray:
        mean_p, mean_gt, counts = (t[0].double().numpy() for t in calibration_binning(y_pred, y, num_bins=num_bins))
        return np.stack([np.nan_to_num(mean_p) * counts, np.nan_to_num(mean_gt) * counts, counts])

    def add(
        self, class_prob: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor
    ) -> None:
        """Add one image: ``class_prob`` ``(K, H, W)``, ``pred`` and ``label`` ``(H, W)``."""
        y = one_hot_tensor(label, self.num_classes)
        self._class_sums += self._sums(_prob_tensor(class_prob), y, self.num_bins)
        conf, correct = _top_label(class_prob, label)
        self._top_sums += self._sums(conf, correct, self.num_bins)[:, 0]
        cc = class_confidence(class_prob, pred, label)
        n = cc["n_assigned"]
        self._conf += np.stack([np.nan_to_num(cc["confidence"]) * n, np.nan_to_num(cc["accuracy"]) * n, n])

    @staticmethod
    def _bins(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[0] / sums[2], sums[1] / sums[2], sums[2]

    def result(self) -> dict[str, Any]:
        """Pooled calibration of everything added.

        Returns:
            ``{"per_class": {"ece", "ace", "mce", "mean_p", "mean_gt", "counts"}, "top_label": {...same...},
            "confidence": (K,), "accuracy": (K,), "bin_edges": (num_bins + 1,)}``; bin arrays have ``num_bins`` on the
            last axis, empty bins NaN.
        """
        cls = dict(zip(("mean_p", "mean_gt", "counts"), self._bins(self._class_sums)))
        top = dict(zip(("mean_p", "mean_gt", "counts"), self._bins(self._top_sums)))
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence, accuracy = self._conf[0] / self._conf[2], self._conf[1] / self._conf[2]
        return {
            "per_class": {**reduce_calibration_bins(cls["mean_p"], cls["mean_gt"], cls["counts"]), **cls},
            "top_label": {**reduce_calibration_bins(top["mean_p"], top["mean_gt"], top["counts"]), **top},
            "confidence": confidence,
            "accuracy": accuracy,
            "bin_edges": np.linspace(0.0, 1.0, self.num_bins + 1),
        }
