"""Test-set evaluation in MLflow: an evaluation run nested under the training run that made the checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from pipeline.tracking.params import datalist_params, flatten_params
from pipeline.tracking.provenance import file_sha256, weights_sha256
from pipeline.tracking.buffer import BufferedClient, TrackingBuffer
from pipeline.tracking.connection import bound_http_requests, check_tracking_uri
from pipeline.tracking.session import TrackedRun, find_mlflow_handler, open_run
from pipeline.tracking.store import guard_sqlite_schema_creation

__all__ = ["MLflowEvaluationHandler", "find_training_run", "test_metric_name"]

logger = logging.getLogger(__name__)


def test_metric_name(name: str, prefix: str = "test_") -> str:
    """``val_mean_dice`` -> ``test_mean_dice``: the evaluator reuses the validation metric names."""
    return prefix + (name[len("val_") :] if name.startswith("val_") else name)


def find_training_run(client: Any, weights_sha: str) -> str | None:
    """Id of the newest training run whose best checkpoint holds these weights (tag ``weights_sha256``), or None."""
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return None
    runs = client.search_runs(
        experiment_ids,
        filter_string=f"tags.weights_sha256 = '{weights_sha}' and tags.run_kind = 'training'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


class MLflowEvaluationHandler:
    """Record a test-set evaluation in MLflow; does nothing when the evaluation is not tracked.

    With ``--tracking``, MONAI's ``MLFlowHandler`` on the evaluator opens an evaluation run (named by the
    ``run_name`` of ``evaluate.yaml``, e.g. ``eval-basic_unet-jsrt30-<time>``) and logs the evaluator's metrics
    under their validation names. This handler then:

    * links that run to the training run whose best checkpoint is being evaluated (found by the SHA-256 of the
      checkpoint's weights, which survives the temperature the evaluation adds to the file): it becomes a nested
      child run (``mlflow.parentRunId``), tagged ``training_run_id``;
    * logs the metrics as ``test_*`` (``val_mean_dice`` -> ``test_mean_dice``) in the evaluation run **and** in
      the training run, and as tags on the model versions registered from that training run, together with the
      ``evaluation.temperature`` fitted into the checkpoint (if any), for information: a version is immutable;
    * uploads the report folder (CSV, JSON, figures) under ``evaluation/`` in both runs;
    * ends the evaluation run (MONAI's validator settings leave it open).

    Place it after the handlers that write the report (``MetricsSaver``), so their files exist at ``COMPLETED``.

    Args:
        checkpoint: the evaluated checkpoint.
        report_dir: folder of the evaluation report, uploaded when the evaluation completes.
        params: settings to record on the evaluation run (e.g. network and dataset names).
        datalist: the bundle's datalist (images per split, hash).
        link_training_run: find and link the training run. Defaults to True.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        report_dir: str | Path | None = None,
        params: Mapping[str, Any] | None = None,
        datalist: Mapping[str, Any] | None = None,
        link_training_run: bool = True,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.report_dir = Path(report_dir) if report_dir else None
        self.params = dict(params or {})
        self.datalist = datalist
        self.link_training_run = link_training_run
        self.run: TrackedRun | None = None
        self.buffer: TrackingBuffer | None = None
        self.training_run_id: str | None = None
        guard_sqlite_schema_creation()  # before MONAI's MLFlowHandler (listed after this one) opens the store

    def attach(self, engine: Engine) -> None:
        """Register on the evaluator."""
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        """Open the evaluation run (no-op without tracking), record what is evaluated and link the training run.

        As in training, the store must answer within 10 s, the run is opened by id, and writes go through a
        :class:`~pipeline.tracking.buffer.TrackingBuffer` (kept during an outage, sent when the store is back).
        """
        handler = find_mlflow_handler(engine)
        if handler is None:
            return
        bound_http_requests()
        check_tracking_uri(str(handler.client.tracking_uri))
        self.buffer = TrackingBuffer(handler.client)
        run = open_run(handler, BufferedClient(self.buffer))
        self.run = TrackedRun(handler.client, run.info.run_id)
        found = self.checkpoint.is_file()
        weights = weights_sha256(self.checkpoint) if found else "missing"
        params = {**flatten_params(self.params), "checkpoint": str(self.checkpoint)}
        if self.datalist is not None:
            params.update(datalist_params(self.datalist))
        self.run.log_params(params)
        tags = {"run_kind": "evaluation", "weights_sha256": weights,
                "checkpoint_sha256": file_sha256(self.checkpoint) if found else "missing"}
        if self.link_training_run and found:
            self.training_run_id = find_training_run(self.run.client, weights)
        if self.training_run_id:
            tags.update({"mlflow.parentRunId": self.training_run_id, "training_run_id": self.training_run_id})
            logger.info("evaluation run linked to training run %s", self.training_run_id)
        else:
            logger.info("no tracked training run made %s: the evaluation run stands alone", self.checkpoint)
        self.run.set_tags(tags)

    def completed(self, engine: Engine) -> None:
        """Log ``test_*`` metrics and the report in the evaluation and training runs; end the evaluation run."""
        if self.run is None:
            return
        metrics = {test_metric_name(k): v for k, v in engine.state.metrics.items()}
        runs = [self.run]
        if self.training_run_id:
            runs.append(TrackedRun(self.run.client, self.training_run_id))
        for run in runs:
            run.log_metrics(metrics)
            if self.report_dir is not None and self.report_dir.is_dir() and any(self.report_dir.iterdir()):
                run.log_artifact(self.report_dir, "evaluation")
        if self.training_run_id:
            self._tag_model_versions(metrics)
        self.run.client.set_terminated(self.run.run_id, "FINISHED")
        if self.buffer is not None and not self.buffer.drain(120.0):
            folder = (self.report_dir or self.checkpoint.parent) / "mlflow-pending" / self.run.run_id
            self.buffer.save(folder)
            logger.error("MLflow store %s did not answer: the evaluation's records are kept in %s; once it is back: "
                         "xray-seg models --tracking-uri %s replay %s", self.buffer.tracking_uri, folder,
                         self.buffer.tracking_uri, folder)  # fmt: skip
        if self.buffer is not None:
            self.buffer.close()

    def _tag_model_versions(self, metrics: Mapping[str, Any]) -> None:
        """Write the test metrics, and a temperature fitted into the checkpoint, on the training run's versions."""
        client = self.run.client  # type: ignore[union-attr]
        try:
            versions = client.search_model_versions(f"run_id = '{self.training_run_id}'")
        except Exception as err:  # a store without a registry
            logger.debug("no model versions searched: %s", err)
            return
        tags = {k: repr(float(v)) for k, v in metrics.items() if _is_float(v)}
        temperature = _checkpoint_temperature(self.checkpoint)
        if temperature is not None:
            # for information: a registered version is immutable, so it keeps serving the artifact it was logged with
            tags["evaluation.temperature"] = repr(temperature)
        try:
            for version in versions:
                for key, value in tags.items():
                    client.set_model_version_tag(version.name, version.version, key, value)
        except Exception as err:  # the registry became unreachable: the run's own records are still kept
            logger.error("could not tag the model versions of run %s: %s", self.training_run_id, err)


def _is_float(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


def _checkpoint_temperature(checkpoint: Path) -> float | None:
    """The temperature in the model artifact of ``checkpoint`` (fitted by calibration), if the file is readable."""
    from pipeline.model import ModelFileError, read_artifact

    try:
        return read_artifact(checkpoint).temperature
    except (OSError, ModelFileError):
        return None
