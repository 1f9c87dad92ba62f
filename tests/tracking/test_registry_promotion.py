"""Registry: versions and aliases after two trainings, serving from ``@champion``, manual promotion and rollback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow_helpers import BUNDLE, FAST, MODEL_NAME, REPO, run_bundle

from pipeline.cli import main as xray_seg
from pipeline.inference import Predictor, load_predictor
from pipeline.io import read_image

SAMPLE_IMAGES = sorted((REPO / "pipeline" / "data" / "sample" / "jsrt30" / "images").glob("*.png"))[:4]


def test_first_run_is_champion_worse_run_only_challenger(store, client):
    assert (store.good["version"], store.worse["version"]) == ("1", "2")
    assert store.worse["best"] < store.good["best"]  # lr 0 = the untrained network: deterministically worse
    model = client.get_registered_model(MODEL_NAME)
    assert {alias: str(v) for alias, v in model.aliases.items()} == {"champion": "1", "challenger": "2"}
    assert model.tags["champion_history"] == "1"


def test_promotion_rule_and_numbers_are_tags(store, client):
    first = client.get_model_version(MODEL_NAME, "1").tags
    assert first["promotion.decision"] == "champion"
    assert first["promotion.champion_version_before"] == "none"
    second = client.get_model_version(MODEL_NAME, "2").tags
    assert second["promotion.decision"] == "challenger"
    assert "val_mean_dice" in second["promotion.rule"]
    assert float(second["promotion.candidate_value"]) == pytest.approx(store.worse["best"])
    assert float(second["promotion.champion_value_before"]) == pytest.approx(store.good["best"])
    assert second["promotion.champion_version_before"] == "1"
    assert float(second["val_mean_dice"]) == pytest.approx(store.worse["best"])


def test_version_stores_preprocessing_settings(client):
    tags = client.get_model_version(MODEL_NAME, "1").tags
    assert tags["image_size"] == "32" and tags["intensity"] == "minmax" and tags["num_classes"] == "1"
    assert tags["threshold"] == "0.5" and tags["network_name"] == "basic_unet"
    assert json.loads(tags["network_kwargs"]) == FAST["network_kwargs"]
    assert client.get_model_version(MODEL_NAME, "1").run_id is not None


def test_champion_gives_the_checkpoint_masks(store):
    from_registry = load_predictor(f"models:/{MODEL_NAME}@champion", tracking_uri=store.uri, device="cpu")
    from_checkpoint = Predictor.from_checkpoint(
        store.good["checkpoint"],
        device="cpu",
        temperature=from_registry.temperature,  # 1, or the one a tracked evaluation fitted (masks do not depend on it)
    )
    assert (from_registry.model_name, from_registry.model_version) == (MODEL_NAME, "1")
    assert (from_registry.image_size, from_registry.intensity, from_registry.threshold) == (32, "minmax", 0.5)
    images = [read_image(path) for path in SAMPLE_IMAGES]
    for a, b in zip(from_registry.predict_images(images), from_checkpoint.predict_images(images)):
        assert a.mask.shape == b.mask.shape == a.image.shape
        assert a.mask.any()
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.prob, b.prob, atol=1e-5)


def test_bundle_inference_config_takes_a_model_uri(store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in SAMPLE_IMAGES[:2]:
        (inputs / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    run_bundle("inferring", ["inference.yaml"], None, model=f"models:/{MODEL_NAME}@champion",
               input_dir=str(inputs), output_dir=f"$'{out}'")
    reference = Predictor.from_checkpoint(store.good["checkpoint"], device="cpu")
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(out / "manifest.csv"))}  # the batch runner's
    for path in SAMPLE_IMAGES[:2]:
        written = read_image(out / rows[path.name]["mask_png"]).pixels > 0
        np.testing.assert_array_equal(written, reference.predict_file(path).mask.astype(bool))


def test_registered_model_loads_without_project_code(store, tmp_path):
    """A fresh interpreter that cannot import ``pipeline`` (nor MONAI) loads and runs the champion."""
    x = torch.linspace(-1, 1, 2 * 32 * 32).reshape(2, 1, 32, 32)
    expected = load_predictor(f"models:/{MODEL_NAME}/1", tracking_uri=store.uri, device="cpu",
                              amp=False).network(x)  # eager fp32, as the plain load below runs it
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", expected.detach().numpy())
    script = textwrap.dedent(f"""
        import sys
        sys.modules["pipeline"] = None  # any import of the project (or MONAI) now fails
        sys.modules["monai"] = None
        import mlflow, numpy as np, torch
        mlflow.set_tracking_uri({store.uri!r})
        model = mlflow.pytorch.load_model("models:/{MODEL_NAME}@champion", map_location="cpu")
        y = model(torch.from_numpy(np.load("x.npy"))).detach().numpy()
        np.testing.assert_allclose(y, np.load("y.npy"), atol=1e-5)
        print("OK", type(model).__name__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK RecursiveScriptModule" in done.stdout


def test_cli_promote_then_rollback(store, client, capsys):
    base = ["models", "--tracking-uri", store.uri]
    assert xray_seg([*base, "promote", MODEL_NAME, "2", "--reason", "test"]) == 0
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "2"
    assert client.get_registered_model(MODEL_NAME).tags["champion_history"] == "1,2"
    assert client.get_model_version(MODEL_NAME, "2").tags["champion.reason"] == "test"
    aliases = {alias: str(v) for alias, v in client.get_registered_model(MODEL_NAME).aliases.items()}
    assert aliases == {"champion": "2"}  # the promoted challenger is no longer challenger
    assert not [k for k in client.get_model_version(MODEL_NAME, "1").tags if k.startswith("champion.")]

    assert xray_seg([*base, "rollback", MODEL_NAME]) == 0
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"
    assert client.get_registered_model(MODEL_NAME).tags["champion_history"] == "1"
    assert xray_seg([*base, "rollback", MODEL_NAME]) == 1  # nothing earlier than version 1

    capsys.readouterr()
    assert xray_seg([*base, "list", MODEL_NAME]) == 0
    table = capsys.readouterr().out
    assert "champion" in table and "basic_unet-jsrt12-" in table
    assert xray_seg([*base, "show", MODEL_NAME, "@champion"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "1" and "rolled_back" in client.get_model_version(MODEL_NAME, "2").tags
