"""Evaluation fits and reports a temperature but never rewrites the versioned model file it evaluates."""

from __future__ import annotations

import json

import pytest
import torch
from monai.engines import SupervisedEvaluator
from monai.networks.nets import BasicUNet

from pipeline.engines import TemperatureFitHandler
from pipeline.model import ModelArtifact, model_version, read_artifact, save_model


def _evaluate(model_path, tmp_path, out=None) -> TemperatureFitHandler:
    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=(4, 4, 8, 16, 32, 4))
    save_model(model_path, net, ModelArtifact(image_size=32, network_kwargs={"features": [4, 4, 8, 16, 32, 4]},
                                              calibration={"method": "isotonic", "x": [0, 1], "y": [0, 1]}))
    data = [{"image": torch.rand(2, 1, 32, 32), "label": (torch.rand(2, 1, 32, 32) > 0.5).float()} for _ in range(2)]
    fitter = TemperatureFitHandler(model_path, json_path=tmp_path / "temperature.json", out=out)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=data, network=net,
                                    val_handlers=[fitter])
    evaluator.run()
    return fitter


def test_evaluation_leaves_the_model_file_alone(tmp_path, caplog):
    model = tmp_path / "model.pt"
    caplog.set_level("INFO")
    fitter = _evaluate(model, tmp_path)
    version = model_version(model)
    assert fitter.temperature is not None
    assert json.loads((tmp_path / "temperature.json").read_text())["temperature"] == pytest.approx(fitter.temperature)
    assert model_version(model) == version and read_artifact(model).revision == 1
    assert "model.pt unchanged (calibration stored at training: isotonic)" in caplog.text


def test_a_new_file_gets_the_temperature_as_a_new_revision(tmp_path, caplog):
    model, out = tmp_path / "model.pt", tmp_path / "model_temperature.pt"
    caplog.set_level("INFO")
    fitter = _evaluate(model, tmp_path, out=out)
    new = read_artifact(out)
    assert new.revision == 2 and new.temperature == pytest.approx(fitter.temperature)
    assert read_artifact(model).revision == 1
    assert f"written to the new file {out}" in caplog.text
    with pytest.raises(ValueError, match="never rewritten"):
        _evaluate(model, tmp_path, out=model)
