"""Find the MLflow run MONAI's ``MLFlowHandler`` opened for an engine, and log to it.

``python -m monai.bundle run ... --tracking mlflow`` (or a settings file) appends MONAI's ``MLFlowHandler`` to the
bundle's trainer and validator handlers. The project's handlers do not open runs of their own: they look for that
handler on their engine and write into its run, so a bundle run without ``--tracking`` logs nothing to MLflow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ignite.engine import Engine, Events

from pipeline.tracking.params import to_param_value

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from monai.handlers import MLFlowHandler

__all__ = [
    "TrackedRun",
    "detach_handler",
    "find_handler",
    "find_mlflow_handler",
    "get_or_create_experiment",
    "join_run",
    "open_run",
    "tracked_run_of",
]

logger = logging.getLogger(__name__)

_BATCH = 100  # MLflow's log_batch accepts at most 100 parameters per call


def find_handler(engine: Engine | None, cls: type) -> Any:
    """The handler of class ``cls`` attached to ``engine`` (found through its event callbacks), or None."""
    for entries in getattr(engine, "_event_handlers", {}).values():
        for callback, _, _ in entries:
            parent = getattr(callback, "_parent", None)  # ignite wraps callbacks that take no engine argument
            callback = parent() if parent is not None else callback
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, cls):
                return owner
    return None


def find_mlflow_handler(engine: Engine | None) -> MLFlowHandler | None:
    """MONAI's ``MLFlowHandler`` attached to ``engine``, or None."""
    from monai.handlers import MLFlowHandler

    return find_handler(engine, MLFlowHandler)


def detach_handler(engine: Engine, owner: Any) -> int:
    """Remove every callback of the handler object ``owner`` from ``engine``; returns how many were removed."""
    removed = 0
    for event, entries in list(getattr(engine, "_event_handlers", {}).items()):
        for callback, _, _ in list(entries):
            parent = getattr(callback, "_parent", None)
            bound = parent() if parent is not None else callback
            if getattr(bound, "__self__", None) is owner:
                entries[:] = [e for e in entries if e[0] is not callback]
                removed += 1
    return removed


def open_run(handler: MLFlowHandler, client: Any, run_name: str | None = None) -> Any:
    """Create a new run for MONAI's ``handler`` (by id, never joining an open run of the same name) and give it
    ``client``.

    MONAI's handler would otherwise look for an unfinished run with its run name and reuse it, so two trainings
    started in the same second (or with the same ``--run_name``) would write into one run.

    Returns:
        The created run (also ``handler.cur_run``).
    """
    handler.client = client
    handler.experiment = get_or_create_experiment(client, handler.experiment_name, handler.artifact_location)
    name = run_name or handler.run_name or f"run_{time.strftime('%Y%m%d_%H%M%S')}"
    run = client.create_run(experiment_id=handler.experiment.experiment_id, run_name=name)
    if hasattr(client, "remember"):
        client.remember(run)
    handler.cur_run = run
    return run


def get_or_create_experiment(client: Any, name: str, artifact_location: str | None = None) -> Any:
    """The active experiment ``name``, created if needed; safe when another process creates it at the same moment.

    MONAI's handler retries only on a server's ``RESOURCE_ALREADY_EXISTS`` message; a SQLite store reports the race
    as an ``IntegrityError``. Either way the experiment exists afterwards: read it again.

    Raises:
        ValueError: the experiment exists but was deleted (restore it or choose another name).
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(5):
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                client.create_experiment(name, artifact_location=artifact_location)
            except MlflowException as err:
                if "already exists" not in str(err) and err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                time.sleep(0.2 * (attempt + 1))  # another process created it: read it back
            continue
        if experiment.lifecycle_stage != "active":
            raise ValueError(f"MLflow experiment {name!r} is deleted: restore it (mlflow experiments restore) or "
                             "choose another --experiment_name.")  # fmt: skip
        return experiment
    raise RuntimeError(f"MLflow experiment {name!r} could not be created or read in {client.tracking_uri}")


def join_run(handler: MLFlowHandler, owner: MLFlowHandler) -> None:
    """Make ``handler`` (e.g. the validator's) write into ``owner``'s run, through ``owner``'s client."""
    handler.client = owner.client
    handler.experiment = owner.experiment
    handler.cur_run = owner.cur_run


@dataclass
class TrackedRun:
    """One MLflow run and the client that reaches it, with the few writes the pipeline needs.

    Attributes:
        client: MLflow client (tracking store and registry).
        run_id: the run's id.
    """

    client: MlflowClient
    run_id: str

    @property
    def tracking_uri(self) -> str:
        """URI of the store the run lives in."""
        return str(self.client.tracking_uri)

    def log_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Log parameters, skipping those already logged (MLflow forbids changing a parameter's value).

        Returns:
            The parameters that were already logged with a different value (left unchanged), normally empty.
        """
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = {k: to_param_value(v) for k, v in params.items()}
        conflicts = {k: v for k, v in new.items() if k in logged and logged[k] != v}
        for key, value in conflicts.items():
            logger.warning("parameter %s already logged as %r; not changing it to %r", key, logged[key], value)
        items = [Param(k, v) for k, v in new.items() if k not in logged]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH])
        return conflicts

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log numeric metrics at ``step`` (non-numeric values are skipped)."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(k, float(v), stamp, int(step)) for k, v in metrics.items() if _is_number(v)]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values become strings)."""
        from mlflow.entities import RunTag

        items = [RunTag(k, to_param_value(v)) for k, v in tags.items()]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file, or a folder's content, under ``artifact_path``."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, payload: Mapping[str, Any], artifact_file: str) -> None:
        """Write a mapping as a JSON (or YAML, by extension) artifact."""
        self.client.log_dict(self.run_id, dict(payload), artifact_file)


def tracked_run_of(engine: Engine) -> TrackedRun | None:
    """The run MONAI's ``MLFlowHandler`` on ``engine`` logs to, opening it now if the handler has not yet.

    ``MLFlowHandler.start`` is idempotent (it reuses its run), so calling it ahead of its own ``STARTED`` callback
    only moves the run's creation earlier.

    Returns:
        The run, or None when no ``MLFlowHandler`` is attached (tracking is off).
    """
    handler = find_mlflow_handler(engine)
    if handler is None:
        return None
    if handler.cur_run is None:
        handler.start(engine)
    return TrackedRun(handler.client, handler.cur_run.info.run_id)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor with more than one element
        return False
    return True
