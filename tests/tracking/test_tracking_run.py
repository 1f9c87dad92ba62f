"""A tracked bundle training leaves a complete MLflow run; a tracked evaluation nests under it (real SQLite store)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from mlflow_helpers import BUNDLE, FAST, MODEL_NAME, run_bundle
from ignite.engine import Engine

from pipeline.inference import load_predictor
from pipeline.model import read_artifact
from pipeline.tracking import MLflowTrainingHandler

EXPECTED_PARAMS = [
    "network_name", "network_kwargs", "network_class", "network_parameters", "num_classes", "loss", "optimizer",
    "learning_rate", "weight_decay", "lr_schedule", "batch_size", "max_epochs", "image_size", "intensity",
    "augment.flip_prob", "augment.elastic_prob", "augment.rotate_degrees", "dataset_name", "n_training",
    "n_validation", "n_test", "datalist_hash", "version.torch", "version.monai", "version.pydicom",
    "version.highdicom", "version.mlflow", "git_commit",
]  # fmt: skip


def test_experiment_and_run_names_are_meaningful(store, client):
    experiment = client.get_experiment_by_name("chest-xray-lung-seg")
    assert experiment is not None
    assert client.get_experiment_by_name("monai_experiment") is None
    for training in (store.good, store.worse):  # settings file and plain `--tracking mlflow` alike
        run = client.get_run(training["run_id"])
        assert run.info.experiment_id == experiment.experiment_id
        assert run.info.run_name.startswith("basic_unet-jsrt12-"), run.info.run_name
        assert run.info.status == "FINISHED"
        assert run.data.tags["run_kind"] == "training"


def test_run_records_parameters(store, client):
    params = client.get_run(store.good["run_id"]).data.params
    missing = [p for p in EXPECTED_PARAMS if p not in params]
    assert not missing, f"missing parameters: {missing}"
    assert params["image_size"] == "32"
    assert params["learning_rate"] == "0.01"
    assert params["max_epochs"] == "2"
    assert params["network_name"] == "basic_unet"
    assert json.loads(params["network_kwargs"]) == FAST["network_kwargs"]
    assert params["loss"] == "DiceCELoss" and params["optimizer"] == "Adam"
    assert (params["n_training"], params["n_validation"], params["n_test"]) == ("8", "2", "2")
    assert params["dataset_name"] == "jsrt12"
    assert len(params["git_commit"]) in (40, len("unknown"))


def test_run_records_metrics_per_epoch(store, client):
    run_id = store.good["run_id"]

    def steps(name: str) -> list[int]:
        return [m.step for m in client.get_metric_history(run_id, name)]

    for name in ("train_loss_epoch", "learning_rate", "val_mean_dice", "best_val_mean_dice"):
        assert steps(name) == [1, 2], name
    assert steps("train_loss")  # MONAI's per-iteration loss (every 10th iteration with the settings file)
    best = max(m.value for m in client.get_metric_history(run_id, "val_mean_dice"))
    assert abs(best - store.good["best"]) < 1e-6
    # MONAI MLFlowHandler features switched on by configs/mlflow_tracking.yaml
    run = client.get_run(run_id)
    datasets = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert datasets >= {"training_dataset_0", "validation_dataset_0", "test_dataset_0"}
    assert "best_metric" in run.data.metrics


def test_run_records_artifacts(store, client, tmp_path):
    run_id = store.good["run_id"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert "datalist.json" in top
    assert any(p.startswith("config_") and p.endswith(".json") for p in top), top
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/model.pt"]
    assert [a.path for a in client.list_artifacts(run_id, "torchscript")] == ["torchscript/model.ts"]
    path = client.download_artifacts(run_id, "torchscript/model.ts", str(tmp_path))
    extra = {"artifact.json": ""}
    scripted = torch.jit.load(path, _extra_files=extra)
    artifact = json.loads(extra["artifact.json"])  # the whole model artifact travels inside the TorchScript file
    assert artifact["image_size"] == 32 and artifact["network_name"] == "basic_unet"
    (tmp_path / "ckpt").mkdir()
    logged = client.download_artifacts(run_id, "checkpoint/model.pt", str(tmp_path / "ckpt"))
    assert artifact == read_artifact(logged).to_dict()
    assert scripted(torch.zeros(2, 1, 32, 32)).shape == (2, 1, 32, 32)
    datalist = json.loads(open(client.download_artifacts(run_id, "datalist.json", str(tmp_path))).read())
    assert len(datalist["training"]) == 8


def test_evaluation_is_nested_under_the_training_run(store, client, tmp_path):
    good = store.good
    models = store.root / "evaluated_models"  # a copy: the evaluation writes the fitted temperature into it
    models.mkdir()
    shutil.copy(good["checkpoint"], models / "model.pt")
    overrides = {**good["overrides"], "ckpt_dir": str(models), "report_variants": [{"name": "raw"}]}  # fewer figures
    run_bundle("evaluating", ["common.yaml", "evaluate.yaml"], "mlflow", **overrides)

    runs = client.search_runs(
        [client.get_experiment_by_name("chest-xray-lung-seg").experiment_id],
        filter_string="tags.run_kind = 'evaluation'",
    )
    assert len(runs) == 1
    evaluation = runs[0]
    assert evaluation.info.run_name.startswith("eval-basic_unet-jsrt12-")
    assert evaluation.info.status == "FINISHED"
    assert evaluation.data.tags["mlflow.parentRunId"] == good["run_id"]
    assert "test_mean_dice" in evaluation.data.metrics
    report = {a.path for a in client.list_artifacts(evaluation.info.run_id, "evaluation")}
    assert "evaluation/metrics.csv" in report

    training = client.get_run(good["run_id"])
    assert training.data.metrics["test_mean_dice"] == evaluation.data.metrics["test_mean_dice"]
    assert "evaluation/metrics.csv" in {a.path for a in client.list_artifacts(good["run_id"], "evaluation")}
    version = client.get_model_version(MODEL_NAME, good["version"])
    assert abs(float(version.tags["test_mean_dice"]) - evaluation.data.metrics["test_mean_dice"]) < 1e-5

    # the temperature the evaluation fitted is recorded on the version; the version itself is immutable and serves
    # exactly the model file (artifact included) its training run logged
    fitted = read_artifact(models / "model.pt").temperature
    assert float(version.tags["evaluation.temperature"]) == pytest.approx(fitted)
    served = load_predictor(f"models:/{MODEL_NAME}/{good['version']}", tracking_uri=store.uri, device="cpu")
    logged = client.download_artifacts(good["run_id"], "checkpoint/model.pt", str(tmp_path))
    assert served.artifact == read_artifact(logged)


def test_handler_is_inert_without_tracking(tmp_path):
    """No MONAI MLFlowHandler on the engine: nothing is opened, logged or registered."""
    network = torch.nn.Conv2d(1, 1, 3, padding=1)
    handler = MLflowTrainingHandler(network=network, checkpoint=tmp_path / "model.pt", params={"image_size": 8})
    engine = Engine(lambda engine, batch: {"loss": torch.tensor(1.0)})
    handler.attach(engine)
    engine.run([0, 1], max_epochs=2)
    assert handler.run is None and handler.model_version is None
    assert not list(tmp_path.iterdir())
    assert BUNDLE.is_dir()
