"""Training ends calibrated: fit the calibration and the QC reference on the validation split, store both in the model.

:class:`CalibrationHandler` is attached to the trainer (``train#handlers`` of the bundle). When training completes it
loads the best checkpoint, runs it over the validation split (the validator's own loader, batch preparation and
inferer; and once more on the horizontally flipped images for the test-time-augmentation score), fits the
calibration (:func:`pipeline.postprocessing.calibration.fit_calibration`), computes every QC score on the calibrated
validation predictions and stores ``calibration`` and ``qc_reference`` in the checkpoint's model artifact, so
``make train`` alone gives a calibrated model that knows what "unusual" means for it.

:func:`calibrate_model` is the same computation on arrays, for scripts (``scripts/benchmark_qc.py``) and tests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from pipeline.metrics.calibration import CalibrationAccumulator
from pipeline.metrics.qc import qc_scores
from pipeline.metrics.qc_reference import build_qc_reference
from pipeline.metrics.utils import class_probabilities
from pipeline.postprocessing.calibration import apply_calibration, fit_calibration
from pipeline.postprocessing.cleanup import clean_lung_mask

__all__ = ["DEFAULT_CALIBRATION", "DEFAULT_CLEANUP", "CalibrationHandler", "calibrate_model", "calibration_errors_pooled",
           "masks_from_probabilities"]

logger = logging.getLogger(__name__)

DEFAULT_CALIBRATION: str = "isotonic"
"""Method fitted at the end of training for one-channel (lung) networks; multi-class networks get ``temperature``.
Chosen by measurement (``scripts/benchmark_qc.py``, ``docs/results.md``): on JSRT test the only method with ECE
<= 0.01 and ACE below the uncalibrated ACE; one temperature lowers ECE but raises ACE and MCE (the border bins)."""

DEFAULT_CLEANUP: bool = True
"""Lung cleanup (two largest components, holes filled) stored as the model's default for one-channel networks.
Chosen by measurement: OpenIST mean Dice 0.910 -> 0.920 and worst 0.714 -> 0.798, JSRT test unchanged (+0.0006)."""


def masks_from_probabilities(prob: np.ndarray, threshold: float = 0.5, cleanup: bool = False) -> np.ndarray:
    """``(N, C, H, W)`` probabilities → ``(N, H, W)`` uint8 label maps, as inference makes them."""
    if prob.shape[1] == 1:
        masks = (prob[:, 0] > threshold).astype(np.uint8)
        if cleanup:
            masks = np.stack([clean_lung_mask(m).astype(np.uint8) for m in masks])
        return masks
    return prob.argmax(1).astype(np.uint8)


def calibration_errors_pooled(prob: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ECE, ACE and MCE of the foreground (lung) class, pixels of all images pooled, 20 equal-width bins.

    Args:
        prob: ``(N, C, H, W)`` probabilities.
        labels: ``(N, H, W)`` classes.
    """
    k = max(2, prob.shape[1])
    acc = CalibrationAccumulator(k)
    for p, y in zip(prob, labels):
        cp = class_probabilities(p)
        acc.add(cp, cp.argmax(0), y)
    res = acc.result()["per_class"]
    return {m: float(np.nanmean(res[m][1:])) for m in ("ece", "ace", "mce")}


def calibrate_model(
    logits: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    images: np.ndarray | torch.Tensor | None = None,
    flipped_logits: np.ndarray | torch.Tensor | None = None,
    method: str | None = None,
    threshold: float = 0.5,
    cleanup: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Fit a calibration on validation outputs and build the QC reference from the calibrated predictions.

    Args:
        logits: ``(N, C, H, W)`` raw network outputs on the validation images.
        labels: ``(N, H, W)`` or ``(N, 1, H, W)`` ground truth.
        images: ``(N, 1, H, W)`` network inputs (for the ``outside_body`` score), or ``None``.
        flipped_logits: outputs on the horizontally flipped inputs, flipped back (for ``tta_disagreement``).
        method: calibration method; default :data:`DEFAULT_CALIBRATION` (``temperature`` for multi-class).
        threshold: lung probability threshold of the masks.
        cleanup: apply the lung cleanup to the masks (as inference will when the artifact says so).

    Returns:
        ``(calibration, qc_reference, summary)``: the two artifact entries and the validation ECE/ACE/MCE before
        and after.
    """
    z = torch.as_tensor(logits).detach().float().cpu()
    y = torch.as_tensor(labels).detach().cpu()
    y = (y[:, 0] if y.ndim == z.ndim else y).round().long()
    if method is None:
        method = DEFAULT_CALIBRATION if z.shape[1] == 1 else "temperature"
    calibration = fit_calibration(z, y, method=method)
    prob = apply_calibration(z, calibration).numpy()
    raw = apply_calibration(z, None).numpy()
    masks = masks_from_probabilities(prob, threshold, cleanup)
    tta = None if flipped_logits is None else apply_calibration(torch.as_tensor(flipped_logits).float().cpu(),
                                                                calibration).numpy()
    imgs = None if images is None else torch.as_tensor(images).detach().float().cpu().numpy()
    rows = [
        qc_scores(prob[i], masks[i], image=None if imgs is None else imgs[i], tta_prob=None if tta is None else tta[i])
        for i in range(len(prob))
    ]
    y_np = y.numpy()
    summary = {"images": len(prob), "method": calibration["method"],
               "before": calibration_errors_pooled(raw, y_np), "after": calibration_errors_pooled(prob, y_np)}
    reference = build_qc_reference(rows, split="validation", calibration=calibration["method"], cleanup=bool(cleanup))
    return calibration, reference, summary


def _store(checkpoint: Path, calibration: Mapping[str, Any], reference: Mapping[str, Any], cleanup: bool) -> str:
    """Write calibration, QC reference and cleanup default into the checkpoint's artifact (a new revision)."""
    from pipeline.model import read_artifact, update_model

    artifact = read_artifact(checkpoint)
    # the calibration (a temperature among them) lives in ``calibration`` only: inference applies it once, through
    # apply_calibration(logits, artifact.calibration); ``temperature`` stays for models calibrated before it existed
    new = artifact.replace(calibration=dict(calibration), qc_reference=dict(reference), cleanup=bool(cleanup))
    update_model(checkpoint, new)
    return f"revision {new.revision}"


class CalibrationHandler:
    """At the end of training: calibrate the best checkpoint on the validation split and store its QC reference.

    Args:
        validator: the training's validation evaluator (its loader, ``prepare_batch``, inferer and network are used).
        checkpoint: the best checkpoint written by the validator's ``CheckpointSaver`` (``<ckpt_dir>/model.pt``).
        method: calibration method (default :data:`DEFAULT_CALIBRATION`; ``temperature`` for multi-class).
        cleanup: the model's lung-cleanup default, stored in the artifact and used for the reference masks;
            ``None``: :data:`DEFAULT_CLEANUP` for one-channel networks, off for multi-class ones.
        tta: also run the horizontally flipped images (for the ``tta_disagreement`` score).
        report: JSON file for the summary (validation ECE/ACE/MCE before and after, reference limits); default
            ``calibration.json`` beside the checkpoint.
        enabled: ``False`` makes it a no-op (e.g. for smoke tests).

    Example (bundle YAML, in ``train#handlers``, before the MLflow handler so the logged model is calibrated)::

        - _target_: pipeline.engines.CalibrationHandler
          validator: '@validate#evaluator'
          checkpoint: $@ckpt_dir + '/model.pt'
    """

    def __init__(
        self,
        validator: Engine,
        checkpoint: str | Path,
        method: str | None = None,
        cleanup: bool | None = None,
        tta: bool = True,
        report: str | Path | None = None,
        enabled: bool = True,
    ) -> None:
        self.validator = validator
        self.checkpoint = Path(checkpoint)
        self.method = method
        self.cleanup = cleanup
        self.tta = bool(tta)
        self.report = Path(report) if report else self.checkpoint.with_name("calibration.json")
        self.enabled = bool(enabled)
        self.calibration: dict[str, Any] | None = None
        self.qc_reference: dict[str, Any] | None = None
        self.summary: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        """Run at the trainer's ``COMPLETED`` event."""
        engine.add_event_handler(Events.COMPLETED, self)

    @torch.no_grad()
    def _collect(self, network: torch.nn.Module) -> dict[str, np.ndarray]:
        v = self.validator
        out: dict[str, list[np.ndarray]] = {"logits": [], "labels": [], "images": [], "flipped": []}
        network.eval()
        for batchdata in v.data_loader:
            inputs, targets, *_ = v.prepare_batch(batchdata, v.state.device or v.device, v.non_blocking)
            with torch.autocast(inputs.device.type, **v.amp_kwargs) if v.amp else nullcontext():
                logits = v.inferer(inputs, network).float()
                if self.tta:
                    flipped = v.inferer(torch.flip(inputs, dims=(-1,)), network).float().flip(-1)
                    out["flipped"].append(flipped.cpu().numpy())
            out["logits"].append(logits.cpu().numpy())
            out["labels"].append(torch.as_tensor(targets).float().cpu().numpy())
            out["images"].append(torch.as_tensor(inputs).float().cpu().numpy())
        return {k: np.concatenate(x) for k, x in out.items() if x}

    def __call__(self, engine: Engine) -> None:
        """Load the best weights, run the validation split, fit, compute the reference, store both."""
        if not self.enabled:
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return  # multi-GPU training: rank 0 writes the model file
        if not self.checkpoint.is_file():
            logger.warning("no checkpoint at %s: the model was not calibrated", self.checkpoint)
            return
        from pipeline.model import load_model

        network = self.validator.network
        inner = network.module if hasattr(network, "module") else network
        artifact, weights = load_model(self.checkpoint)
        inner.load_state_dict(weights)
        data = self._collect(inner)  # the bare module: a DDP wrapper would wait for the other ranks
        if "logits" not in data:
            logger.warning("no validation images: the model was not calibrated")
            return
        cleanup = (DEFAULT_CLEANUP and artifact.binary) if self.cleanup is None else bool(self.cleanup)
        self.calibration, self.qc_reference, self.summary = calibrate_model(
            data["logits"], data["labels"], data.get("images"), data.get("flipped"), method=self.method,
            threshold=float(artifact.threshold), cleanup=cleanup,
        )
        note = _store(self.checkpoint, self.calibration, self.qc_reference, cleanup)
        limits = {k: {s: v for s, v in e.items() if s in ("low", "high")}
                  for k, e in self.qc_reference["scores"].items()}
        _write_json(self.report, {**self.summary, "checkpoint": self.checkpoint.name, "stored_as": note,
                                  "calibration": {k: v for k, v in self.calibration.items() if k not in ("x", "y")},
                                  "qc_limits": limits})
        b, a = self.summary["before"], self.summary["after"]
        logger.info(
            "calibration (%s) on %d validation images: ECE %.4f -> %.4f, ACE %.4f -> %.4f, MCE %.4f -> %.4f; "
            "calibration and QC reference stored in %s (%s)",
            self.calibration["method"], self.summary["images"], b["ece"], a["ece"], b["ace"], a["ace"], b["mce"],
            a["mce"], self.checkpoint, note,
        )


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    from pipeline.io.writers import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=float))
