"""The training run's content beyond MONAI's ``MLFlowHandler``: parameters, per-epoch summaries, model, registry."""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Engine, Events

from pipeline.keys import Keys
from pipeline.tracking.buffer import BufferedClient, TrackingBuffer
from pipeline.tracking.connection import TrackingUnavailableError, bound_http_requests, check_tracking_uri
from pipeline.tracking.export import best_network, save_torchscript, trace_network
from pipeline.tracking.naming import DEFAULT_MODEL_NAME
from pipeline.tracking.params import datalist_params, describe_training_objects, flatten_params, lineage_tags
from pipeline.tracking.provenance import (
    file_sha256,
    git_commit,
    package_versions,
    state_weights_sha256,
    weights_sha256,
)
from pipeline.tracking.publish import ModelPackage, write_package
from pipeline.tracking.session import TrackedRun, detach_handler, find_handler, find_mlflow_handler, join_run, open_run
from pipeline.tracking.store import guard_sqlite_schema_creation

#: Environment variable: what a training does when its tracking store cannot be reached at start:
#: ``fail`` (default: stop within ~10 s with the fix in the message) or ``skip`` (train without tracking, say so).
UNREACHABLE_ENV = "XRAY_SEG_TRACKING_UNREACHABLE"

__all__ = ["UNREACHABLE_ENV", "MLflowTrainingHandler"]

logger = logging.getLogger(__name__)


class MLflowTrainingHandler:
    """Complete the MLflow run of a bundle training and keep it alive through outages; no-op when not tracked.

    MONAI's ``MLFlowHandler`` (added by ``--tracking mlflow`` or a settings file) logs the per-iteration loss, the
    validator's metrics per epoch and the executed config. This handler, listed before it, makes that run safe and
    complete:

    * at start: checks the tracking store answers (within ``connect_timeout`` seconds; see ``if_unreachable``),
      bounds MLflow's HTTP retries and timeouts, opens a **new** run by id (never another process's open run of the
      same name) for the trainer's and the validator's ``MLFlowHandler``, and routes every write through one
      :class:`~pipeline.tracking.buffer.TrackingBuffer`: when the store becomes unreachable, training goes on, the
      failure is logged once and the records are kept and sent in order when it answers again. Then it logs
      parameters (``params`` plus network class and size, loss, optimiser, images per split, datalist hash,
      package versions, git commit), tags, and ``datalist.json``;
    * every epoch: ``train_loss_epoch`` (mean over the epoch), ``learning_rate`` and ``best_<key_metric>``; after a
      validation that saved a new best checkpoint, a copy of what the ``CheckpointSaver`` saved, and its weights
      hash: the checkpoint this run logs and registers is the one **it** wrote, even when another training in the
      same bundle folder overwrote ``model.pt`` since;
    * at the end: the best checkpoint (``checkpoint/model.pt``), a TorchScript export (``torchscript/model.ts``,
      with the preprocessing settings inside), and the MLflow model (TorchScript, signature, input example),
      registered as a new version of ``registered_model_name`` if ``register_model``; the promotion rule
      (:func:`~pipeline.tracking.registry.apply_promotion_rule`) gives it ``champion`` or ``challenger``. Then it
      waits up to ``drain_timeout`` seconds for kept records to go out; whatever cannot be sent is written to
      ``pending_dir/<run id>/`` for ``xray-seg models replay``;
    * on an exception or Ctrl-C: the run ends ``FAILED`` or ``KILLED`` (normal ends are ``FINISHED``).

    Without an ``MLFlowHandler`` on the trainer (no ``--tracking``, or a rank other than 0), every event is a no-op.

    Args:
        validator: the validation evaluator (its ``best_metric`` / ``best_metric_epoch`` drive the registry).
        network: the trained network (possibly DDP-wrapped); a copy receives the best checkpoint.
        checkpoint: path of the best checkpoint written by ``CheckpointSaver`` (``<ckpt_dir>/model.pt``).
        params: settings to record (nested mappings named ``augment`` are expanded); the model's own settings
            travel in its artifact (:mod:`pipeline.model`), logged with it.
        datalist: the bundle's datalist (splits and ``hash``); logged as ``datalist.json``.
        loss: the loss object (its class is recorded).
        optimizer: the optimiser (class, hyper-parameters; its first group's learning rate per epoch).
        key_metric: the validator's key metric. Defaults to ``val_mean_dice``.
        register_model: register the best model (``"false"`` / ``"0"`` from the command line count as False).
            Defaults to True.
        registered_model_name: registered model name. Defaults to ``chest-xray-lung-seg``.
        connect_timeout: seconds the store may take to answer at start. Defaults to 10.
        if_unreachable: ``"fail"`` (raise :class:`~pipeline.tracking.connection.TrackingUnavailableError`) or
            ``"skip"`` (train without tracking and say so) when the store does not answer at start. Defaults to
            ``$XRAY_SEG_TRACKING_UNREACHABLE``, else ``"fail"``.
        retry_interval: seconds between probes of an unreachable server during training. Defaults to 15.
        drain_timeout: seconds to wait at the end for an unreachable server to take the kept records.
            Defaults to 120.
        pending_dir: where records that could not be sent are left. Defaults to ``<checkpoint folder>/mlflow-pending``.

    Examples::

        # train.yaml, in train#handlers after the ValidationHandler
        - _target_: pipeline.tracking.MLflowTrainingHandler
          validator: '@validate#evaluator'
          network: '@network'
          checkpoint: $@ckpt_dir + '/model.pt'
          params: {network_name: '@network_name', image_size: '@image_size'}
    """

    def __init__(
        self,
        validator: Engine | None = None,
        network: nn.Module | None = None,
        checkpoint: str | Path | None = None,
        params: Mapping[str, Any] | None = None,
        datalist: Mapping[str, Any] | None = None,
        loss: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        key_metric: str = "val_mean_dice",
        register_model: bool | str = True,
        registered_model_name: str = DEFAULT_MODEL_NAME,
        connect_timeout: float = 10.0,
        if_unreachable: str | None = None,
        retry_interval: float = 15.0,
        drain_timeout: float = 120.0,
        pending_dir: str | Path | None = None,
    ) -> None:
        self.validator = validator
        self.network = network
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.params = dict(params or {})
        self.datalist = datalist
        self.loss = loss
        self.optimizer = optimizer
        self.key_metric = key_metric
        self.register_model = _as_bool(register_model)
        self.registered_model_name = registered_model_name
        self.connect_timeout = float(connect_timeout)
        self.if_unreachable = (if_unreachable or os.environ.get(UNREACHABLE_ENV) or "fail").strip().lower()
        if self.if_unreachable not in ("fail", "skip"):
            raise ValueError(
                f"if_unreachable / ${UNREACHABLE_ENV} must be 'fail' or 'skip', got {self.if_unreachable!r}"
            )
        self.retry_interval = float(retry_interval)
        self.drain_timeout = float(drain_timeout)
        self.pending_dir = Path(pending_dir) if pending_dir else None
        self.run: TrackedRun | None = None
        self.buffer: TrackingBuffer | None = None
        self.model_version: str | None = None
        self.own_checkpoint: dict[str, Any] | None = None  # what the CheckpointSaver saved at this run's best epoch
        self.own_weights_sha256: str | None = None
        self._own_epoch = -1
        self._loss_sum = 0.0
        self._loss_n = 0
        self._started_at = 0.0
        self._ended = False
        guard_sqlite_schema_creation()  # before MONAI's MLFlowHandler (listed after this one) opens the store

    def attach(self, engine: Engine) -> None:
        """Register on the trainer (after the ``ValidationHandler``, so each epoch's validation is done)."""
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    # ---- events ---------------------------------------------------------------------------------------------------
    def started(self, engine: Engine) -> None:
        """Check the store, open the run, route writes through the buffer; log parameters, tags and the datalist."""
        self._started_at = time.time()
        handler = find_mlflow_handler(engine)
        if handler is None:
            logger.debug("no MLFlowHandler on the trainer: MLflow logging is off")
            return
        validator_handler = find_mlflow_handler(self.validator)
        uri = str(handler.client.tracking_uri)
        bound_http_requests()
        try:
            check_tracking_uri(uri, timeout=self.connect_timeout)
        except TrackingUnavailableError as err:
            if self.if_unreachable != "skip":
                raise
            logger.warning("%s\nTraining goes on WITHOUT experiment tracking (%s=skip).", err, UNREACHABLE_ENV)
            for eng, owner in ((engine, handler), (self.validator, validator_handler)):
                if eng is not None and owner is not None:
                    detach_handler(eng, owner)
            return
        self.buffer = TrackingBuffer(handler.client, retry_interval=self.retry_interval)
        run = open_run(handler, BufferedClient(self.buffer))
        if validator_handler is not None:
            join_run(validator_handler, handler)
        self.run = TrackedRun(handler.client, run.info.run_id)
        logger.info("MLflow run %s (%s) in %s", run.info.run_name, run.info.run_id, uri)
        # after MONAI's handlers (attached before STARTED): end of the run once MONAI's close has been recorded
        engine.add_event_handler(Events.COMPLETED, self._drain)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.failed)
        handlers = engine._event_handlers[Events.EXCEPTION_RAISED]
        handlers.insert(0, handlers.pop())  # first: StatsHandler's exception handler re-raises, skipping the rest
        commit, dirty = git_commit()
        versions = package_versions()
        params = {
            **flatten_params(self.params),
            **describe_training_objects(self.network, self.loss, self.optimizer),
            **(datalist_params(self.datalist) if self.datalist is not None else {}),
            **{f"version.{name}": version for name, version in versions.items()},
            "git_commit": commit,
            "git_dirty": dirty,
        }
        self.run.log_params(params)
        tags = {
            "run_kind": "training",
            "mlflow.source.git.commit": commit,
            "network": self.params.get("network_name", params.get("network_class", "")),
            "dataset": self.params.get("dataset_name", ""),
            "metric_definition": self._metric_definition(),
        }
        if self.datalist is not None:
            tags["datalist_hash"] = self.datalist.get("hash", "")
            tags.update(lineage_tags(self.datalist))
            self.run.log_dict(self.datalist, "datalist.json")
        self.run.set_tags(tags)

    def _epoch_started(self, engine: Engine) -> None:
        self._loss_sum, self._loss_n = 0.0, 0

    def _iteration_completed(self, engine: Engine) -> None:
        if self.run is None:
            return
        output = engine.state.output
        item = output[0] if isinstance(output, list) and output else output
        loss = item.get(Keys.LOSS.value) if isinstance(item, dict) else None
        if loss is not None:  # a tensor, or (a batch kept whole by decollate=False) a sequence of them
            values = [float(v) for v in loss] if isinstance(loss, (list, tuple)) else [float(loss)]
            self._loss_sum += sum(values) / max(1, len(values))
            self._loss_n += 1

    def epoch_completed(self, engine: Engine) -> None:
        """Keep this run's new best checkpoint; log the epoch's mean loss, learning rate and best metric so far."""
        if self.run is None:
            return
        best = self._best()
        if best is not None and best[1] == engine.state.epoch and best[1] != self._own_epoch:
            self._keep_own_checkpoint(best[1])
        metrics: dict[str, float] = {}
        if self._loss_n:
            metrics["train_loss_epoch"] = self._loss_sum / self._loss_n
        if self.optimizer is not None:
            metrics["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        if best is not None:
            metrics[f"best_{self.key_metric}"] = best[0]
        self.run.log_metrics(metrics, step=engine.state.epoch)

    def completed(self, engine: Engine) -> None:
        """Log the best checkpoint and its TorchScript export; log and register the model."""
        if self.run is None:
            return
        try:
            self._log_best_model()
        except Exception as err:  # the training itself succeeded: report, tag the run, let MONAI close it
            logger.exception("logging / registering the best model failed")
            self.run.set_tags({"model_logging_error": f"{type(err).__name__}: {err}"})

    def failed(self, engine: Engine, error: BaseException) -> None:
        """End the run ``KILLED`` (Ctrl-C) or ``FAILED`` (an exception), send or keep the records; re-raise."""
        if self.run is None or self._ended:
            return
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        handler = find_mlflow_handler(engine)
        if handler is not None:
            handler.cur_run = None  # nothing else may end it FINISHED
        try:
            self.run.set_tags({"error": f"{type(error).__name__}: {error}"[:500]})
            self.run.client.set_terminated(self.run.run_id, status)
            self._drain(engine, timeout=min(self.drain_timeout, 10.0))
            logger.info("MLflow run %s ended %s", self.run.run_id, status)
        except Exception:  # never hide the training's own error behind a tracking one
            logger.exception("could not record the end of MLflow run %s", self.run.run_id)
        if len(engine._event_handlers.get(Events.EXCEPTION_RAISED, [])) <= 1:
            raise error  # no other handler re-raises it

    def _drain(self, engine: Engine | None = None, timeout: float | None = None) -> None:
        """Send what the buffer kept (waiting up to ``drain_timeout``); leave the rest in ``pending_dir``."""
        if self.buffer is None or self._ended:
            return
        self._ended = True
        if self.buffer.drain(self.drain_timeout if timeout is None else timeout):
            self.buffer.close()
            return
        folder = self._pending_folder()
        self.buffer.save(folder)
        self.buffer.close()
        logger.error(
            "MLflow store %s did not answer: %d tracking records of run %s are kept in %s. Once the server is back: "
            "xray-seg models --tracking-uri %s replay %s", self.buffer.tracking_uri, len(self.buffer.pending),
            self.run.run_id if self.run else "?", folder, self.buffer.tracking_uri, folder,
        )  # fmt: skip

    # ---- helpers --------------------------------------------------------------------------------------------------
    def _pending_folder(self) -> Path:
        root = self.pending_dir or (self.checkpoint.parent if self.checkpoint else Path.cwd()) / "mlflow-pending"
        return root / (self.run.run_id if self.run else "unknown")

    def _best(self) -> tuple[float, int] | None:
        state = getattr(self.validator, "state", None)
        best, epoch = getattr(state, "best_metric", None), getattr(state, "best_metric_epoch", -1)
        if best is None or epoch is None or int(epoch) < 1:
            return None
        return float(best), int(epoch)

    def _metric_definition(self) -> str:
        """How the key metric is measured: its name, class and options, the network input size and the classes.

        Two versions' figures are compared by the promotion rule only when this string is the same for both, e.g.
        ``val_mean_dice=MeanDice(get_not_nans=False, ignore_empty=True, include_background=True, ...);image_size=256;
        num_classes=1``.
        """
        state = getattr(self.validator, "state", None)
        name = getattr(state, "key_metric_name", None) or self.key_metric
        kind = "?"
        for entries in getattr(self.validator, "_event_handlers", {}).values():
            for callback, args, _ in entries:
                owner = getattr(callback, "__self__", None)
                if args and args[0] == name and owner is not None and hasattr(owner, "compute"):
                    fn = getattr(owner, "metric_fn", owner)
                    options = {k: v for k, v in vars(fn).items()
                               if not k.startswith("_") and isinstance(v, (bool, int, float, str))}  # fmt: skip
                    kind = f"{type(owner).__name__}({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})"
        return (f"{name}={kind};image_size={self.params.get('image_size', '?')};"
                f"num_classes={self.params.get('num_classes', '?')}")  # fmt: skip

    def _keep_own_checkpoint(self, epoch: int) -> None:
        """Copy, in memory, what the validator's ``CheckpointSaver`` has just saved (its ``save_dict``'s states)."""
        from monai.handlers import CheckpointSaver

        saver = find_handler(self.validator, CheckpointSaver)
        if saver is None or not getattr(saver, "save_dict", None):
            return
        state: dict[str, Any] = {}
        for key, obj in saver.save_dict.items():
            if isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
                obj = obj.module  # as ignite's Checkpoint unwraps them
            state[key] = _cpu_copy(obj.state_dict())
        self.own_checkpoint = state[next(iter(state))] if len(state) == 1 else state  # as ignite's Checkpoint saves
        self.own_weights_sha256 = state_weights_sha256(self.own_checkpoint)
        self._own_epoch = epoch

    def _own_checkpoint_file(self, folder: Path) -> Path | None:
        """A private copy, in ``folder``, of the checkpoint this run wrote; everything logged is read from it.

        ``checkpoint`` is copied once and kept only if the copy holds this run's weights; otherwise (another
        training in the same folder has overwritten the file) the copy is written from memory. Reading the shared
        file only once means a later overwrite cannot change what is logged and registered.
        """
        ckpt = self.checkpoint
        own = folder / "checkpoint" / (ckpt.name if ckpt is not None else "model.pt")
        own.parent.mkdir(parents=True, exist_ok=True)
        if self.own_checkpoint is None:  # no CheckpointSaver found: trust the file if this run wrote it
            if ckpt is None or not ckpt.is_file() or ckpt.stat().st_mtime < self._started_at - 1:
                return None
            shutil.copyfile(ckpt, own)
            return own
        if ckpt is not None and ckpt.is_file():
            shutil.copyfile(ckpt, own)
            if weights_sha256(own) == self.own_weights_sha256:
                return own
        torch.save(self.own_checkpoint, own)
        logger.warning(
            "%s no longer holds this run's weights (another training wrote it); logging and registering this run's "
            "own best checkpoint (epoch %d) instead", ckpt, self._own_epoch,
        )  # fmt: skip
        return own

    def _example(self, image_size: int) -> torch.Tensor:
        """A real preprocessed validation image ``(1, 1, S, S)`` when available, else zeros."""
        try:
            image = self.validator.data_loader.dataset[0][Keys.IMAGE.value]  # type: ignore[union-attr]
            image = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)  # no MetaTensor
            image = image.float()
            if image.ndim == 3:
                return image[None].cpu()
        except Exception as err:  # any dataset shape or access problem: fall back
            logger.debug("no validation image for the input example: %s", err)
        return torch.zeros(1, 1, image_size, image_size)

    def _log_best_model(self) -> None:
        run = self.run
        assert run is not None
        best = self._best()
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = self._own_checkpoint_file(Path(tmp)) if self.network is not None else None
            if ckpt is None:
                logger.warning("no checkpoint written by this run (%s): nothing to log or register", self.checkpoint)
                return
            sha, weights = file_sha256(ckpt), weights_sha256(ckpt)
            run.log_artifact(ckpt, "checkpoint")
            network, artifact = best_network(self.network, ckpt)
            example = self._example(artifact.image_size)
            traced = trace_network(network, example)
            run.log_artifact(save_torchscript(traced, os.path.join(tmp, "model.ts"), artifact), "torchscript")
            run_name = run.client.get_run(run.run_id).info.run_name
            datalist_hash = str((self.datalist or {}).get("hash", ""))
            tags: dict[str, Any] = {"checkpoint_sha256": sha, "weights_sha256": weights, "run_name": run_name,
                                    "datalist_hash": datalist_hash, "metric_definition": self._metric_definition()}
            lineage = lineage_tags(self.datalist, artifact.provenance)
            tags.update(lineage)
            if best is not None:
                tags[self.key_metric], tags["best_epoch"] = repr(best[0]), best[1]
                run.log_metrics({"best_epoch": best[1]})
            if lineage:
                run.set_tags(lineage)  # fine_tuned_from is known once the best checkpoint's artifact is read
            run.set_tags({"checkpoint_sha256": sha, "weights_sha256": weights})  # evaluations find the run by weights
            register = self.register_model and best is not None
            if self.register_model and best is None:
                logger.warning("no validation metric recorded: the model is logged but not registered")
            description = (
                f"{artifact.network_name} trained on {self.params.get('dataset_name', '?')} (run {run_name})"
                + (f": {self.key_metric} {best[0]:.4f} at epoch {best[1]}" if best is not None else "")
            )
            package = ModelPackage(
                registered_model_name=self.registered_model_name if register else "",
                version_tags=tags,
                description=description,
                key_metric=self.key_metric,
                value=best[0] if best is not None else None,
                datalist_hash=datalist_hash,
                metric_definition=self._metric_definition(),
            )
            folder = write_package(Path(tmp) / "model-package", traced, example, ckpt, package)
            self.buffer.submit({"op": "publish_model", "run_id": run.run_id, "package": str(folder)})
        self.model_version = self._registered_version()

    def _registered_version(self) -> str | None:
        """The version this run registered (None: not registered, or not yet: the store is unreachable)."""
        try:
            tag = self.run.client.get_run(self.run.run_id).data.tags.get("registered_model", "")
        except Exception:
            return None
        return tag.rsplit("/", 1)[-1] if tag else None


def _cpu_copy(value: Any) -> Any:
    """A deep copy of a state dict with every tensor on the CPU (the training goes on changing the originals)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return copy.deepcopy(value)


def _as_bool(value: bool | str) -> bool:
    """``--register_model false`` arrives as the string ``"false"`` from the bundle command line."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off", "none")
    return bool(value)
