"""Handler lists per rank, early stopping on the validation metric, and log messages as a handler."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import EarlyStopHandler

__all__ = ["LogMessageHandler", "ValidationEarlyStop", "batch_image_meta", "early_stopping", "handler_list"]


def handler_list(every_rank: Iterable[Any] = (), rank0: Iterable[Any] = (), is_rank0: bool = True) -> list[Any]:
    """The handlers an engine attaches: ``every_rank`` always, ``rank0`` only on rank 0 (logging, saving, tracking).

    ``None`` entries (a handler switched off by its factory, e.g. :func:`early_stopping` with patience 0) are dropped.
    The multi-GPU overlay sets ``is_rank0`` from the process rank; nothing depends on the position of a handler.

    Args:
        every_rank: handlers every process needs (learning-rate schedule, validation, early stopping).
        rank0: handlers only rank 0 runs.
        is_rank0: whether this process is rank 0.
    """
    chosen = list(every_rank) + (list(rank0) if is_rank0 else [])
    return [h for h in chosen if h is not None]


class ValidationEarlyStop(EarlyStopHandler):
    """Stop training when the validator's key metric has not improved for ``patience`` validations.

    Attach it to the *trainer* (it is in the trainer's handler list); it listens to the validator's completed runs,
    so it needs no ``set_trainer`` call in the config.

    Args:
        validator: the evaluator that computes ``metric``.
        patience: validations without improvement before stopping.
        metric: name of the validator's metric (larger is better).
        min_delta: smallest change counted as an improvement.
    """

    def __init__(self, validator: Engine, patience: int, metric: str = "val_mean_dice", min_delta: float = 0.0) -> None:
        super().__init__(patience=patience, score_function=self._score, min_delta=min_delta, epoch_level=True)
        self.validator = validator
        self.metric = metric

    def _score(self, engine: Engine) -> float:
        return float(engine.state.metrics[self.metric])

    def attach(self, engine: Engine) -> None:
        """Bind the trainer ``engine`` and listen to the validator's epochs."""
        self.set_trainer(engine)
        self.validator.add_event_handler(Events.EPOCH_COMPLETED, self)


def early_stopping(validator: Engine, patience: int, metric: str = "val_mean_dice") -> ValidationEarlyStop | None:
    """:class:`ValidationEarlyStop`, or ``None`` (no early stopping) for ``patience`` 0."""
    return ValidationEarlyStop(validator, int(patience), metric) if int(patience) > 0 else None


class LogMessageHandler:
    """Log messages when an engine event fires (default: when the run starts), formatted with config values.

    In a config::

        - _target_: pipeline.bundle.LogMessageHandler
          messages: ['training {network_name} on {dataset_name}']
          values: {network_name: '@network_name', dataset_name: '@dataset_name'}

    Args:
        messages: ``str.format`` templates; empty ones are skipped (e.g. a device-dependent note on CUDA).
        values: the values the templates name.
        event: ignite event name (``STARTED``, ``COMPLETED``, ...).
        logger_name: logger to write to.
    """

    def __init__(self, messages: Iterable[str] | str, values: Mapping[str, Any] | None = None, event: str = "STARTED",
                 logger_name: str = "pipeline") -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        self.values = dict(values or {})
        self.event = Events[event.upper()]
        self.logger = logging.getLogger(logger_name)

    def attach(self, engine: Engine) -> None:
        """Log at the event of ``engine``."""
        engine.add_event_handler(self.event, self)

    def __call__(self, engine: Engine | None = None) -> None:
        """Write the messages."""
        for message in self.messages:
            if message:
                self.logger.info(message.format(**self.values))


def batch_image_meta(batch: Any) -> list[Any]:
    """The image metadata of every item of a (decollated) batch: what ``MetricsSaver`` names its rows by.

    In a config: ``batch_transform: {_target_: pipeline.bundle.batch_image_meta, _mode_: callable}``.
    """
    return [item["image"].meta for item in batch]
