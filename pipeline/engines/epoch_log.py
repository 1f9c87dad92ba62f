"""A readable one-line-per-epoch training log (loss, validation metrics, best so far, learning rate, time)."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["EpochSummaryHandler"]


class EpochSummaryHandler:
    """Log one line per epoch, e.g. ``epoch 3/40  loss 0.2341  val_mean_dice 0.9123 (best 0.9150 @ 2)  lr 1.0e-04  12.3 s``.

    Attach it to the trainer after the ``ValidationHandler`` so the validator's metrics of the same epoch are read.

    Args:
        validator: the evaluator whose ``state.metrics`` are reported (optional).
        key_metric: name of the validator's key metric, marked with its best value and epoch.
        optimizer: optimiser whose first parameter group's learning rate is reported (optional).
        logger_name: logger to write to. Defaults to ``"pipeline.train"``.
    """

    def __init__(
        self,
        validator: Engine | None = None,
        key_metric: str = "val_mean_dice",
        optimizer: Any = None,
        logger_name: str = "pipeline.train",
    ) -> None:
        self.validator = validator
        self.key_metric = key_metric
        self.optimizer = optimizer
        self.logger = logging.getLogger(logger_name)
        self._loss_sum = 0.0
        self._loss_n = 0
        self._start = 0.0
        self.best = -math.inf
        self.best_epoch = 0

    def attach(self, engine: Engine) -> None:
        """Register on the trainer's epoch and iteration events."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_started(self, engine: Engine) -> None:
        self._loss_sum, self._loss_n, self._start = 0.0, 0, time.perf_counter()

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        item = output[0] if isinstance(output, list) and output else output
        loss = item.get("loss") if isinstance(item, dict) else None
        if loss is not None:
            self._loss_sum += float(loss)
            self._loss_n += 1

    def _epoch_completed(self, engine: Engine) -> None:
        parts = [f"epoch {engine.state.epoch}/{engine.state.max_epochs}"]
        if self._loss_n:
            parts.append(f"loss {self._loss_sum / self._loss_n:.4f}")
        if self.validator is not None and self.validator.state.metrics:
            metrics = self.validator.state.metrics
            for name, value in metrics.items():
                if not isinstance(value, (int, float)):
                    continue
                text = f"{name} {value:.4f}"
                if name == self.key_metric:
                    if value > self.best:
                        self.best, self.best_epoch = float(value), engine.state.epoch
                    text += f" (best {self.best:.4f} @ {self.best_epoch})"
                parts.append(text)
        if self.optimizer is not None:
            parts.append(f"lr {self.optimizer.param_groups[0]['lr']:.1e}")
        parts.append(f"{time.perf_counter() - self._start:.1f} s")
        self.logger.info("  ".join(parts))
