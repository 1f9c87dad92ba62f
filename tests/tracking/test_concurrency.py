"""Two trainings started at the same moment in one bundle folder, default SQLite store not yet created."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import torch
from mlflow_helpers import BUNDLE, FAST, MODEL_NAME, REPO, make_dataset

from pipeline.tracking import fetch_model, weights_sha256

# Runs the bundle as `python -m monai.bundle run training --tracking mlflow` does, and appends the weights hash of
# every checkpoint its CheckpointSaver writes (a new best) to a file: the test's own record of what it wrote.
DRIVER = textwrap.dedent("""
    import sys
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow
    from pipeline.tracking import state_weights_sha256

    data, lr, record = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    workflow = ConfigWorkflow(config_file=["configs/common.yaml", "configs/train.yaml"], workflow_type=None, run_id="training",
                              tracking="mlflow", logging_file=False, bundle_root=".", dataset_dir=data,
                              learning_rate=lr, **{FAST!r})
    workflow.initialize()
    validator = workflow.parser.get_parsed_content("validate#evaluator")
    network = workflow.parser.get_parsed_content("network")

    def saved(engine):
        if engine.state.best_metric_epoch == engine.state.epoch:
            with open(record, "a") as f:
                f.write(state_weights_sha256(network.state_dict()) + "\\n")

    validator.add_event_handler(Events.EPOCH_COMPLETED, saved)
    workflow.run()
    workflow.finalize()
""").replace("{FAST!r}", repr({**FAST, "max_epochs": 3}))


def test_two_trainings_at_once_in_one_bundle_folder(tmp_path):
    from mlflow import MlflowClient

    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")  # a fresh bundle folder: no eval/mlruns.db yet
    data = str(make_dataset(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK="true")
    rates = {"0.01": tmp_path / "written-a.txt", "0.003": tmp_path / "written-b.txt"}
    processes = [
        subprocess.Popen([sys.executable, "-c", DRIVER, data, lr, str(record)], cwd=bundle, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        for lr, record in rates.items()
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]

    client = MlflowClient(tracking_uri="sqlite:///" + str(bundle / "eval" / "mlruns.db"))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2 and len({r.info.run_name for r in runs}) == 2  # two runs, never one shared run
    assert all(r.info.status == "FINISHED" for r in runs)
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == 2
    for version in versions:
        run = client.get_run(version.run_id)
        written = rates[run.data.params["learning_rate"]].read_text().split()
        number = str(version.version)
        logged = client.download_artifacts(run.info.run_id, "checkpoint/model.pt", str(tmp_path / number))
        assert weights_sha256(logged) == written[-1], f"run of version {number} logged another run's weights"
        served = fetch_model(f"models:/{MODEL_NAME}/{number}", tracking_uri=client.tracking_uri).path
        assert weights_sha256(served) == written[-1], f"version {number} serves another run's weights"
        traced = torch.jit.load(
            client.download_artifacts(run.info.run_id, "torchscript/model.ts", str(tmp_path / f"ts{number}"))
        ).state_dict()
        state = torch.load(logged, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        assert all(torch.equal(traced[k], state[k]) for k in state if k in traced)
    assert len({rates[client.get_run(v.run_id).data.params["learning_rate"]] for v in versions}) == 2
