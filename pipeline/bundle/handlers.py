"""Handler lists per rank, early stopping on the validation metric, and log messages as a handler."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import EarlyStopHandler

__all__ = ["LogMessageHandler", "RankZeroHandlers", "ValidationEarlyStop", "batch_image_meta"]


class RankZeroHandlers:
    """Handlers only rank 0 attaches (logging, checkpoint saving, tracking); other ranks attach none of them.

    One entry of a trainer's or evaluator's handler list, so the list keeps the shape MONAI's workflow checks expect
    and nothing depends on the position of a handler. The multi-GPU overlay sets ``enabled`` from the process rank.

    Args:
        handlers: the handlers.
        enabled: whether this process attaches them (``is_rank0``).
    """

    def __init__(self, handlers: Iterable[Any], enabled: bool = True) -> None:
        self.handlers = [h for h in handlers if h is not None]
        self.enabled = bool(enabled)

    def attach(self, engine: Engine) -> None:
        """Attach every handler to ``engine`` (rank 0 only)."""
        if self.enabled:
            for handler in self.handlers:
                handler.attach(engine)


class ValidationEarlyStop(EarlyStopHandler):
    """Stop training when the validator's key metric has not improved for ``patience`` validations.

    Attach it to the *trainer* (it is in the trainer's handler list); it listens to the validator's completed runs,
    so it needs no ``set_trainer`` call in the config.

    Args:
        validator: the evaluator that computes ``metric``.
        patience: validations without improvement before stopping; 0 = never stop early (attaches nothing).
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
        """Bind the trainer ``engine`` and listen to the validator's epochs (nothing with patience 0)."""
        if self.patience <= 0:
            return
        self.set_trainer(engine)
        self.validator.add_event_handler(Events.EPOCH_COMPLETED, self)


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
