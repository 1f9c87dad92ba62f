"""Ignite handler that collects an evaluator's outputs and writes the evaluation report when the run completes."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from pipeline.keys import Keys
from pipeline.metrics.utils import as_numpy
from pipeline.reporting.case import EvaluationCase, ReportVariant
from pipeline.reporting.report import ReportResult, write_evaluation_report

__all__ = ["EvaluationReportHandler", "case_from_output"]

logger = logging.getLogger(__name__)


def _spacing(image: Any) -> tuple[float, float] | None:
    """Current pixel spacing in mm, or ``None`` when the file stated none.

    :class:`pipeline.transforms.LoadXRayd` writes the file's spacing to ``meta["pixel_spacing"]`` (NaN when unknown)
    and into the affine; MONAI's spatial transforms (resize, crop) keep the affine up to date, so ``pixdim`` is the
    spacing at the resolution being evaluated.
    """
    meta = getattr(image, "meta", None) or {}
    stated = np.asarray(as_numpy(torch.as_tensor(meta.get("pixel_spacing", [math.nan]))), dtype=np.float64).ravel()
    if not np.isfinite(stated).all() or not hasattr(image, "pixdim"):
        return None
    pixdim = as_numpy(torch.as_tensor(image.pixdim)).ravel()
    return float(pixdim[0]), float(pixdim[1])


def _case_id(image: Any, fallback: str) -> str:
    meta = getattr(image, "meta", None) or {}
    name = meta.get("filename_or_obj")
    return Path(str(name)).stem if name else fallback


def case_from_output(
    batch_item: Mapping[str, Any],
    output_item: Mapping[str, Any],
    fallback_id: str,
    image_key: str = str(Keys.IMAGE),
    label_key: str = str(Keys.LABEL),
    prob_key: str = Keys.PROB.value,
) -> EvaluationCase:
    """Build an :class:`EvaluationCase` from one decollated evaluator item.

    Args:
        batch_item: the item of ``engine.state.batch`` (holds the image, with its metadata).
        output_item: the item of ``engine.state.output`` (holds ``prob`` and the label, possibly one-hot).
        fallback_id: case id when the image has no ``filename_or_obj``.
        image_key, label_key, prob_key: keys of the image, label and probabilities.

    Raises:
        KeyError: when the probabilities are missing (post-processing must keep them, see
            :func:`pipeline.postprocessing.postprocessing_transforms`).
    """
    if prob_key not in output_item:
        raise KeyError(
            f"no {prob_key!r} in the evaluator output; keep the probabilities in post-processing "
            "(pipeline.postprocessing.postprocessing_transforms(keep_prob=True))."
        )
    image = batch_item.get(image_key, output_item.get(image_key))
    label = as_numpy(output_item.get(label_key, batch_item.get(label_key)))
    label = np.argmax(label, axis=0) if label.shape[0] > 1 else np.rint(label[0])
    return EvaluationCase(
        case_id=_case_id(image, fallback_id),
        image=as_numpy(image)[0],
        prob=as_numpy(output_item[prob_key]),
        label=label.astype(np.int64),
        spacing=_spacing(image),
    )


def _items(data: Any) -> list[Mapping[str, Any]]:
    """Decollated items of ``engine.state.batch/output`` (a list already, or one batched dict)."""
    if isinstance(data, list):
        return data
    n = next(len(v) for v in data.values() if isinstance(v, (torch.Tensor, np.ndarray)))
    return [{k: v[i] for k, v in data.items() if isinstance(v, (torch.Tensor, np.ndarray))} for i in range(n)]


class EvaluationReportHandler:
    """Collect every evaluated image and write :func:`pipeline.reporting.write_evaluation_report` at the end.

    Attach it to a ``SupervisedEvaluator`` whose post-processing keeps the probabilities under ``prob``
    (:func:`pipeline.postprocessing.postprocessing_transforms`). The probabilities are evaluated as they come out
    of post-processing (after any temperature); the report's variants then apply their own thresholds, clean-up
    or extra temperature to them. Images are kept in memory until the run completes (about 0.5 MB per
    256 x 256 image).

    Args:
        output_dir: report folder.
        class_names: see :func:`write_evaluation_report` (``["lung"]`` for the binary task).
        variants: :class:`ReportVariant` objects, or dicts of their fields (handy in YAML); ``None`` = one default.
        image_key, label_key, prob_key: keys of the engine items.
        report_kwargs: further :func:`write_evaluation_report` arguments (``dpi``, ``figures``, ...).

    Example (bundle ``evaluate.yaml``)::

        validate#handlers:
          - ...
          - _target_: pipeline.reporting.EvaluationReportHandler
            output_dir: "$@output_dir + '/report'"
            class_names: [lung]
            variants:
              - {name: raw}
              - {name: cleanup, cleanup: true}
    """

    def __init__(
        self,
        output_dir: str | Path,
        class_names: Sequence[str] | None = None,
        variants: Sequence[ReportVariant | Mapping[str, Any]] | None = None,
        image_key: str = str(Keys.IMAGE),
        label_key: str = str(Keys.LABEL),
        prob_key: str = Keys.PROB.value,
        report_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names) if class_names is not None else None
        self.variants = (
            None if variants is None else [v if isinstance(v, ReportVariant) else ReportVariant(**v) for v in variants]
        )
        self.keys = {"image_key": image_key, "label_key": label_key, "prob_key": prob_key}
        self.report_kwargs = dict(report_kwargs or {})
        self.cases: list[EvaluationCase] = []
        self.result: ReportResult | None = None

    def attach(self, engine: Engine) -> None:
        """Collect at every iteration, reset when a run starts, write when it completes."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.cases = []

    def _collect(self, engine: Engine) -> None:
        for b, o in zip(_items(engine.state.batch), _items(engine.state.output)):
            self.cases.append(case_from_output(b, o, f"case{len(self.cases):05d}", **self.keys))

    def _write(self, engine: Engine) -> None:
        if not self.cases:
            logger.warning("no images were evaluated; no report written to %s", self.output_dir)
            return
        self.result = write_evaluation_report(
            self.cases, self.output_dir, self.class_names, self.variants, **self.report_kwargs
        )
        logger.info("evaluation report: %s", self.result.files["index_html"])
