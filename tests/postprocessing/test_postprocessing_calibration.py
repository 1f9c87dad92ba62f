"""Calibration: each method fits what it should, the description is small JSON, one function applies it anywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.engines.calibration_handler import calibration_errors_pooled
from pipeline.postprocessing.calibration import (
    CALIBRATION_METHODS,
    apply_calibration,
    boundary_band,
    calibration_description,
    fit_calibration,
)


def _disk_labels(n: int = 6, size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.stack([((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (10 + i) ** 2) for i in range(n)]).astype(np.int64)


def _sampled(z_true: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Labels drawn from ``sigmoid(z_true)``: ``z_true`` is perfectly calibrated for them."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(z_true.shape, generator=g) < torch.sigmoid(z_true)).long()[:, 0]


def test_temperature_recovers_the_scale_of_overconfident_logits():
    z_true = torch.randn(8, 1, 40, 40, generator=torch.Generator().manual_seed(1)) * 3
    y = _sampled(z_true)
    cal = fit_calibration(z_true * 2.0, y, method="temperature")
    assert cal["method"] == "temperature" and cal["temperature"] == pytest.approx(2.0, rel=0.1)
    assert cal["fit"] == "all"
    p = apply_calibration(z_true * 2.0, cal)
    assert torch.allclose(p, torch.sigmoid(z_true), atol=0.05)


def test_isotonic_fixes_a_distortion_a_temperature_cannot():
    """Overconfident near the border only (p in 0.6-0.95 really means 0.5-0.7): ECE and ACE drop, JSON stays small."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 1, 48, 48, generator=g) * 4
    p_raw = torch.sigmoid(z)
    p_true = torch.where((p_raw > 0.5) & (p_raw < 0.95), 0.5 + (p_raw - 0.5) * 0.5, p_raw)
    y = (torch.rand(p_true.shape, generator=g) < p_true).long()[:, 0]
    before = calibration_errors_pooled(p_raw.numpy(), y.numpy())
    iso = fit_calibration(z, y, method="isotonic")
    temp = fit_calibration(z, y, method="temperature")
    after = calibration_errors_pooled(apply_calibration(z, iso).numpy(), y.numpy())
    after_t = calibration_errors_pooled(apply_calibration(z, temp).numpy(), y.numpy())
    assert after["ece"] < 0.5 * before["ece"] and after["ace"] < before["ace"]
    assert after["ace"] < after_t["ace"]
    text = json.dumps(iso)
    assert len(text) < 40_000 and json.loads(text)["method"] == "isotonic"
    assert np.all(np.diff(iso["x"]) > 0) and np.all(np.diff(iso["y"]) >= 0)


def test_boundary_band_and_boundary_temperature():
    labels = _disk_labels()
    band = boundary_band(labels, width=2)
    assert band.shape == labels.shape and band.any()
    assert not band[:, 0, 0].any() and not band[:, 24, 24].any()  # far background and lung centre are not border
    # logits: confident everywhere, and wrong half of the time on the border -> the border wants a high temperature
    z = torch.from_numpy(np.where(labels == 1, 8.0, -8.0)).float()[:, None]
    flip = torch.from_numpy(band & (np.random.default_rng(0).random(labels.shape) < 0.3))
    y = torch.from_numpy(labels).clone()
    y[flip] = 1 - y[flip]
    all_pixels = fit_calibration(z, y, method="temperature")
    border = fit_calibration(z, y, method="boundary_temperature")
    assert border["method"] == "temperature" and border["fit"] == "boundary" and border["band"] == 2
    assert border["temperature"] > all_pixels["temperature"]
    assert border["pixels"] == int(boundary_band(y.numpy(), width=2).sum())  # the band of the labels it was given


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_one_function_applies_every_description_to_tensors_arrays_and_probabilities(method):
    z_true = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(2)) * 3
    y = _sampled(z_true)
    cal = json.loads(json.dumps(fit_calibration(z_true * 1.5, y, method=method)))  # what the artifact stores
    from_logits = apply_calibration(z_true * 1.5, cal)
    assert isinstance(from_logits, torch.Tensor) and from_logits.shape == z_true.shape
    assert float(from_logits.min()) >= 0 and float(from_logits.max()) <= 1
    as_array = apply_calibration((z_true * 1.5).numpy(), cal)
    assert isinstance(as_array, np.ndarray)
    np.testing.assert_allclose(as_array, from_logits.numpy(), atol=1e-6)
    from_prob = apply_calibration(torch.sigmoid(z_true * 1.5)[0], cal, from_logits=False)  # (C, H, W), probabilities
    np.testing.assert_allclose(from_prob.numpy(), from_logits[0].numpy(), atol=2e-3)


def test_multiclass_temperature_and_refusals():
    z = torch.randn(2, 3, 8, 8)
    np.testing.assert_allclose(apply_calibration(z, {"method": "temperature", "temperature": 2.0}).numpy(),
                               torch.softmax(z / 2, dim=1).numpy(), atol=1e-6)
    np.testing.assert_allclose(apply_calibration(z, None).numpy(), torch.softmax(z, dim=1).numpy(), atol=1e-6)
    assert apply_calibration(z, 2.0).shape == z.shape  # a bare number is a temperature (old artifacts)
    with pytest.raises(ValueError, match="multi-class"):
        fit_calibration(z, torch.zeros(2, 8, 8, dtype=torch.long), method="isotonic")
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibration(z, torch.zeros(2, 8, 8, dtype=torch.long), method="platt")
    with pytest.raises(ValueError, match="'method'"):
        calibration_description({"method": "magic"})
    with pytest.raises(ValueError, match="same length"):
        calibration_description({"method": "isotonic", "x": [0, 1], "y": [0]})
    assert calibration_description({}) == {"method": "none"}
