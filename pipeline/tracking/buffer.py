"""Keep tracking records while the store is unreachable and send them, in order, once it answers again.

:class:`TrackingBuffer` sits between the training and the MLflow client. A write (metrics, parameters, tags,
artifacts, the run's end, the model) is sent at once while the store answers; when a call fails because the store
cannot be reached, the failure is logged **once**, the record is kept, and so is every later record (files are
copied, since the originals may be temporary). Every ``retry_interval`` seconds one cheap probe asks whether the
server is back; when it is, the kept records go out in their original order. At the end of the run
:meth:`TrackingBuffer.drain` waits a bounded time for the store; what still cannot be sent is written to a folder
next to the training outputs (``records.jsonl`` plus the files), and ``xray-seg models replay FOLDER`` sends it
later.

:class:`BufferedClient` wraps an ``MlflowClient`` so that MONAI's ``MLFlowHandler`` and the project's handlers write
through one buffer without knowing it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.tracking.connection import is_remote, is_transport_error, server_answers

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["RECORDS_FILE", "BufferedClient", "TrackingBuffer", "replay_records"]

logger = logging.getLogger(__name__)

#: File of a pending-records folder: one JSON record a line, in the order they were made.
RECORDS_FILE = "records.jsonl"

#: Record kinds a buffer can hold and replay.
_OPS = ("log_batch", "log_artifact", "log_artifacts", "log_dict", "set_terminated", "publish_model")


class TrackingBuffer:
    """Send tracking records now when the store answers, keep them when it does not, and send them later.

    Args:
        client: the real ``MlflowClient`` (the records are sent through it).
        retry_interval: seconds between probes of an unreachable server. Defaults to 15.
        stage_dir: folder that receives copies of files logged while the store is unreachable; a temporary
            folder by default.

    Attributes:
        pending: records not yet sent, oldest first (JSON-able dicts).
        failures: how many sends failed because the store was unreachable.
        blocked_seconds: time the caller spent waiting on the unreachable store (failed sends and probes).
    """

    def __init__(self, client: MlflowClient, retry_interval: float = 15.0, stage_dir: str | Path | None = None):
        self.client = client
        self.retry_interval = float(retry_interval)
        self._stage_dir = Path(stage_dir) if stage_dir else None
        self.pending: list[dict[str, Any]] = []
        self.failures = 0
        self.blocked_seconds = 0.0
        self.online = True
        self._next_probe = 0.0
        self._lock = threading.RLock()
        self._staged = 0

    @property
    def tracking_uri(self) -> str:
        """URI of the store the records go to."""
        return str(self.client.tracking_uri)

    # ---- recording ------------------------------------------------------------------------------------------------
    def submit(self, record: dict[str, Any]) -> None:
        """Send ``record`` (after any older pending ones) or keep it; never raises for an unreachable store.

        Raises:
            mlflow.exceptions.MlflowException: the store answered and refused the record (a real error).
        """
        if record["op"] not in _OPS:
            raise ValueError(f"unknown tracking record {record['op']!r}; expected one of {_OPS}")
        with self._lock:
            if self.online and not self.pending:
                started = time.monotonic()
                try:
                    self._send(record)
                    return
                except Exception as err:
                    if not is_transport_error(err):
                        raise
                    self.blocked_seconds += time.monotonic() - started
                    self._went_offline(err)
            self.pending.append(self._stage(record))
            if time.monotonic() >= self._next_probe:
                self.flush()

    def flush(self) -> bool:
        """Send the pending records if the store answers; returns whether none is left."""
        with self._lock:
            if not self.pending:
                return True
            started = time.monotonic()
            if is_remote(self.tracking_uri) and not server_answers(self.tracking_uri):
                self.blocked_seconds += time.monotonic() - started
                self._next_probe = time.monotonic() + self.retry_interval
                return False
            sent = 0
            try:
                while self.pending:
                    try:
                        self._send(self.pending[0])
                    except Exception as err:
                        if is_transport_error(err):
                            raise
                        logger.error("MLflow refused a kept record (%s: %s); dropping it", type(err).__name__, err)
                    self.pending.pop(0)
                    sent += 1
            except Exception as err:
                self.blocked_seconds += time.monotonic() - started
                self._went_offline(err)
                return False
            finally:
                if sent:
                    logger.info("MLflow store %s answers again: sent %d kept records", self.tracking_uri, sent)
            self.online = True
            return True

    def drain(self, timeout: float = 120.0) -> bool:
        """Wait up to ``timeout`` seconds for the store to take every pending record; returns whether it did."""
        deadline = time.monotonic() + max(0.0, timeout)
        if self.pending:
            logger.warning(
                "waiting up to %.0f s for MLflow store %s to take %d kept tracking records",
                timeout, self.tracking_uri, len(self.pending),
            )  # fmt: skip
        while not self.flush():
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        return True

    def save(self, folder: str | Path) -> Path:
        """Write the pending records (and the files they need) to ``folder``, for ``xray-seg models replay``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            stage = self._stage_dir
            if stage is not None and stage.resolve() != folder.resolve() and stage.is_dir():
                for item in stage.iterdir():
                    target = folder / item.name
                    if item.is_dir():
                        shutil.copytree(item, target, dirs_exist_ok=True)
                    else:
                        shutil.copy2(item, target)
            tmp = folder / (RECORDS_FILE + ".tmp")
            tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in self.pending))
            tmp.replace(folder / RECORDS_FILE)
        return folder

    def close(self) -> None:
        """Delete the temporary copies of kept files (after :meth:`drain` succeeded or :meth:`save` wrote them)."""
        if self._stage_dir is not None and self._stage_dir.name.startswith("mlflow-pending-"):
            shutil.rmtree(self._stage_dir, ignore_errors=True)
            self._stage_dir = None

    # ---- internals ------------------------------------------------------------------------------------------------
    def _went_offline(self, err: BaseException) -> None:
        self.failures += 1
        self._next_probe = time.monotonic() + self.retry_interval
        if self.online:
            logger.warning(
                "MLflow store %s is unreachable (%s); training goes on, tracking records are kept and sent when it "
                "answers again (checked every %.0f s)", self.tracking_uri, _short(err), self.retry_interval,
            )  # fmt: skip
        self.online = False

    def stage_dir(self) -> Path:
        """The folder holding copies of files logged while the store was unreachable (created on first use)."""
        if self._stage_dir is None:
            self._stage_dir = Path(tempfile.mkdtemp(prefix="mlflow-pending-"))
        self._stage_dir.mkdir(parents=True, exist_ok=True)
        return self._stage_dir

    def _stage(self, record: dict[str, Any]) -> dict[str, Any]:
        """Copy the files a record points at into the stage folder (they may be temporary); paths become relative."""
        key = {"log_artifact": "local_path", "log_artifacts": "local_dir", "publish_model": "package"}.get(record["op"])
        if key is None or record.get("staged"):
            return record
        source = Path(record[key])
        self._staged += 1
        target = self.stage_dir() / f"{self._staged:04d}" / source.name
        target.parent.mkdir(parents=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        return {**record, key: str(target.relative_to(self.stage_dir())), "staged": True}

    def _send(self, record: dict[str, Any]) -> None:
        root = self.stage_dir() if record.get("staged") else None
        send_record(self.client, record, root)


def send_record(client: MlflowClient, record: dict[str, Any], root: Path | None = None) -> None:
    """Execute one record with ``client``; relative file paths are resolved under ``root``."""
    from mlflow.entities import Metric, Param, RunTag

    op, run_id = record["op"], record["run_id"]

    def path(key: str) -> str:
        return str(root / record[key]) if root is not None and record.get("staged") else str(record[key])

    if op == "log_batch":
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), int(t), int(s)) for k, v, t, s in record.get("metrics", [])],
            params=[Param(k, str(v)) for k, v in record.get("params", [])],
            tags=[RunTag(k, str(v)) for k, v in record.get("tags", [])],
        )
    elif op == "log_artifact":
        client.log_artifact(run_id, path("local_path"), record.get("artifact_path"))
    elif op == "log_artifacts":
        client.log_artifacts(run_id, path("local_dir"), record.get("artifact_path"))
    elif op == "log_dict":
        client.log_dict(run_id, record["dictionary"], record["artifact_file"])
    elif op == "set_terminated":
        client.set_terminated(run_id, record.get("status") or "FINISHED", record.get("end_time"))
    elif op == "publish_model":
        from pipeline.tracking.publish import publish_model

        publish_model(client, run_id, path("package"))
    else:
        raise ValueError(f"unknown tracking record {op!r}")


def replay_records(folder: str | Path, client: MlflowClient) -> int:
    """Send the records a training left in ``folder`` (``records.jsonl``), in order; returns how many were sent.

    Records already sent are dropped from the file as it goes, so an interrupted replay can be run again.

    Raises:
        FileNotFoundError: no ``records.jsonl`` in ``folder``.
    """
    folder = Path(folder)
    records_file = folder / RECORDS_FILE
    records = [json.loads(line) for line in records_file.read_text().splitlines() if line.strip()]
    sent = 0
    for index, record in enumerate(records):
        send_record(client, {**record, "staged": record.get("staged", False)}, folder)
        sent += 1
        rest = records[index + 1 :]
        records_file.write_text("".join(json.dumps(r, default=str) + "\n" for r in rest))
    return sent


class BufferedClient:
    """An ``MlflowClient`` stand-in whose writes go through a :class:`TrackingBuffer`; reads go to the client.

    Reads of a run (``get_run``) answer from the last good copy while the store is unreachable, so MONAI's handler
    can go on checking which parameters it already logged.
    """

    def __init__(self, buffer: TrackingBuffer) -> None:
        self._buffer = buffer
        self._client = buffer.client
        self._runs: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property
    def buffer(self) -> TrackingBuffer:
        """The buffer the writes go through."""
        return self._buffer

    # ---- writes ---------------------------------------------------------------------------------------------------
    def log_batch(self, run_id: str, metrics: Sequence[Any] = (), params: Sequence[Any] = (),
                  tags: Sequence[Any] = (), synchronous: bool | None = None) -> None:  # fmt: skip
        """Log metrics, parameters and tags (kept while the store is unreachable)."""
        record = {
            "op": "log_batch",
            "run_id": run_id,
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics or ()],
            "params": [[p.key, p.value] for p in params or ()],
            "tags": [[t.key, t.value] for t in tags or ()],
        }
        if record["metrics"] or record["params"] or record["tags"]:
            self._buffer.submit(record)

    def log_metric(self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int | None = None,
                   **_: Any) -> None:  # fmt: skip
        """One metric (see :meth:`log_batch`)."""
        stamp = int(time.time() * 1000) if timestamp is None else int(timestamp)
        self._buffer.submit({"op": "log_batch", "run_id": run_id, "metrics": [[key, float(value), stamp, step or 0]]})

    def log_param(self, run_id: str, key: str, value: Any, **_: Any) -> Any:
        """One parameter (see :meth:`log_batch`)."""
        self._buffer.submit({"op": "log_batch", "run_id": run_id, "params": [[key, str(value)]]})
        return value

    def set_tag(self, run_id: str, key: str, value: Any, **_: Any) -> None:
        """One tag (see :meth:`log_batch`)."""
        self._buffer.submit({"op": "log_batch", "run_id": run_id, "tags": [[key, str(value)]]})

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Upload a file (copied aside while the store is unreachable)."""
        self._buffer.submit({"op": "log_artifact", "run_id": run_id, "local_path": str(local_path),
                             "artifact_path": artifact_path})  # fmt: skip

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Upload a folder's content (copied aside while the store is unreachable)."""
        self._buffer.submit({"op": "log_artifacts", "run_id": run_id, "local_dir": str(local_dir),
                             "artifact_path": artifact_path})  # fmt: skip

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        """A JSON/YAML artifact (the mapping is kept while the store is unreachable)."""
        payload = json.loads(json.dumps(dictionary, default=str))
        self._buffer.submit({"op": "log_dict", "run_id": run_id, "dictionary": payload,
                             "artifact_file": artifact_file})  # fmt: skip

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End the run (kept, with its end time, while the store is unreachable)."""
        stamp = int(time.time() * 1000) if end_time is None else int(end_time)
        self._buffer.submit({"op": "set_terminated", "run_id": run_id, "status": status or "FINISHED",
                             "end_time": stamp})  # fmt: skip

    # ---- reads that must not fail during an outage ---------------------------------------------------------------
    def get_run(self, run_id: str) -> Any:
        """The run; its last good copy while the store is unreachable."""
        try:
            run = self._client.get_run(run_id)
        except Exception as err:
            if not is_transport_error(err) or run_id not in self._runs:
                raise
            return self._runs[run_id]
        self._runs[run_id] = run
        return run

    def remember(self, run: Any) -> None:
        """Keep ``run`` as the last good copy of itself (e.g. right after creating it)."""
        self._runs[run.info.run_id] = run


def _short(err: BaseException) -> str:
    """First line of an error, at most 200 characters (MLflow's messages carry whole tracebacks)."""
    return (str(err).splitlines() or [type(err).__name__])[0][:200]
