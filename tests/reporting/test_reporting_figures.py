"""Report figures: each plot function returns a Figure with the expected axes, labels and artists."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import CalibrationAccumulator, class_probabilities, pixel_roc, probabilities_to_labels
from pipeline.reporting import (
    GalleryEntry,
    plot_confidence_histogram,
    plot_confusion_matrix,
    plot_dice_histogram,
    plot_overlay_gallery,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_uncertainty_vs_dice,
)

NAMES = ["background", "lung"]


@pytest.fixture(scope="module")
def calibration():
    rng = np.random.default_rng(0)
    p = rng.random((1, 32, 32)).astype(np.float32)
    y = (rng.random((32, 32)) < p[0]).astype(int)
    acc = CalibrationAccumulator(2, num_bins=10)
    acc.add(class_probabilities(p), probabilities_to_labels(p), y)
    return acc.result()


def _labels(ax):
    return ax.get_xlabel(), ax.get_ylabel()


def test_reliability_diagram(calibration):
    fig = plot_reliability_diagram(calibration, NAMES)
    top, per_class = fig.axes
    assert _labels(top) == ("Confidence (max class probability)", "Accuracy")
    assert _labels(per_class) == ("Mean predicted probability", "Observed frequency")
    assert "ECE" in top.get_title()
    assert len(per_class.get_lines()) == 1 + len(NAMES)  # diagonal + one curve per class


def test_confidence_histogram(calibration):
    ax = plot_confidence_histogram(calibration).axes[0]
    assert _labels(ax) == ("Confidence (max class probability)", "Fraction of pixels")
    assert ax.get_yscale() == "log"


def test_roc_curves():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]], np.float32)
    fig = plot_roc_curves(pixel_roc(probs, np.array([0, 1, 0, 1]), NAMES, classes=[1]))
    linear, log = fig.axes
    assert _labels(linear) == ("False positive rate", "True positive rate")
    assert log.get_xscale() == "log"
    assert "AUC 0.7500" in linear.get_legend().get_texts()[0].get_text()


def test_confusion_matrix_and_histograms():
    ax = plot_confusion_matrix(np.array([[0.9, 0.1], [0.2, 0.8]]), NAMES).axes[0]
    assert _labels(ax) == ("Predicted class", "True class")
    assert sorted(t.get_text() for t in ax.texts) == ["0.100", "0.200", "0.800", "0.900"]
    ax = plot_dice_histogram([0.95, 0.97, np.nan, 0.99], "Dice (lung)").axes[0]
    assert _labels(ax) == ("Dice (lung)", "Images") and "n = 3" in ax.get_title()
    ax = plot_uncertainty_vs_dice([0.1, 0.2], [0.9, 0.8], -1.0).axes[0]
    assert ax.get_ylabel() == "Dice" and "-1.000" in ax.get_title()


def test_overlay_gallery():
    y = np.zeros((32, 32), int)
    y[8:24, 4:14] = 1
    y[8:24, 18:28] = 1
    entries = [GalleryEntry(f"c{i}", tag, 0.9, np.random.rand(32, 32), y, y) for i, tag in enumerate(["best", "worst"])]
    fig = plot_overlay_gallery(entries, NAMES)
    assert len(fig.axes) == 6
    assert [fig.axes[i].get_ylabel() for i in (0, 2, 4)] == ["Image", "Ground truth", "Prediction"]
    assert fig.axes[0].get_title().startswith("best: c0")
