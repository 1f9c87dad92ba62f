"""Fit temperature scaling on the validation split through a MONAI evaluator, and store it with the checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from pipeline.keys import Keys
from pipeline.model import read_artifact, update_model
from pipeline.postprocessing.temperature import calibration_before_after, fit_temperature, save_temperature

__all__ = ["TemperatureFitHandler", "store_temperature"]

logger = logging.getLogger(__name__)


def store_temperature(checkpoint: str | Path, temperature: float, out: str | Path | None = None) -> Path:
    """Store ``temperature`` in the model artifact of ``checkpoint`` as a new revision (into ``out`` when given).

    Returns:
        The file written.
    """
    artifact = read_artifact(checkpoint)
    return update_model(checkpoint, artifact.replace(temperature=float(temperature)), out=out)


class TemperatureFitHandler:
    """Collect raw logits and labels of an evaluator run, fit ``T`` when it completes, and store it.

    Attach it to a ``SupervisedEvaluator`` over the validation split whose post-processing leaves the logits in
    ``pred`` (no activation). ``T`` goes into the checkpoint (read back by the Predictor at inference) and into
    ``<checkpoint dir>/temperature.json`` with the validation ECE before and after.

    Args:
        checkpoint: the checkpoint to store ``T`` in.
        json_path: where to write the JSON; defaults to ``temperature.json`` beside the checkpoint.
        max_pixels: pixels used for the fit (uniform subsample).
    """

    def __init__(self, checkpoint: str | Path, json_path: str | Path | None = None, max_pixels: int = 1_000_000) -> None:
        self.checkpoint = Path(checkpoint)
        self.json_path = Path(json_path) if json_path else self.checkpoint.with_name("temperature.json")
        self.max_pixels = max_pixels
        self.temperature: float | None = None
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def attach(self, engine: Engine) -> None:
        """Register on the evaluator's events."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._fit)

    def _reset(self, engine: Engine) -> None:
        self._logits, self._labels = [], []

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        for item in items:
            self._logits.append(torch.as_tensor(item[Keys.PRED.value]).detach().float().cpu())
            self._labels.append(torch.as_tensor(item[Keys.LABEL.value]).detach().cpu())

    def _fit(self, engine: Engine) -> None:
        if not self._logits:
            logger.warning("no validation images: temperature not fitted")
            return
        logits = torch.stack([torch.as_tensor(x) for x in self._logits])
        labels = torch.stack([torch.as_tensor(y) for y in self._labels]).round().long()
        self.temperature = fit_temperature(logits, labels, max_pixels=self.max_pixels)
        stats = calibration_before_after(logits, labels, self.temperature)
        store_temperature(self.checkpoint, self.temperature)
        save_temperature(self.json_path, self.temperature, **{k: v for k, v in stats.items() if k != "temperature"},
                         split="validation", images=len(self._logits))
        logger.info(
            "temperature scaling: T = %.3f on %d validation images (ECE %.4f -> %.4f); stored in %s",
            self.temperature, len(self._logits), stats["ece_before"], stats["ece_after"], self.checkpoint,
        )
