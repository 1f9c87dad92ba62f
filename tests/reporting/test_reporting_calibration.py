"""Calibration in the report: ECE, ACE and MCE side by side, and a variant applying a model's calibration."""

from __future__ import annotations

import numpy as np

from pipeline.reporting.calibration_comparison import plot_calibration_comparison
from pipeline.reporting.case import ReportVariant


def test_three_panels_one_bar_per_method_and_set():
    results = {m: {s: {"ece": 0.01 * i, "ace": 0.02 * i, "mce": 0.05 * i} for s in ("jsrt_test", "openist")}
               for i, m in enumerate(("none", "temperature", "isotonic"), start=1)}
    fig = plot_calibration_comparison(results)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["ECE", "ACE", "MCE"]
    assert all(len(ax.patches) == 6 for ax in axes)
    assert abs(axes[2].patches[-1].get_height() - 0.15) < 1e-9


def test_variant_applies_a_calibration_description():
    prob = np.linspace(0.01, 0.99, 64, dtype=np.float32).reshape(1, 8, 8)
    cal = {"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.0, 0.2, 1.0]}
    p, pred = ReportVariant("calibrated", calibration=cal).apply(prob)
    np.testing.assert_allclose(p, np.interp(prob, cal["x"], cal["y"]), atol=1e-6)
    assert pred.sum() == (p[0] > 0.5).sum()
    assert ReportVariant("calibrated", calibration=cal).describe()["calibration"] == "isotonic"
