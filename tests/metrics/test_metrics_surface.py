"""HD95 and average surface distance (MONAI) in pixels and millimetres, and the empty-mask statuses."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import surface_distances


def _squares():
    gt = np.zeros((9, 9), int)
    gt[2:5, 2:5] = 1
    pred = np.zeros((9, 9), int)
    pred[2:5, 3:6] = 1  # one column to the right
    return pred, gt


def test_shifted_square_by_hand():
    # 3 x 3 squares have 8 boundary pixels each; 4 of them coincide, 4 are one pixel away -> HD95 1, ASD 0.5
    pred, gt = _squares()
    s = surface_distances(pred, gt, 2, classes=[1])
    assert s["hd95_px"][1] == pytest.approx(1.0)
    assert s["asd_px"][1] == pytest.approx(0.5)
    assert s["status"] == ["skipped", "ok"]
    assert np.isnan(s["hd95_px"][0]) and np.isnan(s["hd95_mm"][1])


def test_spacing_isotropic_and_anisotropic():
    pred, gt = _squares()
    iso = surface_distances(pred, gt, 2, spacing=(1.4, 1.4), classes=[1])
    assert iso["hd95_mm"][1] == pytest.approx(1.4)
    assert iso["asd_mm"][1] == pytest.approx(0.7)
    # the shift is along the columns, so only the column spacing matters
    aniso = surface_distances(pred, gt, 2, spacing=(2.0, 0.5), classes=[1])
    assert aniso["hd95_mm"][1] == pytest.approx(0.5)
    assert aniso["asd_mm"][1] == pytest.approx(0.25)


def test_perfect_prediction_is_zero():
    _, gt = _squares()
    s = surface_distances(gt, gt, 2)
    np.testing.assert_allclose(s["hd95_px"], 0.0)
    np.testing.assert_allclose(s["asd_px"], 0.0)


@pytest.mark.parametrize(
    ("pred_has", "gt_has", "status"),
    [(False, False, "both_empty"), (False, True, "empty_pred"), (True, False, "empty_gt")],
)
def test_empty_masks_are_nan_with_status(pred_has, gt_has, status):
    empty = np.zeros((9, 9), int)
    _, sq = _squares()
    s = surface_distances(sq if pred_has else empty, sq if gt_has else empty, 2, spacing=(1.0, 1.0), classes=[1])
    assert s["status"][1] == status
    for key in ("hd95_px", "asd_px", "hd95_mm", "asd_mm"):
        assert np.isnan(s[key][1])
