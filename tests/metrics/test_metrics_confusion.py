"""Confusion-matrix metrics (MONAI counts and ratios), class-weighted averages and the K x K matrix."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import (
    class_frequencies,
    class_weighted_average,
    confusion_counts,
    confusion_matrix,
    confusion_metrics,
)

# 10 pixels: ground truth 4 lung, prediction hits 3 of them and adds 1 false positive
LABEL = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]])
PRED = np.array([[1, 1, 1, 0, 1, 0, 0, 0, 0, 0]])


def test_counts_and_ratios_by_hand():
    counts = confusion_counts(PRED, LABEL, 2)
    np.testing.assert_array_equal(counts[1], [3, 1, 5, 1])  # TP, FP, TN, FN of the lung
    np.testing.assert_array_equal(counts[0], [5, 1, 3, 1])
    m = confusion_metrics(counts)
    assert m["precision"][1] == pytest.approx(3 / 4)
    assert m["recall"][1] == pytest.approx(3 / 4)
    assert m["specificity"][1] == pytest.approx(5 / 6)
    assert m["accuracy"][1] == pytest.approx(8 / 10)
    assert m["f1"][1] == pytest.approx(6 / 8)


def test_counts_add_over_images():
    twice = confusion_counts(PRED, LABEL, 2) + confusion_counts(PRED, LABEL, 2)
    m = confusion_metrics(twice, ["recall"])
    assert list(m) == ["recall"]
    assert m["recall"][1] == pytest.approx(3 / 4)


def test_never_predicted_class_gives_nan_precision():
    label = np.array([[0, 1, 2]])
    pred = np.array([[0, 1, 1]])
    m = confusion_metrics(confusion_counts(pred, label, 3))
    assert np.isnan(m["precision"][2])
    assert m["recall"][2] == 0.0


def test_perfect_prediction():
    m = confusion_metrics(confusion_counts(LABEL, LABEL, 2))
    for name in ("f1", "precision", "recall", "specificity", "accuracy"):
        np.testing.assert_allclose(m[name], 1.0)


def test_class_weighted_average_uses_gt_frequency():
    label = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 1, 2]])
    w = class_frequencies(label, 3)
    np.testing.assert_array_equal(w, [6, 3, 1])
    assert class_weighted_average(np.array([1.0, 0.5, 0.0]), w) == pytest.approx((6 + 1.5) / 10)
    # NaN classes are left out, and so are classes with zero weight
    assert class_weighted_average(np.array([1.0, np.nan, 0.0]), w) == pytest.approx(6 / 7)
    assert np.isnan(class_weighted_average(np.array([np.nan, np.nan]), np.array([1.0, 0.0])))


def test_full_confusion_matrix():
    label = np.array([[0, 1, 2, 2]])
    pred = np.array([[0, 2, 2, 1]])
    np.testing.assert_array_equal(confusion_matrix(pred, label, 3), [[1, 0, 0], [0, 0, 1], [0, 1, 1]])
