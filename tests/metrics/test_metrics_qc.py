"""QC flags: none on a real lung mask from the committed sample, the right ones on crafted bad masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import pipeline
from pipeline.io import read_mask
from pipeline.metrics import (
    ENTROPY_MAX,
    QC_FLAGS,
    mean_entropy,
    qc_flags,
    uncertainty_dice_correlation,
    uncertainty_score,
)

SAMPLE_MASK = Path(pipeline.__file__).parent / "data" / "sample" / "jsrt30" / "masks" / "JPCLN015.png"


@pytest.fixture(scope="module")
def lung() -> np.ndarray:
    return (read_mask(SAMPLE_MASK) > 0).astype(np.int64)


def _confident(mask: np.ndarray) -> np.ndarray:
    """A sharp but not saturated probability map whose 0.5 level set is ``mask``."""
    return np.clip(ndimage.gaussian_filter(mask.astype(np.float64), 0.7), 0.001, 0.999)[None]


def test_real_mask_raises_no_flag(lung):
    out = qc_flags(_confident(lung), lung)
    assert out["flags"] == []
    assert out["n_components"] == 2
    assert 0.10 < out["area_fraction"] < 0.55
    assert out["lr_ratio"] > 0.5
    assert out["mean_entropy"] < ENTROPY_MAX
    assert 0 <= out["uncertainty_score"] < 0.05


def test_missing_lung_is_flagged_even_with_an_island(lung):
    one_lung = lung.copy()
    one_lung[:, : one_lung.shape[1] // 2] = 0
    out = qc_flags(_confident(one_lung), one_lung)
    assert "components" in out["flags"] and "lr_imbalance" in out["flags"]
    assert out["n_components"] == 1
    # an island standing in for the missing lung fools the component count, not the left/right balance
    island = one_lung.copy()
    island[5:15, 5:15] = 1  # 100 px, above the 0.1 % (66 px) counting limit
    out = qc_flags(_confident(island), island)
    assert out["n_components"] == 2 and "components" not in out["flags"]
    assert "lr_imbalance" in out["flags"] and out["lr_ratio"] < 0.1


def test_fragments_area_and_empty(lung):
    fragmented = lung.copy()
    fragmented[::16, :] = 0  # horizontal cuts split each lung into pieces
    assert "components" in qc_flags(_confident(fragmented), fragmented)["flags"]
    tiny = np.zeros_like(lung)
    tiny[100:120, 60:80] = 1
    tiny[100:120, 180:200] = 1
    assert qc_flags(_confident(tiny), tiny)["flags"] == ["area_fraction"]
    empty = np.zeros_like(lung)
    out = qc_flags(_confident(empty), empty)
    assert {"empty_mask", "components", "area_fraction", "lr_imbalance"} <= set(out["flags"])
    assert set(out["flags"]) <= set(QC_FLAGS)


def test_uncertain_probabilities_raise_entropy_flag(lung):
    prob = np.full((1, *lung.shape), 0.5)
    out = qc_flags(prob, lung)
    assert out["mean_entropy"] == pytest.approx(1.0)
    assert out["flags"] == ["high_entropy"]
    # soft Dice of p = 0.5 everywhere against the mask: 2 * 0.5 * A / (0.5 * N + A)
    a, n = lung.sum(), lung.size
    assert out["uncertainty_score"] == pytest.approx(1 - a / (0.5 * n + a))


def test_multiclass_skips_lung_shape_checks():
    prob = np.full((3, 8, 8), 1 / 3)
    out = qc_flags(prob, np.zeros((8, 8), int))
    assert out["flags"] == ["high_entropy"]
    assert np.isnan(out["area_fraction"])
    assert mean_entropy(np.eye(3)[:, :, None].repeat(4, 2)) == pytest.approx(0.0, abs=1e-9)


def test_uncertainty_of_hard_prediction_is_zero(lung):
    assert uncertainty_score(lung[None].astype(float), lung) == pytest.approx(0.0)
    assert uncertainty_score(np.zeros((1, 4, 4)), np.zeros((4, 4), int)) == 0.0


def test_spearman():
    r = uncertainty_dice_correlation([0.1, 0.2, 0.3, np.nan, 0.4], [0.99, 0.95, 0.9, 0.5, 0.8])
    assert r["spearman_rho"] == pytest.approx(-1.0)
    assert r["n"] == 4
    assert np.isnan(uncertainty_dice_correlation([0.1, 0.2], [0.9, 0.8])["spearman_rho"])
    assert np.isnan(uncertainty_dice_correlation([0.1, 0.1, 0.1], [0.9, 0.8, 0.7])["spearman_rho"])
