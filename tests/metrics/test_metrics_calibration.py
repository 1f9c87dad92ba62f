"""Calibration: MONAI calibration errors on known mis-calibrated input, pooled bins, XNet confidence."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import (
    CalibrationAccumulator,
    calibration_errors,
    class_confidence,
    class_probabilities,
    probabilities_to_labels,
    reduce_calibration_bins,
    top_label_calibration_error,
)


def _ninety_percent_sure_sixty_percent_right():
    prob = np.full((1, 10, 10), 0.9, dtype=np.float32)
    label = np.zeros((10, 10), int)
    label[:6] = 1
    return prob, label


def test_known_miscalibration_ece_is_0_3():
    prob, label = _ninety_percent_sure_sixty_percent_right()
    errs = calibration_errors(class_probabilities(prob), label)
    for reduction in ("ece", "ace", "mce"):  # one filled bin: all three agree
        np.testing.assert_allclose(errs[reduction], [0.3, 0.3], atol=1e-5)
    top = top_label_calibration_error(class_probabilities(prob), label)
    assert top["ece"] == pytest.approx(0.3, abs=1e-5)


def test_hard_correct_predictions_are_calibrated():
    label = np.zeros((8, 8), int)
    label[2:6, 2:6] = 1
    errs = calibration_errors(class_probabilities(label[None].astype(np.float32)), label)
    np.testing.assert_allclose(errs["ece"], 0.0, atol=1e-6)


def test_pooled_bins_match_monai_on_concatenated_images():
    rng = np.random.default_rng(0)
    probs = [rng.random((1, 16, 16)).astype(np.float32) for _ in range(2)]
    labels = [(rng.random((16, 16)) < p[0] ** 2).astype(int) for p in probs]
    acc = CalibrationAccumulator(2, num_bins=10)
    for p, y in zip(probs, labels):
        acc.add(class_probabilities(p), probabilities_to_labels(p), y)
    pooled = acc.result()
    whole_p = np.concatenate(probs, axis=2)
    whole_y = np.concatenate(labels, axis=1)
    direct = calibration_errors(class_probabilities(whole_p), whole_y, num_bins=10)
    for reduction in ("ece", "ace", "mce"):
        np.testing.assert_allclose(pooled["per_class"][reduction], direct[reduction], atol=1e-5)
    top = top_label_calibration_error(class_probabilities(whole_p), whole_y, num_bins=10)
    assert pooled["top_label"]["ece"] == pytest.approx(top["ece"], abs=1e-5)
    assert pooled["per_class"]["counts"].sum() == 2 * 2 * 16 * 16
    assert pooled["bin_edges"].shape == (11,)


def test_reduce_bins_with_empty_bins():
    mean_p = np.array([0.1, np.nan, 0.9])
    mean_gt = np.array([0.0, np.nan, 0.6])
    counts = np.array([1.0, 0.0, 3.0])
    r = reduce_calibration_bins(mean_p, mean_gt, counts)
    assert r["ece"] == pytest.approx((0.1 * 1 + 0.3 * 3) / 4)
    assert r["ace"] == pytest.approx(0.2)
    assert r["mce"] == pytest.approx(0.3)
    assert np.isnan(reduce_calibration_bins(mean_p, mean_gt, np.zeros(3))["ece"])


def test_xnet_class_confidence_by_hand():
    # pixels assigned to class 1 have p1 = 0.8 and 0.6; one of the two is truly class 1
    cp = np.array([[[0.2, 0.4, 0.9]], [[0.8, 0.6, 0.1]]])
    pred = np.array([[1, 1, 0]])
    label = np.array([[1, 0, 0]])
    c = class_confidence(cp, pred, label)
    np.testing.assert_allclose(c["confidence"], [0.9, 0.7])
    np.testing.assert_allclose(c["accuracy"], [1.0, 0.5])
    np.testing.assert_array_equal(c["n_assigned"], [1, 2])
