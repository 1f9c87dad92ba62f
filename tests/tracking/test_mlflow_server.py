"""Train against a real ``mlflow server`` on localhost over HTTP (free port, SQLite backend, proxied artifacts)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_helpers import MODEL_NAME, make_dataset, train

from pipeline.inference import load_predictor

STARTUP_TIMEOUT_S = 240  # a cold server imports MLflow's whole app; slow on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture()
def mlflow_server(tmp_path: Path, empty_store_db: Path) -> Iterator[str]:
    """A local ``mlflow server`` (own process group, stopped at the end); yields its URL once ``/health`` answers."""
    shutil.copy(empty_store_db, tmp_path / "server.db")  # tables already created: a faster start
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_training_against_a_server(mlflow_server, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = str(make_dataset(tmp_path))
    training = train(tmp_path / "work", "mlflow", mlflow_server, dataset_dir=data, learning_rate=0.01, max_epochs=1)
    assert not (tmp_path / "work" / "eval" / "mlruns.db").exists()  # nothing went to the embedded store

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(training["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("basic_unet-jsrt12-")
    assert run.data.params["image_size"] == "32"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mean_dice")] == [1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint", "torchscript", "datalist.json"} <= artifacts
    assert any((tmp_path / "artifacts").rglob("model.pt"))  # uploaded through the server's artifact proxy

    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == training["version"] == "1"
    predictor = load_predictor(f"models:/{MODEL_NAME}@champion", tracking_uri=mlflow_server, device="cpu")
    assert predictor.model_version == "1" and predictor.image_size == 32
