"""Helpers of the MLflow tests: paths, fast bundle settings, in-process bundle runs (imported by name, not a test)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")  # offline: no pip dry run in log_model

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "chest_xray_lung_segmentation"
SETTINGS_FILE = REPO / "configs" / "mlflow_tracking.yaml"
MODEL_NAME = "chest-xray-lung-seg"

SAMPLE = REPO / "pipeline" / "data" / "sample" / "jsrt30"

#: Small and fast: a 31 k-parameter BasicUNet at 32 px (``dataset_dir`` is set by :func:`make_dataset`).
FAST = {
    "image_size": 32,
    "num_workers": 0,
    "batch_size": 4,
    "network_kwargs": {"features": [4, 4, 8, 16, 32, 4]},
}


def run_bundle(run_id: str, configs: list[str], tracking: str | None, before_run: Any = None, **overrides: Any) -> Any:
    """Run a bundle workflow in this process (as ``python -m monai.bundle run RUN_ID ...`` does); returns it.

    ``before_run(workflow)`` is called between initialisation and the run (to attach test hooks).
    """
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / name) for name in configs],
        logging_file=False,
        run_id=run_id,
        workflow_type=None,
        tracking=tracking,
        bundle_root=str(BUNDLE),
        **overrides,
    )
    workflow.initialize()
    if before_run is not None:
        before_run(workflow)
    try:
        workflow.run()
    finally:
        workflow.finalize()
    return workflow


def tracking_handler(workflow: Any) -> Any:
    """The project's ``MLflowTrainingHandler`` of an initialised training workflow."""
    from pipeline.tracking import MLflowTrainingHandler

    def flat(handlers: Any) -> Any:  # pipeline.bundle.RankZeroHandlers groups the rank-0 handlers
        for h in handlers:
            yield from flat(h.handlers) if hasattr(h, "handlers") else (h,)

    return next(h for h in flat(workflow.parser.get_parsed_content("train#handlers"))
                if isinstance(h, MLflowTrainingHandler))


def train(workdir: Path, tracking: str | None, tracking_uri: str | None, before_run: Any = None,
          **overrides: Any) -> dict[str, Any]:  # fmt: skip
    """A short tracked training; returns the run id, model version, best Dice and paths."""
    settings = {**FAST, "output_dir": f"$'{workdir / 'eval'}'", "ckpt_dir": str(workdir / "models"), **overrides}
    if tracking_uri:
        settings["tracking_uri"] = tracking_uri
    workflow = run_bundle("training", ["common.yaml", "train.yaml"], tracking, before_run=before_run, **settings)
    handler = tracking_handler(workflow)
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    return {
        "workflow": workflow,
        "run_id": handler.run.run_id if handler.run else None,
        "version": handler.model_version,
        "best": float(evaluator.state.best_metric),
        "checkpoint": workdir / "models" / "model.pt",
        "output_dir": workdir / "eval",
        "overrides": settings,
    }


def make_dataset(folder: Path, n: int = 12) -> Path:
    """The first ``n`` image/mask pairs of the embedded JSRT sample in ``folder/jsrt12`` (fewer images, faster runs)."""
    target = folder / f"jsrt{n}"
    for sub in ("images", "masks"):
        (target / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((SAMPLE / sub).iterdir())[:n]:
            (target / sub / path.name).write_bytes(path.read_bytes())
    return target


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifacts) that a test can kill and restart.

    ``kill`` ends its whole process group (the server and its uvicorn worker) with SIGKILL, as a crash or a pulled
    cable would; ``start`` brings it back on the same port with the same database.
    """

    def __init__(self, folder: Path, template_db: Path | None = None, startup_timeout: float = 240.0) -> None:
        import shutil
        import socket

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if template_db is not None:
            shutil.copy(template_db, self.folder / "server.db")  # tables already created: a faster start
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.process: Any = None

    def start(self) -> MlflowServer:
        """Start it and wait until ``/health`` answers."""
        import subprocess
        import sys
        import time

        from pipeline.tracking.connection import server_answers

        command = [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.folder / "server.log", "a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while not server_answers(self.url, timeout=1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{(self.folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        return self

    def kill(self) -> None:
        """SIGKILL the server's process group and wait for it."""
        import signal

        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.process = None
