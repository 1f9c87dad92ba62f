"""The model artifact: one record beside the weights, read and written only through pipeline.model."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from pipeline.inference import Predictor, load_predictor
from pipeline.io import read_image
from pipeline.model import (
    ARTIFACT_KEY,
    WEIGHTS_KEY,
    ModelArtifact,
    ModelFileError,
    load_model,
    model_version,
    read_artifact,
    save_model,
    update_model,
)
from pipeline.networks import get_network
from xray_test_paths import SAMPLE_DIR, TINY_BASIC_UNET


def _artifact(**changes) -> ModelArtifact:
    base = dict(network_kwargs=TINY_BASIC_UNET, image_size=32, threshold=0.4, temperature=0.8, cleanup=True,
                qc_reference={"area_fraction": {"p01": 0.1, "p99": 0.4}}, calibration={"method": "temperature", "temperature": 0.8},
                provenance={"dataset_name": "jsrt30", "datalist_hash": "abc123"})
    return ModelArtifact(**{**base, **changes})


def test_round_trip_keeps_every_field(tmp_path):
    artifact = _artifact()
    torch.manual_seed(0)
    network = artifact.build_network()
    path = save_model(tmp_path / "model.pt", network, artifact)
    state = torch.load(path, weights_only=True)
    assert set(state) == {WEIGHTS_KEY, ARTIFACT_KEY}  # plain values: loads with weights_only
    loaded, weights = load_model(path)
    assert loaded == artifact and loaded.to_dict() == artifact.to_dict()
    for key, value in network.state_dict().items():
        assert torch.equal(weights[key], value)
    assert ModelArtifact.from_dict({**artifact.to_dict(), "field_of_a_newer_version": 1}) == artifact


def test_artifact_validates_its_values():
    with pytest.raises(ValueError, match="intensity"):
        ModelArtifact(intensity="zscore")
    with pytest.raises(ValueError, match="threshold"):
        ModelArtifact(threshold=1.5)
    with pytest.raises(ValueError, match="temperature"):
        ModelArtifact(temperature=0)


def test_update_writes_a_new_revision_and_leaves_the_versioned_file(tmp_path):
    artifact = _artifact()
    path = save_model(tmp_path / "model.pt", artifact.build_network(), artifact)
    before = model_version(path)
    out = update_model(path, read_artifact(path).replace(temperature=0.5), out=tmp_path / "model_r2.pt")
    assert model_version(path) == before  # the versioned file is untouched
    revised = read_artifact(out)
    assert revised.temperature == 0.5 and revised.revision == artifact.revision + 1
    assert model_version(out) != before


def test_legacy_checkpoints_load(tmp_path):
    """Bundle 0.2 files ({model, settings, temperature}) load; bare state dicts load when the network is named."""
    network = get_network("basic_unet", **TINY_BASIC_UNET)
    settings = {"image_size": 48, "intensity": "percentile", "num_classes": 1, "threshold": 0.5,
                "network_name": "basic_unet", "network_kwargs": TINY_BASIC_UNET}
    torch.save({"model": network.state_dict(), "settings": settings, "temperature": 0.7}, tmp_path / "old.pt")
    artifact, _ = load_model(tmp_path / "old.pt")
    assert (artifact.image_size, artifact.intensity, artifact.temperature) == (48, "percentile", 0.7)

    torch.save(network.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ModelFileError, match="no model artifact") as err:
        load_model(tmp_path / "bare.pt")
    assert "save_model" in str(err.value)  # the message says how to convert
    artifact, weights = load_model(tmp_path / "bare.pt", default=_artifact())
    assert artifact.image_size == 32 and set(weights) == set(network.state_dict())


def test_unreadable_files_are_refused_with_the_file_name(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


def test_model_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_model(tmp_path / "model.pt", get_network("basic_unet", **TINY_BASIC_UNET), _artifact())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_predictor_comes_from_the_artifact_alone(tmp_path, monkeypatch):
    """No bundle config, no repository: the artifact builds network, preprocessing and post-processing."""
    artifact = _artifact(cleanup=False)
    torch.manual_seed(1)
    network = artifact.build_network().eval()
    path = save_model(tmp_path / "model.pt", network, artifact)
    monkeypatch.chdir(tmp_path)  # nothing relative to the checkout can be found from here
    predictor = Predictor.from_checkpoint(path, device="cpu", amp=False)
    assert predictor.artifact == artifact and predictor.model_version == model_version(path)
    assert (predictor.image_size, predictor.threshold, predictor.temperature) == (32, 0.4, 0.8)
    image = read_image(SAMPLE_DIR / "images" / "JPCLN008.png")
    result = predictor.predict_file(SAMPLE_DIR / "images" / "JPCLN008.png")
    assert result.mask.shape == image.shape and result.prob.shape == (1, *image.shape)
    # the same numbers by hand: preprocessing, network, temperature, sigmoid
    with torch.no_grad():
        expected = torch.sigmoid(network(predictor.preprocess(image)[None]) / 0.8)[0]
    np.testing.assert_allclose(result.prob_small.numpy(), expected.numpy(), atol=1e-5)
    assert set(result.quality) >= {"confidence", "qc_flags"}
    assert load_predictor(path, overrides={"threshold": 0.3}, device="cpu").threshold == 0.3


def test_predict_batch_is_the_road_of_predict_images():
    artifact = _artifact(cleanup=False)
    torch.manual_seed(2)
    predictor = Predictor(artifact.build_network(), artifact, device="cpu", amp=False)
    images = [read_image(p) for p in sorted((SAMPLE_DIR / "images").glob("*.png"))[:2]]
    batch = torch.stack([predictor.preprocess(im) for im in images])
    direct = predictor.predict_batch(batch, [im.shape for im in images])
    via_images = predictor.predict_images(images)
    for a, b in zip(direct, via_images):
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.quality == b.quality
    with pytest.raises(ValueError, match="one shape per image"):
        predictor.predict_batch(batch, [images[0].shape])
