"""The factories the bundle configs call (``pipeline.bundle``), on real MONAI engines and files."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine, Events

from pipeline.bundle import (
    LogMessageHandler,
    RankZeroHandlers,
    ValidationEarlyStop,
    checkpoint_artifact,
    per_device,
    prediction_postprocessing,
    segmentation_loss,
    write_state_dict,
)
from pipeline.model import ModelArtifact, ModelFileError, load_model, save_model


def test_per_device_picks_the_profile():
    assert per_device("cpu", cpu=128, cuda=256) == 128
    assert per_device(torch.device("cuda", 1), cpu=128, cuda=256) == 256


def test_rank_zero_handlers_attach_only_on_rank_zero():
    for enabled, expected in ((True, 1), (False, 0)):
        engine = Engine(lambda e, b: None)
        RankZeroHandlers([LogMessageHandler("x"), None], enabled=enabled).attach(engine)
        assert len(engine._event_handlers[Events.STARTED]) == expected


def test_early_stopping_listens_to_the_validator():
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1])
    validator = Engine(lambda e, b: None)

    @validator.on(Events.EPOCH_COMPLETED)
    def _metric(engine):
        engine.state.metrics["val_mean_dice"] = next(scores)

    trainer = Engine(lambda e, b: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validator.run([0]))
    ValidationEarlyStop(validator, 0).attach(trainer)  # patience 0: never stops
    ValidationEarlyStop(validator, 2).attach(trainer)
    trainer.run([0], max_epochs=5)
    assert trainer.state.epoch == 3  # best at epoch 1, two validations without improvement


def test_log_messages_are_formatted_and_empty_ones_skipped(caplog):
    engine = Engine(lambda e, b: None)
    LogMessageHandler(["training {net} at {size} px", ""], {"net": "xnet", "size": 32}).attach(engine)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        engine.run([0], max_epochs=1)
    assert [r.getMessage() for r in caplog.records if r.name == "pipeline"] == ["training xnet at 32 px"]


def test_loss_and_postprocessing_follow_the_classes():
    assert segmentation_loss(1).dice.sigmoid and not segmentation_loss(3).dice.sigmoid
    assert segmentation_loss(3).dice.softmax and segmentation_loss(3).dice.to_onehot_y
    logits = torch.tensor([[[[2.0, -2.0]]], [[[0.0, 3.0]]], [[[1.0, 0.0]]]]).squeeze(1)  # 3 classes, 1 x 2
    out = prediction_postprocessing(3, threshold=0.9)({"pred": logits, "label": torch.zeros(1, 1, 2)})
    assert out["pred"].argmax(0).tolist() == [[0, 1]]  # argmax over classes: no class reaches 0.9 everywhere


def test_checkpoint_artifact_and_bare_weights(tmp_path):
    net = torch.nn.Conv2d(1, 1, 3)
    artifact = ModelArtifact(network_name="lite_unet", image_size=64)
    path = save_model(tmp_path / "model.pt", net, artifact)
    assert checkpoint_artifact(path).image_size == 64
    assert checkpoint_artifact(tmp_path / "none.pt", default={"image_size": 96}).image_size == 96
    with pytest.raises(ValueError, match="zoo_artifact#image_size 64"):
        write_state_dict(path, tmp_path / "bare.pt", expect={"network_name": "lite_unet", "image_size": 256})
    bare = write_state_dict(path, tmp_path / "bare.pt", expect={"network_name": "lite_unet", "image_size": 64})
    assert set(torch.load(bare, weights_only=True)) == set(net.state_dict())
    with pytest.raises(ModelFileError):
        load_model(bare)  # bare weights need the config's description
    assert checkpoint_artifact(bare, default={"network_name": "lite_unet"}).network_name == "lite_unet"


def test_per_start_lowers_what_a_fine_tune_needs_lower():
    from pipeline.bundle import per_start

    assert per_start(None, 1e-4, 2e-5) == 1e-4 and per_start("", 1e-4, 2e-5) == 1e-4
    assert per_start("models:/chest-xray-lung-seg@champion", 1e-4, 2e-5) == 2e-5
    assert per_start("/models/model.pt", 1e-4, 2e-5) == 2e-5
