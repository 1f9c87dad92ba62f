"""Dice and IoU against hand-computed cases, including empty masks and perfect predictions."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import overlap_metrics


def test_hand_computed_binary():
    pred = np.array([[0, 1], [1, 1]])
    label = np.array([[0, 1], [0, 1]])
    m = overlap_metrics(pred, label, 2)
    # lung: |P| = 3, |G| = 2, |P & G| = 2 -> Dice 4/5, IoU 2/3
    assert m["dice"][1] == pytest.approx(0.8)
    assert m["iou"][1] == pytest.approx(2 / 3)
    # background: |P| = 1, |G| = 2, |P & G| = 1 -> Dice 2/3, IoU 1/2
    assert m["dice"][0] == pytest.approx(2 / 3)
    assert m["iou"][0] == pytest.approx(0.5)


def test_three_classes():
    label = np.array([[0, 1, 2, 2]])
    pred = np.array([[0, 2, 2, 1]])
    m = overlap_metrics(pred, label, 3)
    np.testing.assert_allclose(m["dice"], [1.0, 0.0, 0.5])
    np.testing.assert_allclose(m["iou"], [1.0, 0.0, 1 / 3])


def test_perfect_prediction():
    label = np.zeros((16, 16), int)
    label[4:12, 3:8] = 1
    m = overlap_metrics(label, label, 2)
    np.testing.assert_allclose(m["dice"], 1.0)
    np.testing.assert_allclose(m["iou"], 1.0)


@pytest.mark.parametrize(
    ("pred_lung", "gt_lung", "expected"),
    [(False, False, 1.0), (True, False, 0.0), (False, True, 0.0)],
    ids=["both-empty", "gt-empty", "pred-empty"],
)
def test_empty_masks(pred_lung, gt_lung, expected):
    a = np.zeros((8, 8), int)
    b = np.zeros((8, 8), int)
    b[2:5, 2:5] = 1
    m = overlap_metrics(b if pred_lung else a, b if gt_lung else a, 2)
    assert m["dice"][1] == expected
    assert m["iou"][1] == expected


def test_rejects_unmapped_255_masks():
    with pytest.raises(ValueError, match="0/255"):
        overlap_metrics(np.zeros((4, 4), int), np.full((4, 4), 255), 2)
