"""The evaluator/inference post-processing chain, with every step optional, as one configurable factory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.transforms import Activationsd, AsDiscreted, Compose, CopyItemsd

from pipeline.keys import Keys
from pipeline.postprocessing.cleanup import LungCleanupd
from pipeline.postprocessing.temperature import ApplyTemperatured
from pipeline.postprocessing.thresholds import ClassThresholdd

__all__ = ["postprocessing_transforms"]


def postprocessing_transforms(
    num_classes: int,
    temperature: float | str | Path | Mapping[str, Any] | None = None,
    thresholds: float | Sequence[float | None] | Mapping[int, float] | None = None,
    cleanup: bool | Mapping[str, Any] = False,
    keep_prob: bool = True,
    label_to_onehot: bool = True,
    pred_key: str = str(Keys.PRED),
    label_key: str = str(Keys.LABEL),
    prob_key: str = Keys.PROB.value,
) -> Compose:
    """Build ``logits -> [temperature] -> probabilities -> [copy to prob] -> thresholds -> [cleanup]`` (+ label).

    The result is what :func:`pipeline.metrics.validation_metrics` expects, per decollated item:

    * ``pred``: ``(1, H, W)`` 0/1 for one channel, one-hot ``(K, H, W)`` for multi-class;
    * ``prob``: the (temperature-scaled) probabilities, same shape as the network output;
    * ``label``: unchanged for one channel, one-hot ``(K, H, W)`` for multi-class (when ``label_to_onehot``).

    Args:
        num_classes: network output channels (1 = sigmoid lung, >1 = softmax).
        temperature: ``T`` or a JSON/checkpoint holding it (:func:`pipeline.postprocessing.load_temperature`);
            ``None`` skips temperature scaling.
        thresholds: per-class thresholds (:func:`pipeline.postprocessing.apply_class_thresholds`); ``None`` is 0.5
            for one channel and plain arg-max for multi-class.
        cleanup: ``True`` or keyword arguments of :class:`pipeline.postprocessing.LungCleanupd` to clean the lung
            mask; ``False`` skips it. Multi-class outputs must name the lung channel (``{"lung_label": k}``).
        keep_prob: copy the probabilities to ``prob_key`` (needed by the calibration handler).
        label_to_onehot: one-hot the multi-class label for the metrics.
        pred_key, label_key, prob_key: dictionary keys.

    Returns:
        A MONAI ``Compose``.

    Raises:
        ValueError: for ``cleanup`` on a multi-class output without ``lung_label``.

    Example (bundle YAML)::

        postprocessing:
          _target_: pipeline.postprocessing.postprocessing_transforms
          num_classes: 1
          cleanup: true
          temperature: null
    """
    binary = num_classes == 1
    kwargs = dict(cleanup) if isinstance(cleanup, Mapping) else {}
    if cleanup and not binary and "lung_label" not in kwargs:
        raise ValueError("the clean-up is for lung masks; for a multi-class output name the lung channel: "
                         "cleanup={'lung_label': k}.")
    steps: list[Any] = []
    if temperature is not None:
        steps.append(ApplyTemperatured(keys=pred_key, temperature=temperature))
    steps.append(Activationsd(keys=pred_key, sigmoid=binary, softmax=not binary))
    if keep_prob:
        steps.append(CopyItemsd(keys=pred_key, times=1, names=prob_key))
    steps.append(ClassThresholdd(keys=pred_key, thresholds=thresholds, to_onehot=not binary))
    if cleanup:
        steps.append(LungCleanupd(keys=pred_key, **kwargs))
    if label_to_onehot and not binary:
        steps.append(AsDiscreted(keys=label_key, to_onehot=num_classes))
    return Compose(steps)
