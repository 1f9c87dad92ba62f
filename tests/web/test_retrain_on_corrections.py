"""Retrain on corrections: a corrected case saved by the review page joins the lung bundle's training split.

The corrections folder is written by the real save path (:func:`pipeline.web.corrections.save_correction`, from a
batch case of the web fixtures). The documented loop then runs through the lung bundle with a real MLflow store
(SQLite): a first training registers the champion; the fine-tune starts from ``models:/...@champion`` on
``dataset_dir=['sample', corrections]`` for one epoch and is registered as challenger, tagged with the corrections'
count and hash and the version it was fine-tuned from.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data import DatasetFolders, prepare_datalist, resolve_dataset_dir
from pipeline.model import ModelFileError, load_model, model_version
from pipeline.web.corrections import corrected_stem, save_correction
from xray_test_paths import train_lung_bundle



def corrections_from_batch(batch_dir: Path, target: Path) -> str:
    with open(batch_dir / "manifest.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["path"].endswith("c_mono1.dcm"))
    mask = np.asarray(Image.open(batch_dir / row["mask_png"])) > 0
    corrected = mask.copy()
    corrected[:20, :] = True  # the reader's fix
    stem = corrected_stem(row["sop_instance_uid"], 0)
    save_correction(Path(row["path"]), corrected, target, stem, 1, previous=mask)
    return stem


def test_corrections_join_the_training_split_only(batch_dir, tmp_path):
    corrections = tmp_path / "corrections"
    stem = corrections_from_batch(batch_dir, corrections)
    folders = resolve_dataset_dir(f"['sample', '{corrections}']")  # as --dataset_dir gives it on the command line
    assert isinstance(folders, DatasetFolders) and Path(folders).name == "jsrt30"
    plain = prepare_datalist(resolve_dataset_dir("sample"), None)
    both = prepare_datalist(folders, tmp_path / "eval")
    assert [p["id"] for p in both["validation"]] == [p["id"] for p in plain["validation"]]
    assert [p["id"] for p in both["test"]] == [p["id"] for p in plain["test"]]
    assert stem in [p["id"] for p in both["training"]] and len(both["training"]) == len(plain["training"]) + 1
    assert both["extra_training"]["count"] == 1 and both["hash"] != plain["hash"]
    # a changed correction changes the recorded hash (the datalist is made again, not reused)
    mask_file = corrections / "masks" / f"{stem}.png"
    Image.fromarray(np.zeros_like(np.asarray(Image.open(mask_file)))).save(mask_file)
    again = prepare_datalist(folders, tmp_path / "eval")
    assert again["extra_training"]["hash"] != both["extra_training"]["hash"]


def lung_training(tmp_path: Path, name: str, tracking_uri: str | None, **overrides):
    """A tiny training of the lung bundle into ``tmp_path/name`` (tracked when ``tracking_uri`` is given)."""
    return train_lung_bundle(tmp_path / name, tracking_uri, **overrides)


@pytest.fixture()
def store(tmp_path, monkeypatch) -> str:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    from pipeline.tracking import sqlite_uri

    return sqlite_uri(tmp_path / "mlruns.db")


def test_fine_tune_from_the_champion_on_corrections_is_a_tagged_challenger(batch_dir, tmp_path, store):
    from mlflow import MlflowClient

    corrections = tmp_path / "corrections"
    stem = corrections_from_batch(batch_dir, corrections)
    champion = lung_training(tmp_path, "champion", store, learning_rate=0.01, max_epochs=2)
    champion_file = tmp_path / "champion" / "models" / "model.pt"
    _, champion_weights = load_model(champion_file)

    # learning rate 0: the fine-tune's weights stay the champion's, so its validation Dice proves they were loaded
    seen: dict[str, torch.Tensor] = {}
    tuned = lung_training(tmp_path, "tuned", store, learning_rate=0.0, max_epochs=1,
                          pretrained="models:/chest-xray-lung-seg@champion", pretrained_tracking_uri=store,
                          dataset_dir=["sample", str(corrections)])
    for name, value in tuned.parser.get_parsed_content("network_def").state_dict().items():
        seen[name] = value.detach().cpu()
    assert all(torch.equal(seen[k], champion_weights[k]) for k in champion_weights)
    best = tuned.parser.get_parsed_content("validate#evaluator").state.best_metric
    assert best == pytest.approx(champion.parser.get_parsed_content("validate#evaluator").state.best_metric, abs=1e-6)

    datalist = tuned.parser.get_parsed_content("datalist")
    assert stem in [p["id"] for p in datalist["training"]]  # the corrected case joins training only
    assert stem not in [p["id"] for p in datalist["validation"] + datalist["test"]]
    assert tuned.parser.get_parsed_content("dataset_name") == "jsrt30"
    artifact, _ = load_model(tmp_path / "tuned" / "models" / "model.pt")
    start = artifact.provenance["fine_tuned_from"]
    assert start == {"source": "models:/chest-xray-lung-seg@champion", "model_version": model_version(champion_file),
                     "registered": "chest-xray-lung-seg/1"}

    client = MlflowClient(tracking_uri=store)
    model = client.get_registered_model("chest-xray-lung-seg")
    assert {alias: str(v) for alias, v in model.aliases.items()} == {"champion": "1", "challenger": "2"}
    tags = client.get_model_version("chest-xray-lung-seg", "2").tags
    assert tags["corrections_count"] == "1"
    assert tags["corrections_hash"] == datalist["extra_training"]["hash"] and len(tags["corrections_hash"]) >= 16
    assert tags["fine_tuned_from"] == "chest-xray-lung-seg/1"
    assert tags["fine_tuned_from_model_version"] == model_version(champion_file)
    assert "corrections_count" not in client.get_model_version("chest-xray-lung-seg", "1").tags
    run_tags = client.get_run(client.get_model_version("chest-xray-lung-seg", "2").run_id).data.tags
    assert run_tags["corrections_count"] == "1" and run_tags["fine_tuned_from"] == "chest-xray-lung-seg/1"


def cause(error: BaseException) -> BaseException:
    """The first error of a chain (MONAI wraps what a ``_target_`` raises in a RuntimeError)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def test_starting_weights_of_another_network_are_refused_with_the_fix(tmp_path):
    lung_training(tmp_path, "champion", None, max_epochs=1)
    with pytest.raises(Exception) as err:
        lung_training(tmp_path, "other", None, max_epochs=1, network_kwargs={"features": [8, 8, 16, 32, 64, 8]},
                      pretrained=str(tmp_path / "champion" / "models" / "model.pt"))
    assert isinstance(cause(err.value), ModelFileError)
    assert "--network_kwargs" in str(cause(err.value)) and "[4, 4, 8, 16, 32, 4]" in str(cause(err.value))
    with pytest.raises(Exception) as err:
        lung_training(tmp_path, "missing", None, max_epochs=1, pretrained=str(tmp_path / "nowhere.pt"))
    assert isinstance(cause(err.value), FileNotFoundError) and "no such model file" in str(cause(err.value))
