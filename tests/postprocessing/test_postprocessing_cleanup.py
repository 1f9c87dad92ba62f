"""Lung clean-up: island removal, two largest components, hole filling, array/dict/one-hot forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from pipeline.postprocessing import LungCleanup, LungCleanupd, clean_lung_mask


def _two_lungs_with_defects(size=64):
    m = np.zeros((size, size), np.int64)
    m[10:54, 6:28] = 1
    m[10:54, 36:58] = 1
    clean = m.copy()
    m[30:34, 14:18] = 0  # a hole in the right lung (image left)
    m[2:4, 30:32] = 1  # a 4-pixel island
    return m, clean


def test_removes_island_and_fills_hole():
    mask, clean = _two_lungs_with_defects()
    out = clean_lung_mask(mask, min_area_fraction=0.005)
    np.testing.assert_array_equal(out, clean.astype(bool))


def test_keeps_two_largest_even_without_size_filter():
    mask, clean = _two_lungs_with_defects()
    mask[58:63, 2:12] = 1  # a third, larger blob (50 px) that the size filter alone would keep at 0.005
    out = clean_lung_mask(mask, num_components=2, min_area_fraction=0.0, fill_holes=False)
    assert out[60, 5] == 0 and out[2, 30] == 0 and out[31, 15] == 0  # hole stays when filling is off
    assert out.sum() == clean.sum() - 16


def test_size_filter_protects_against_one_lung_plus_speck():
    m = np.zeros((64, 64), np.int64)
    m[10:54, 6:28] = 1
    m[2:4, 40:42] = 1
    assert clean_lung_mask(m, min_area_fraction=0.005).sum() == m.sum() - 4
    assert clean_lung_mask(m, min_area_fraction=0.0).sum() == m.sum()


def test_array_transform_preserves_type_and_shape():
    mask, clean = _two_lungs_with_defects()
    out = LungCleanup()(MetaTensor(torch.from_numpy(mask[None]).float()))
    assert isinstance(out, MetaTensor) and out.shape == (1, 64, 64) and out.dtype == torch.float32
    np.testing.assert_array_equal(out[0].numpy(), clean)
    out_np = LungCleanup()(mask[None])
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.int64


def test_one_hot_input_moves_pixels_between_channels():
    mask, clean = _two_lungs_with_defects()
    onehot = np.stack([1 - mask, mask]).astype(np.float32)
    out = LungCleanup()(onehot)
    np.testing.assert_array_equal(out[1], clean)
    np.testing.assert_array_equal(out.sum(0), 1.0)


def test_dict_transform_and_validation():
    mask, clean = _two_lungs_with_defects()
    d = LungCleanupd(keys=["pred"])({"pred": mask[None], "label": mask[None]})
    np.testing.assert_array_equal(d["pred"][0], clean)
    np.testing.assert_array_equal(d["label"][0], mask)  # untouched
    with pytest.raises(ValueError):
        LungCleanup(num_components=0)
    with pytest.raises(ValueError):
        LungCleanup()(mask)  # not channel-first
