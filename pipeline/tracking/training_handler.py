"""The training run's content beyond MONAI's ``MLFlowHandler``: parameters, per-epoch summaries, model, registry."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Engine, Events

from pipeline.keys import Keys
from pipeline.tracking.export import best_network, save_torchscript, trace_network
from pipeline.tracking.naming import DEFAULT_MODEL_NAME
from pipeline.tracking.params import datalist_params, describe_training_objects, flatten_params
from pipeline.tracking.provenance import file_sha256, git_commit, package_versions, weights_sha256
from pipeline.tracking.registry import apply_promotion_rule, log_model_version
from pipeline.tracking.session import TrackedRun, tracked_run_of

__all__ = ["MLflowTrainingHandler"]

logger = logging.getLogger(__name__)


class MLflowTrainingHandler:
    """Complete the MLflow run of a bundle training; does nothing when the training is not tracked.

    MONAI's ``MLFlowHandler`` (added by ``--tracking mlflow`` or a settings file) opens the run and logs the
    per-iteration loss, the validator's metrics per epoch and the executed config. This handler finds that run on
    the trainer and adds:

    * at start: parameters (``params`` plus network class and size, loss, optimiser, images per split, datalist
      hash, package versions, git commit), tags, and ``datalist.json``;
    * every epoch: ``train_loss_epoch`` (mean over the epoch), ``learning_rate`` and ``best_<key_metric>``;
    * at the end: the best checkpoint (``checkpoint/model.pt``), a TorchScript export (``torchscript/model.ts``,
      with the preprocessing settings inside), and the MLflow model (TorchScript, signature, input example),
      registered as a new version of ``registered_model_name`` with alias ``challenger`` (and ``champion`` when
      its validation metric beats the champion's) if ``register_model``.

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
        self.run: TrackedRun | None = None
        self.model_version: str | None = None
        self._loss_sum = 0.0
        self._loss_n = 0
        self._started_at = 0.0

    def attach(self, engine: Engine) -> None:
        """Register on the trainer (after the ``ValidationHandler``, so each epoch's validation is done)."""
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    # ---- events ---------------------------------------------------------------------------------------------------
    def started(self, engine: Engine) -> None:
        """Find the run (no-op without tracking) and log parameters, tags and the datalist."""
        self._started_at = time.time()
        self.run = tracked_run_of(engine)
        if self.run is None:
            logger.debug("no MLFlowHandler on the trainer: MLflow logging is off")
            return
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
        }
        if self.datalist is not None:
            tags["datalist_hash"] = self.datalist.get("hash", "")
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
        if loss is not None:
            self._loss_sum += float(loss)
            self._loss_n += 1

    def epoch_completed(self, engine: Engine) -> None:
        """Log the epoch's mean training loss, learning rate and best validation metric so far."""
        if self.run is None:
            return
        metrics: dict[str, float] = {}
        if self._loss_n:
            metrics["train_loss_epoch"] = self._loss_sum / self._loss_n
        if self.optimizer is not None:
            metrics["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        best = self._best()
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

    # ---- helpers --------------------------------------------------------------------------------------------------
    def _best(self) -> tuple[float, int] | None:
        state = getattr(self.validator, "state", None)
        best, epoch = getattr(state, "best_metric", None), getattr(state, "best_metric_epoch", -1)
        if best is None or epoch is None or int(epoch) < 1:
            return None
        return float(best), int(epoch)

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
        ckpt = self.checkpoint
        if ckpt is None or self.network is None or not ckpt.is_file() or ckpt.stat().st_mtime < self._started_at - 1:
            logger.warning("no checkpoint written by this run (%s): nothing to log or register", ckpt)
            return
        sha, weights = file_sha256(ckpt), weights_sha256(ckpt)
        run.log_artifact(ckpt, "checkpoint")
        network, artifact = best_network(self.network, ckpt)
        example = self._example(artifact.image_size)
        traced = trace_network(network, example)
        with tempfile.TemporaryDirectory() as tmp:
            run.log_artifact(save_torchscript(traced, os.path.join(tmp, "model.ts"), artifact), "torchscript")
        run_info = run.client.get_run(run.run_id).info
        tags: dict[str, Any] = {"checkpoint_sha256": sha, "weights_sha256": weights, "run_name": run_info.run_name}
        if best is not None:
            tags[self.key_metric], tags["best_epoch"] = repr(best[0]), best[1]
            run.log_metrics({"best_epoch": best[1]})
        run.set_tags({"checkpoint_sha256": sha, "weights_sha256": weights})  # evaluations find the run by weights
        register = self.register_model and best is not None
        if self.register_model and best is None:
            logger.warning("no validation metric recorded: the model is logged but not registered")
        description = (
            f"{artifact.network_name} trained on {self.params.get('dataset_name', '?')}"
            f" (run {run_info.run_name})"
            + (f": {self.key_metric} {best[0]:.4f} at epoch {best[1]}" if best is not None else "")
        )
        model_uri, version = log_model_version(
            run,
            traced,
            example,
            artifact,
            ckpt,
            registered_model_name=self.registered_model_name if register else None,
            version_tags=tags,
            description=description,
        )
        run.set_tags({"model_uri": model_uri})
        if version is not None and best is not None:
            self.model_version = version
            decision = apply_promotion_rule(run.client, self.registered_model_name, version, best[0], self.key_metric)
            run.set_tags({
                "registered_model": f"{self.registered_model_name}/{version}",
                "promotion.decision": "champion" if decision.promoted else "challenger",
                "promotion.reason": decision.reason,
            })


def _as_bool(value: bool | str) -> bool:
    """``--register_model false`` arrives as the string ``"false"`` from the bundle command line."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off", "none")
    return bool(value)
