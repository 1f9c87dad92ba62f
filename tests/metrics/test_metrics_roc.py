"""Pixel ROC: curve points by hand, MONAI AUC, fixed-seed bounded sampling."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import PixelSampler, pixel_roc, roc_curve_points


def test_curve_points_by_hand():
    fpr, tpr, thr = roc_curve_points(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert np.isinf(thr[0]) and thr[-1] == pytest.approx(0.6)


def test_ties_make_one_point():
    fpr, tpr, _ = roc_curve_points(np.array([0.5, 0.5, 0.5, 0.5]), np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])


def test_auc_and_curve_agree():
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]], dtype=np.float32)
    labels = np.array([1, 0, 1, 0])
    curves = pixel_roc(probs, labels, ["background", "lung"])
    lung = curves[1]
    assert lung.auc == pytest.approx(0.75)
    assert np.trapezoid(lung.tpr, lung.fpr) == pytest.approx(0.75)
    assert lung.n_pixels == 4 and lung.n_positive == 2
    assert [c.class_name for c in pixel_roc(probs, labels, ["background", "lung"], classes=[1])] == ["lung"]
    d = lung.to_dict()
    assert d["thresholds"][0] is None and d["auc"] == pytest.approx(0.75)


def test_perfect_separation_and_single_label():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]], dtype=np.float32)
    assert pixel_roc(probs, np.array([0, 0, 1]), ["bg", "fg"])[1].auc == pytest.approx(1.0)
    assert np.isnan(pixel_roc(probs, np.array([0, 0, 0]), ["bg", "fg"])[1].auc)


def test_sampler_is_bounded_and_reproducible():
    rng = np.random.default_rng(1)
    images = [(rng.random((2, 32, 32)).astype(np.float32), rng.integers(0, 2, (32, 32))) for _ in range(3)]

    def draw():
        s = PixelSampler(max_pixels=1000, pixels_per_image=500, seed=7)
        for p, y in images:
            s.add(p, y)
        return s.sample()

    (p1, y1), (p2, y2) = draw(), draw()
    assert p1.shape == (1000, 2) and y1.shape == (1000,)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(y1, y2)
    small = PixelSampler(max_pixels=10_000, pixels_per_image=5_000)
    small.add(*images[0])
    assert small.sample()[0].shape == (1024, 2)  # every pixel of a small image is kept
