"""Per-image evaluation rows and dataset-level aggregation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.metrics import SegmentationAggregator, describe, evaluate_segmentation


def _lungs(size=64):
    y = np.zeros((size, size), int)
    y[12:52, 6:28] = 1
    y[12:52, 36:58] = 1
    return y


def test_perfect_binary_row():
    y = _lungs()
    row = evaluate_segmentation(y[None].astype(np.float32), y, spacing=(0.5, 0.5), class_names=["lung"])
    assert row["dice"] == row["dice_lung"] == 1.0
    assert row["hd95_px"] == 0.0 and row["hd95_mm"] == 0.0
    assert row["ece"] == pytest.approx(0.0, abs=1e-6)
    assert row["surface_status_lung"] == "ok"
    assert "hd95_px_background" not in row  # binary: lung boundary only
    assert row["flags"] == "" and row["n_flags"] == 0


def test_multiclass_headline_is_class_weighted():
    label = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 1, 2]])
    pred = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 2, 2]])
    prob = np.eye(3, dtype=np.float32)[pred].transpose(2, 0, 1)
    row = evaluate_segmentation(prob, label, pred, class_names=["open beam", "soft tissue", "bone"], qc=False)
    dice = [1.0, 0.8, 2 / 3]  # soft tissue 2*2/(2+3), bone 2*1/(2+1)
    assert row["dice_soft_tissue"] == pytest.approx(0.8)
    assert row["dice"] == pytest.approx(np.dot(dice, [6, 3, 1]) / 10)
    assert row["dice_weighted"] == pytest.approx(row["dice"])
    assert "flags" not in row


def test_empty_prediction_row():
    y = _lungs()
    row = evaluate_segmentation(np.zeros((1, *y.shape), np.float32), y)
    assert row["dice"] == 0.0
    assert math.isnan(row["hd95_px"]) and row["surface_status_lung"] == "empty_pred"
    assert "empty_mask" in row["flags"]


def test_aggregator_summary_is_json_ready_and_pooled():
    rng = np.random.default_rng(0)
    agg = SegmentationAggregator(["lung"], num_channels=1, roc_sample_size=2000, pixels_per_image=1000)
    y = _lungs()
    for i in range(3):
        prob = np.clip(y + rng.normal(0, 0.2, y.shape), 0, 1)[None].astype(np.float32)
        agg.add(prob, y, case_id=f"c{i}")
    s = agg.summary()
    json.dumps(s)  # plain Python types (NaN allowed here)
    assert s["n_images"] == 3 and s["headline_class"] == "lung"
    assert set(s["roc"]["auc"]) == {"lung"} and s["roc"]["n_pixels"] == 2000
    assert 0.9 < s["pooled"]["dice"]["lung"] <= 1.0
    assert s["per_image"]["dice"]["n"] == 3
    cm = np.array(s["pooled"]["confusion_matrix"])
    assert cm.sum() == 3 * y.size
    np.testing.assert_allclose(np.array(s["pooled"]["confusion_matrix_normalized"]).sum(1), 1.0)
    with pytest.raises(ValueError):
        agg.add(np.zeros((3, 64, 64), np.float32), y)


def test_describe_ignores_nan():
    d = describe([1.0, np.nan, 3.0])
    assert d["n"] == 2 and d["mean"] == 2.0 and d["median"] == 2.0
    assert describe([np.nan])["n"] == 0
