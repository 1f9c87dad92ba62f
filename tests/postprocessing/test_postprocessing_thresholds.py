"""Per-class thresholds and the TPR/FPR sweep on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from pipeline.postprocessing import ClassThreshold, ClassThresholdd, apply_class_thresholds, threshold_sweep


def test_soft_tissue_threshold_moves_pixel_to_next_best_class():
    p = torch.tensor([[[0.12, 0.10, 0.02]], [[0.85, 0.20, 0.95]], [[0.03, 0.70, 0.03]]])
    np.testing.assert_array_equal(apply_class_thresholds(p)[0], [[1, 2, 1]])  # plain argmax
    np.testing.assert_array_equal(apply_class_thresholds(p, [None, 0.9, None])[0], [[0, 2, 1]])
    np.testing.assert_array_equal(apply_class_thresholds(p, {1: 0.9})[0], [[0, 2, 1]])


def test_fallback_when_no_class_is_eligible():
    p = torch.tensor([[[0.4]], [[0.6]]])
    assert apply_class_thresholds(p, [0.5, 0.9], fallback=0).item() == 0


def test_binary_lung_threshold():
    p = torch.tensor([[[0.2, 0.5, 0.7, 0.95]]])
    np.testing.assert_array_equal(apply_class_thresholds(p)[0], [[0, 1, 1, 1]])
    np.testing.assert_array_equal(apply_class_thresholds(p, 0.9)[0], [[0, 0, 0, 1]])
    np.testing.assert_array_equal(apply_class_thresholds(p, [None, 0.9])[0], [[0, 0, 0, 1]])
    with pytest.raises(ValueError):
        apply_class_thresholds(torch.rand(3, 2, 2), 0.5)


def test_array_and_dict_transforms_keep_type():
    p = MetaTensor(torch.tensor([[[0.1, 0.8]], [[0.9, 0.2]]]))
    out = ClassThreshold(to_onehot=True)(p)
    assert isinstance(out, MetaTensor) and out.shape == (2, 1, 2)
    np.testing.assert_array_equal(out.numpy(), [[[0, 1]], [[1, 0]]])
    d = ClassThresholdd(keys="pred", thresholds=0.5)({"pred": np.array([[[0.3, 0.6]]], np.float32)})
    assert isinstance(d["pred"], np.ndarray)
    np.testing.assert_array_equal(d["pred"], [[[0, 1]]])


def test_sweep_by_hand():
    # 10 pixels: 5 soft tissue (class 1) and 5 bone (class 2); the rest of the probability goes to bone
    p_st = np.array([0.95, 0.92, 0.85, 0.70, 0.60, 0.91, 0.55, 0.30, 0.20, 0.10])
    prob = np.stack([np.zeros(10), p_st, 1 - p_st])[:, None, :].astype(np.float32)
    label = np.array([[1] * 5 + [2] * 5])
    sweep = threshold_sweep([(prob, label)], thresholds=[0.5, 0.9], classes=[1],
                            class_names=["open beam", "soft tissue", "bone"])
    assert sweep.class_names == ["soft tissue"]
    assert sweep.at("soft tissue", 0.9) == {"threshold": 0.9, "tpr": 0.4, "fpr": 0.2}
    assert sweep.at("soft tissue", 0.5)["tpr"] == 1.0 and sweep.at("soft tissue", 0.5)["fpr"] == 0.4  # 0.91, 0.55
    np.testing.assert_array_equal(sweep.counts[0, 1], [2, 1, 4, 3])
    rows = sweep.to_rows()
    assert len(rows) == 2 and rows[1]["precision"] == pytest.approx(2 / 3)


def test_sweep_binary_pools_images():
    prob = np.array([[[0.2, 0.6, 0.8, 0.95]]], np.float32)
    label = np.array([[0, 1, 0, 1]])
    sweep = threshold_sweep([(prob, label), (prob, label)], thresholds=[0.5, 0.9])
    assert sweep.class_names == ["lung"]
    np.testing.assert_allclose(sweep.tpr[0], [1.0, 0.5])
    np.testing.assert_allclose(sweep.fpr[0], [0.5, 0.0])
    assert sweep.counts[0, 0].sum() == 8
