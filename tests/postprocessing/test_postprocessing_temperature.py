"""Temperature scaling: fitting on a synthetic over-confident model, ECE before/after, storage, transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.postprocessing import (
    ApplyTemperatured,
    TemperatureScaler,
    calibration_before_after,
    fit_temperature,
    load_temperature,
    probabilities_to_logits,
    rescale_probabilities,
    save_temperature,
)


def _overconfident_binary(scale=3.0, n=6, size=32, seed=0):
    """True pixel probabilities sigmoid(z); labels drawn from them; the 'model' outputs scale * z."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, size, size, generator=g) * 1.5
    labels = (torch.rand(n, size, size, generator=g) < torch.sigmoid(z[:, 0])).long()
    return z * scale, labels


def test_fit_recovers_temperature_and_lowers_ece():
    logits, labels = _overconfident_binary(scale=3.0)
    t = fit_temperature(logits, labels)
    assert 2.4 < t < 3.6
    ece = calibration_before_after(logits, labels, t)
    assert ece["ece_after"] < 0.5 * ece["ece_before"]


def test_multiclass_fit_lowers_ece():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 3, 24, 24, generator=g) * 1.5
    labels = torch.distributions.Categorical(logits=z.movedim(1, -1)).sample()
    t = fit_temperature(z * 2.5, labels)
    assert 2.0 < t < 3.0
    ece = calibration_before_after(z * 2.5, labels[:, None], t)
    assert ece["ece_after"] < ece["ece_before"]


def test_scaler_module_and_storage(tmp_path):
    logits, labels = _overconfident_binary()
    scaler = TemperatureScaler().fit(logits, labels, max_pixels=2000)
    assert scaler.temperature > 1.5
    torch.testing.assert_close(scaler(logits), logits / scaler.temperature)
    torch.testing.assert_close(scaler.probabilities(logits), torch.sigmoid(logits / scaler.temperature))
    path = scaler.save(tmp_path / "temperature.json")
    assert TemperatureScaler.load(path).temperature == pytest.approx(scaler.temperature)
    ckpt = {"model": {}, **scaler.checkpoint_entry()}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    assert load_temperature(tmp_path / "ckpt.pt") == pytest.approx(scaler.temperature)
    assert TemperatureScaler.from_checkpoint(ckpt).temperature == pytest.approx(scaler.temperature)
    save_temperature(tmp_path / "t.json", 1.7, ece_before=0.1)
    assert load_temperature(tmp_path / "t.json") == 1.7
    with pytest.raises(ValueError):
        TemperatureScaler(0.0)


def test_probability_round_trip_and_rescaling():
    p = np.array([[[0.1, 0.5, 0.9]]], np.float32)
    torch.testing.assert_close(torch.sigmoid(probabilities_to_logits(p)).float(), torch.from_numpy(p))
    np.testing.assert_allclose(rescale_probabilities(p, 1.0), p, atol=1e-6)
    soft = rescale_probabilities(p, 2.0)
    assert soft[0, 0, 1] == pytest.approx(0.5) and 0.5 < soft[0, 0, 2] < 0.9 and 0.1 < soft[0, 0, 0] < 0.5
    q = np.array([[[0.7]], [[0.2]], [[0.1]]], np.float32)
    out = rescale_probabilities(q, 2.0)
    assert out.sum() == pytest.approx(1.0) and out.argmax() == 0 and out[0, 0, 0] < 0.7


def test_apply_temperature_transform():
    z = torch.tensor([[[2.0, -4.0]]])
    assert ApplyTemperatured(keys="pred", temperature=2.0)({"pred": z})["pred"].tolist() == [[[1.0, -2.0]]]
    assert ApplyTemperatured(keys="pred")({"pred": z})["pred"] is z  # None = off
