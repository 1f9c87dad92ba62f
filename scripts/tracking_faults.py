"""Measure how bundle training behaves when MLflow tracking fails: server outage, closed port, concurrent runs.

Each scenario runs the real command a user types (``python -m monai.bundle run training --tracking mlflow`` in a
bundle folder) against a real ``mlflow server`` on 127.0.0.1, on a tiny network (32 px, 3 epochs, 12 sample
images), and prints one JSON line of figures: wall seconds, exit codes, run statuses, epochs with metrics.

Scenarios:

* ``outage``: the server's process group is killed once the first checkpoint exists (after epoch 1) and started
  again on the same port ``--down`` seconds later;
* ``closed-port``: the tracking URI points at a port nobody listens on;
* ``concurrent``: two trainings start at the same moment in one bundle folder with its default SQLite store (none
  exists yet); each registered version's checkpoint is compared (weights hash) with what its own run wrote.

Examples::

    python scripts/tracking_faults.py outage --down 20
    python scripts/tracking_faults.py closed-port
    python scripts/tracking_faults.py concurrent --code /path/to/other/checkout   # measure another checkout's code
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST = ["--image_size", "32", "--num_workers", "0", "--batch_size", "4", "--max_epochs", "3",
        "--network_kwargs", "{'features': [4, 4, 8, 16, 32, 4]}"]  # fmt: skip


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    """Whether ``url/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(folder: Path, port: int, timeout: float = 300) -> subprocess.Popen:
    """``mlflow server`` with a SQLite backend in ``folder`` on ``port`` (own process group); waits for /health."""
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(folder / "server.log", "a")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not healthy(f"http://127.0.0.1:{port}"):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server did not start: see {folder / 'server.log'}")
        time.sleep(0.5)
    return server


def stop(process: subprocess.Popen) -> None:
    """Kill a process group started with ``start_new_session``."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def bundle_copy(code: Path, folder: Path) -> Path:
    """A copy of the lung bundle's configs in ``folder`` (a bundle folder a user would train in)."""
    bundle = folder / "bundle"
    shutil.copytree(code / "bundles" / "chest_xray_lung_segmentation" / "configs", bundle / "configs")
    return bundle


def dataset(folder: Path, n: int = 12) -> Path:
    """The first ``n`` pairs of the committed JSRT sample."""
    sample = REPO / "pipeline" / "data" / "sample" / "jsrt30"
    target = folder / f"jsrt{n}"
    for sub in ("images", "masks"):
        (target / sub).mkdir(parents=True)
        for path in sorted((sample / sub).iterdir())[:n]:
            shutil.copy(path, target / sub / path.name)
    return target


def training(code: Path, bundle: Path, data: Path, extra: list[str], log: Path, uri: str | None) -> subprocess.Popen:
    """Start ``python -m monai.bundle run training --tracking mlflow`` in ``bundle`` with ``code`` on the path."""
    env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "['configs/common.yaml','configs/train.yaml']",
               "--tracking", "mlflow", "--dataset_dir", str(data), *FAST, *extra]  # fmt: skip
    if uri:
        command += ["--tracking_uri", uri]
    return subprocess.Popen(command, cwd=bundle, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


# `monai.bundle run training --tracking mlflow` in this process, plus a record of the weights hash of every checkpoint
# the CheckpointSaver writes (a new best): what the run itself wrote, to compare with what it registered.
DRIVER = """
import hashlib, sys, torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

data, lr, record, fast = sys.argv[1], float(sys.argv[2]), sys.argv[3], eval(sys.argv[4])
workflow = ConfigWorkflow(config_file=["configs/common.yaml", "configs/train.yaml"], workflow_type=None, run_id="training",
                          tracking="mlflow", bundle_root=".", dataset_dir=data, learning_rate=lr, **fast)
workflow.initialize()
validator = workflow.parser.get_parsed_content("validate#evaluator")
network = workflow.parser.get_parsed_content("network")

def weights_sha256(state):
    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(t.shape)}:{t.dtype}\\n".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()

def saved(engine):
    if engine.state.best_metric_epoch == engine.state.epoch:
        open(record, "a").write(weights_sha256(network.state_dict()) + "\\n")

validator.add_event_handler(Events.EPOCH_COMPLETED, saved)
workflow.run()
workflow.finalize()
"""

FAST_DICT = {"image_size": 32, "num_workers": 0, "batch_size": 4, "max_epochs": 3,
             "network_kwargs": {"features": [4, 4, 8, 16, 32, 4]}}  # fmt: skip


def runs_summary(uri: str) -> list[dict]:
    """Status, name and epochs with ``val_mean_dice`` of every run in the store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    out = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_mean_dice")]
            out.append({"run_name": run.info.run_name, "status": run.info.status, "val_dice_epochs": sorted(steps)})
    return out


def scenario_outage(code: Path, folder: Path, down: float) -> dict:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(folder, port)
    bundle = bundle_copy(code, folder)
    data = dataset(folder)
    start = time.monotonic()
    train = training(code, bundle, data, [], folder / "train.log", uri)
    checkpoint = bundle / "models" / "model.pt"
    while not checkpoint.exists() and train.poll() is None:
        time.sleep(0.2)
    killed_at = time.monotonic() - start
    stop(server)
    restarted_at = None
    while train.poll() is None:
        if restarted_at is None and time.monotonic() - start - killed_at >= down:
            server = start_server(folder, port)
            restarted_at = time.monotonic() - start
        time.sleep(0.2)
    finished = time.monotonic() - start
    if restarted_at is None:
        server = start_server(folder, port)
    result = {"scenario": "outage", "down_s": down, "killed_at_s": round(killed_at, 1),
              "restarted_at_s": None if restarted_at is None else round(restarted_at, 1),
              "training_s": round(finished, 1), "exit_code": train.returncode, "runs": runs_summary(uri)}  # fmt: skip
    pending = sorted((bundle / "models" / "mlflow-pending").glob("*/records.jsonl"))
    if pending:  # the training kept records it could not send: replay them now that the server is back
        env = {**os.environ, "PYTHONPATH": str(code)}
        replay = subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "--tracking-uri", uri, "replay",
                                 str(pending[0].parent)], env=env, capture_output=True, text=True)  # fmt: skip
        result.update(replay_exit_code=replay.returncode, replay_output=replay.stdout.strip()[-200:],
                      runs_after_replay=runs_summary(uri))
    stop(server)
    return result


def scenario_closed_port(code: Path, folder: Path) -> dict:
    uri = f"http://127.0.0.1:{free_port()}"
    bundle = bundle_copy(code, folder)
    data = dataset(folder)
    start = time.monotonic()
    train = training(code, bundle, data, [], folder / "train.log", uri)
    train.wait()
    lines = [line for line in (folder / "train.log").read_text().splitlines() if line.strip()]
    return {"scenario": "closed-port", "seconds": round(time.monotonic() - start, 1), "exit_code": train.returncode,
            "last_line": lines[-1][:300] if lines else ""}  # fmt: skip


def scenario_concurrent(code: Path, folder: Path, precreate: bool = False, run_name: str = "") -> dict:
    import torch

    bundle = bundle_copy(code, folder)
    data = dataset(folder)
    if precreate:  # the store exists already: isolates run identity and checkpoint ownership from schema creation
        from mlflow import MlflowClient

        (bundle / "eval").mkdir()
        MlflowClient(tracking_uri="sqlite:///" + str(bundle / "eval" / "mlruns.db")).search_experiments()
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    rates = ("0.01", "0.002")
    trainings = [
        subprocess.Popen([sys.executable, "-c", DRIVER, str(data), lr, str(folder / f"written{i}.txt"),
                          repr({**FAST_DICT, **({"run_name": run_name} if run_name else {})})],
                         cwd=bundle, env=env, stdout=open(folder / f"train{i}.log", "w"),
                         stderr=subprocess.STDOUT)  # fmt: skip
        for i, lr in enumerate(rates)
    ]
    codes = [t.wait() for t in trainings]
    seconds = time.monotonic() - start
    uri = "sqlite:///" + str(bundle / "eval" / "mlruns.db")
    result = {"scenario": "concurrent", "precreated_store": precreate, "run_name": run_name or "default",
              "seconds": round(seconds, 1), "exit_codes": codes}  # fmt: skip
    if not (bundle / "eval" / "mlruns.db").exists():
        return result
    from mlflow import MlflowClient

    for i in range(2):
        text = (folder / f"train{i}.log").read_text()
        errors = [line[:200] for line in text.splitlines() if "Error" in line][-2:]
        if errors:
            result[f"train{i}_errors"] = errors
    try:
        client = MlflowClient(tracking_uri=uri)
        result["runs"] = runs_summary(uri)
    except Exception as err:  # e.g. a store left half-migrated by two concurrent schema creations
        result["store_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        return result
    def own_last(run) -> bool | str:
        lr = run.data.params.get("learning_rate")
        if lr not in rates:
            return ""
        written = (folder / f"written{rates.index(lr)}.txt").read_text().split()
        return written[-1] if written else ""

    versions = []
    for version in client.search_model_versions("name = 'chest-xray-lung-seg'"):
        local = client.download_artifacts(version.run_id, "checkpoint/model.pt", str(folder / f"v{version.version}"))
        run = client.get_run(version.run_id)
        from pipeline.tracking.provenance import weights_sha256

        logged_weights = weights_sha256(local)
        steps = {m.step: m.value for m in client.get_metric_history(version.run_id, "val_mean_dice")}
        best = max(steps.values()) if steps else None
        # the registered TorchScript model's first weight tensor vs the run's own best Dice: re-validate is costly,
        # so compare the version's weights with the checkpoint the run logged and with the run's tag
        ts = client.download_artifacts(version.run_id, "torchscript/model.ts", str(folder / f"ts{version.version}"))
        scripted = torch.jit.load(ts, map_location="cpu").state_dict()
        state = torch.load(local, map_location="cpu", weights_only=True)["model"]
        same = all(torch.equal(scripted[k], state[k]) for k in state if k in scripted)
        versions.append({"version": version.version, "run_name": run.info.run_name, "run_best_val_dice": best,
                         "torchscript_equals_logged_checkpoint": same, "run_lr": run.data.params.get("learning_rate"),
                         "registered_weights_are_the_runs_own": logged_weights == own_last(run),
                         "logged_weights_sha256": logged_weights[:12],
                         "run_tag_weights_sha256": run.data.tags.get("weights_sha256", "")[:12]})  # fmt: skip
    result["versions"] = versions
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["outage", "closed-port", "concurrent"])
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose pipeline/ and bundle are measured")
    parser.add_argument("--down", type=float, default=20.0, help="outage: seconds the server stays down")
    parser.add_argument("--precreate", action="store_true", help="concurrent: create the store before both start")
    parser.add_argument("--run-name", default="", help="concurrent: give both trainings this run name (as two "
                        "trainings started in the same second get)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder (kept) instead of a temp one")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tracking-faults-")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(args.code), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    if args.scenario == "outage":
        result = scenario_outage(args.code, folder, args.down)
    elif args.scenario == "closed-port":
        result = scenario_closed_port(args.code, folder)
    else:
        result = scenario_concurrent(args.code, folder, args.precreate, args.run_name)
    result.update(code_commit=commit, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), folder=str(folder))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
