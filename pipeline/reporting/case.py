"""Inputs of an evaluation report: one record per image, and the post-processing variants to compare."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.metrics.utils import as_numpy
from pipeline.postprocessing.cleanup import LungCleanup
from pipeline.postprocessing.calibration import apply_calibration
from pipeline.postprocessing.temperature import load_temperature, rescale_probabilities
from pipeline.postprocessing.thresholds import apply_class_thresholds

__all__ = ["EvaluationCase", "ReportVariant"]


@dataclass
class EvaluationCase:
    """One evaluated image.

    Attributes:
        case_id: identifier shown in tables and figures (e.g. the file stem).
        image: ``(H, W)`` float image, for the overlay gallery only (any intensity range).
        prob: ``(C, H, W)`` float probabilities after the activation; ``C == 1`` for the sigmoid lung output,
            ``C == K`` softmax otherwise.
        label: ``(H, W)`` int ground truth (0/1 for binary; map 0/255 masks to 0/1 first).
        spacing: pixel spacing ``(row_mm, col_mm)`` when known (:attr:`pipeline.io.XRayImage.spacing`), else ``None``
            and the millimetre distances are NaN.

    Raises:
        ValueError: when the shapes disagree or ``prob`` is not channel-first 2D.
    """

    case_id: str
    image: np.ndarray
    prob: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.image = as_numpy(self.image).astype(np.float32, copy=False)
        self.prob = as_numpy(self.prob).astype(np.float32, copy=False)
        self.label = as_numpy(self.label).astype(np.int64, copy=False)
        if self.image.ndim == 3 and self.image.shape[0] == 1:
            self.image = self.image[0]
        if self.label.ndim == 3 and self.label.shape[0] == 1:
            self.label = self.label[0]
        if self.prob.ndim == 2:
            self.prob = self.prob[None]
        if self.prob.ndim != 3 or self.prob.shape[1:] != self.label.shape or self.image.shape != self.label.shape:
            raise ValueError(
                f"case {self.case_id!r}: expected image (H, W), prob (C, H, W) and label (H, W) of one size, got "
                f"{self.image.shape}, {self.prob.shape} and {self.label.shape}."
            )


@dataclass
class ReportVariant:
    """One post-processing setting under which the cases are evaluated.

    Attributes:
        name: short name, used as sub-folder and table row (e.g. ``"raw"``, ``"cleanup"``, ``"temperature+cleanup"``).
        temperature: ``T`` applied to the case probabilities (through
            :func:`pipeline.postprocessing.rescale_probabilities`), or a JSON / checkpoint file holding it, read
            when the variant is first applied (so a bundle can fit ``T`` in the same run); ``None`` = as given.
        thresholds: per-class thresholds (:func:`pipeline.postprocessing.apply_class_thresholds`); ``None`` = 0.5 /
            arg-max.
        cleanup: ``True`` or :class:`pipeline.postprocessing.LungCleanup` keyword arguments to clean lung masks.
        calibration: a calibration description (``ModelArtifact.calibration``) or a model file whose artifact holds
            one, applied to the case probabilities through
            :func:`pipeline.postprocessing.calibration.apply_calibration`; ``None`` = as given.

    Example::

        >>> variants = [ReportVariant("raw"), ReportVariant("cleanup", cleanup=True),
        ...             ReportVariant("temperature+cleanup", temperature=1.7, cleanup=True)]
    """

    name: str = "default"
    temperature: float | str | None = None
    thresholds: float | Sequence[float | None] | Mapping[int, float] | None = None
    cleanup: bool | Mapping[str, Any] = False
    calibration: Mapping[str, Any] | str | None = None
    _cleaner: LungCleanup | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.cleanup:
            self._cleaner = LungCleanup(**(dict(self.cleanup) if isinstance(self.cleanup, Mapping) else {}))

    def apply(self, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Post-process one case: returns ``(probabilities (C, H, W), predicted classes (H, W))``.

        Raises:
            ValueError: for ``cleanup`` on a multi-class output without ``lung_label`` in the cleanup arguments.
        """
        if self._cleaner is not None and prob.shape[0] > 1 and not (
            isinstance(self.cleanup, Mapping) and "lung_label" in self.cleanup
        ):
            raise ValueError(f"variant {self.name!r}: clean-up of a multi-class output needs {{'lung_label': k}}.")
        if self.temperature is not None and not isinstance(self.temperature, (int, float)):
            self.temperature = load_temperature(self.temperature)
        p = prob if self.temperature is None else rescale_probabilities(prob, float(self.temperature))
        if self.calibration is not None:
            if not isinstance(self.calibration, Mapping):
                from pipeline.model import read_artifact

                self.calibration = read_artifact(self.calibration).calibration
            p = np.asarray(apply_calibration(np.ascontiguousarray(p, dtype=np.float32), self.calibration,
                                             from_logits=False))
        pred = apply_class_thresholds(torch.from_numpy(np.ascontiguousarray(p)), self.thresholds)
        if self._cleaner is not None:
            pred = self._cleaner(pred)
        return p, as_numpy(pred)[0].astype(np.int64)

    def describe(self) -> dict[str, Any]:
        """The settings as plain values (for JSON and tables)."""
        thr = self.thresholds
        if isinstance(thr, Mapping):
            thr = {str(k): v for k, v in thr.items()}
        elif thr is not None and not isinstance(thr, (int, float)):
            thr = list(thr)
        out = {
            "name": self.name,
            "temperature": self.temperature,
            "thresholds": thr,
            "cleanup": dict(self.cleanup) if isinstance(self.cleanup, Mapping) else bool(self.cleanup),
        }
        if self.calibration is not None:
            out["calibration"] = (str(self.calibration.get("method", "none")) if isinstance(self.calibration, Mapping)
                                  else "from model file")
        return out
