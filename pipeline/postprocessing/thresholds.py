"""Per-class probability thresholds for false-positive reduction, and a sweep of TPR/FPR against the threshold.

The XNet paper (Bullock et al. 2019, arXiv:1812.00548) lowers the soft-tissue false-positive rate by assigning a pixel
to soft tissue only when its soft-tissue probability exceeds a threshold (0.90 gives FPR 3 %, TPR 71 %). Here the rule
is general: a pixel may be assigned class ``k`` only if ``p_k >= t_k``; among its eligible classes it takes the most
probable one; a pixel with no eligible class gets the ``fallback`` class (0, background / open beam). Classes without
a threshold are always eligible, so with no thresholds the rule is the plain ``argmax``. For a one-channel sigmoid
output the only threshold is the lung threshold: ``lung = p >= t``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.metrics import compute_confusion_matrix_metric, get_confusion_matrix
from monai.networks.utils import one_hot
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from pipeline.metrics.utils import resolve_class_names

__all__ = ["ClassThreshold", "ClassThresholdd", "ThresholdSweep", "apply_class_thresholds", "threshold_sweep"]

Thresholds = Sequence[float | None] | Mapping[int, float] | float | None


def _threshold_vector(thresholds: Thresholds, num_channels: int) -> list[float | None]:
    if thresholds is None:
        return [None] * num_channels if num_channels > 1 else [0.5]
    if isinstance(thresholds, (int, float)):
        if num_channels != 1:
            raise ValueError("a single threshold is only meaningful for a one-channel output; give one per class.")
        return [float(thresholds)]
    if isinstance(thresholds, Mapping):
        out: list[float | None] = [None] * max(num_channels, 2)
        for k, t in thresholds.items():
            out[int(k)] = None if t is None else float(t)
        return out[1:2] if num_channels == 1 else out
    vec = [None if t is None else float(t) for t in thresholds]
    if num_channels == 1 and len(vec) == 2:  # [background, lung] given for a sigmoid output
        vec = vec[1:]
    if len(vec) != num_channels:
        raise ValueError(f"got {len(vec)} thresholds for {num_channels} channels.")
    return vec


def apply_class_thresholds(prob: torch.Tensor, thresholds: Thresholds = None, fallback: int = 0) -> torch.Tensor:
    """Assign classes under per-class probability thresholds.

    Args:
        prob: ``(C, *spatial)`` probabilities; ``C == 1`` is a sigmoid lung output.
        thresholds: one-channel output: the lung threshold (float, default 0.5). Multi-class: a sequence of ``C``
            thresholds (``None`` = no threshold) or a ``{class: threshold}`` mapping; default none (argmax).
        fallback: class of pixels for which no class is eligible.

    Returns:
        int64 label map ``(1, *spatial)``.

    Example::

        >>> p = torch.tensor([[[0.12, 0.10]], [[0.85, 0.20]], [[0.03, 0.70]]])  # 3 classes, 1 x 2 image
        >>> apply_class_thresholds(p, [None, 0.9, None])   # soft tissue at 0.85 is not enough: next best class
        tensor([[[0, 2]]])
    """
    prob = convert_to_tensor(prob, track_meta=False)
    vec = _threshold_vector(thresholds, int(prob.shape[0]))
    if prob.shape[0] == 1:
        return (prob >= (0.5 if vec[0] is None else vec[0])).long()
    eligible = torch.ones_like(prob, dtype=torch.bool)
    for k, t in enumerate(vec):
        if t is not None:
            eligible[k] = prob[k] >= t
    masked = torch.where(eligible, prob, torch.full_like(prob, -1.0))
    labels = masked.argmax(dim=0, keepdim=True)
    return torch.where(eligible.any(dim=0, keepdim=True), labels, torch.full_like(labels, fallback))


class ClassThreshold(Transform):
    """Array transform: probabilities ``(C, H, W)`` to classes under per-class thresholds.

    Args:
        thresholds: see :func:`apply_class_thresholds`.
        fallback: class given to pixels with no eligible class.
        to_onehot: return one-hot ``(K, H, W)`` (``K = C``, for multi-class metrics) instead of the label map
            ``(1, H, W)``; ignored for one-channel outputs, which stay ``(1, H, W)`` 0/1 like MONAI's binary pipeline.

    The output keeps the input's type (and MetaTensor metadata) with float values, like MONAI's ``AsDiscrete``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, thresholds: Thresholds = None, fallback: int = 0, to_onehot: bool = False) -> None:
        self.thresholds = thresholds
        self.fallback = fallback
        self.to_onehot = to_onehot

    def __call__(self, img: Any) -> Any:
        labels = apply_class_thresholds(img, self.thresholds, self.fallback)
        if self.to_onehot and img.shape[0] > 1:
            labels = one_hot(labels[None], num_classes=int(img.shape[0]), dim=1)[0]
        out, *_ = convert_to_dst_type(labels.float(), img, dtype=torch.float32)
        return out


class ClassThresholdd(MapTransform):
    """Dictionary version of :class:`ClassThreshold`.

    Example (bundle YAML, XNet soft tissue at 0.90)::

        - _target_: pipeline.postprocessing.ClassThresholdd
          keys: pred
          thresholds: [null, 0.9, null]
          to_onehot: true
    """

    def __init__(
        self,
        keys: KeysCollection,
        thresholds: Thresholds = None,
        fallback: int = 0,
        to_onehot: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ClassThreshold(thresholds, fallback, to_onehot)

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


@dataclass
class ThresholdSweep:
    """TPR and FPR of every class for every swept threshold, pixel-pooled over images.

    Attributes:
        thresholds: ``(T,)`` swept thresholds.
        class_names: names of the swept classes.
        classes: indices of the swept classes.
        tpr, fpr, precision: ``(len(classes), T)`` rates; ``counts``: ``(len(classes), T, 4)`` TP, FP, TN, FN.
    """

    thresholds: np.ndarray
    class_names: list[str]
    classes: list[int]
    tpr: np.ndarray
    fpr: np.ndarray
    precision: np.ndarray
    counts: np.ndarray = field(repr=False)

    def to_rows(self) -> list[dict[str, Any]]:
        """One ``{class, threshold, tpr, fpr, precision}`` record per class and threshold (CSV/DataFrame-ready)."""
        return [
            {
                "class": name,
                "threshold": float(t),
                "tpr": float(self.tpr[i, j]),
                "fpr": float(self.fpr[i, j]),
                "precision": float(self.precision[i, j]),
            }
            for i, name in enumerate(self.class_names)
            for j, t in enumerate(self.thresholds)
        ]

    def at(self, class_name: str, threshold: float) -> dict[str, float]:
        """Rates of one class at the swept threshold nearest to ``threshold``."""
        i = self.class_names.index(class_name)
        j = int(np.argmin(np.abs(self.thresholds - threshold)))
        return {"threshold": float(self.thresholds[j]), "tpr": float(self.tpr[i, j]), "fpr": float(self.fpr[i, j])}


def threshold_sweep(
    cases: Iterable[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
    thresholds: Sequence[float] | np.ndarray = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2)),
    classes: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    fallback: int = 0,
) -> ThresholdSweep:
    """Sweep one class's threshold at a time and report its one-vs-rest TPR and FPR, pooled over images.

    For class ``k`` and threshold ``t`` the prediction is :func:`apply_class_thresholds` with only ``t_k = t`` set
    (other classes unthresholded), so the table answers "what if I required ``p_k >= t`` for class ``k``". The counts
    are MONAI ``get_confusion_matrix`` counts summed over images, the rates ``compute_confusion_matrix_metric``.

    Args:
        cases: iterable of ``(prob (C, H, W), label (H, W))`` pairs.
        thresholds: values to sweep.
        classes: class indices to sweep; default the foreground classes (``1 .. K-1``).
        class_names: names of all ``K`` classes; default ``class<i>`` (binary: background, lung).
        fallback: class for pixels with no eligible class.

    Returns:
        :class:`ThresholdSweep`.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    counts: np.ndarray | None = None
    k = channels = 0
    for prob, label in cases:
        p = convert_to_tensor(prob, track_meta=False, dtype=torch.float32)
        channels = int(p.shape[0])
        k = max(channels, 2)
        classes = list(range(1, k)) if classes is None else list(classes)
        y = one_hot(torch.as_tensor(np.asarray(label), dtype=torch.long)[None, None], num_classes=k, dim=1)
        if counts is None:
            counts = np.zeros((len(classes), thr.size, 4))
        for i, c in enumerate(classes):
            for j, t in enumerate(thr):
                vec: list[float | None] = [None] * k
                vec[c] = float(t)
                pred = apply_class_thresholds(p, vec if p.shape[0] > 1 else float(t), fallback)
                yp = one_hot(pred[None], num_classes=k, dim=1)
                counts[i, j] += get_confusion_matrix(yp, y)[0, c].double().numpy()
    if counts is None or classes is None:
        raise ValueError("threshold_sweep got no cases.")
    names = resolve_class_names(class_names, channels)
    cm = torch.from_numpy(counts)
    rate = {m: compute_confusion_matrix_metric(m, cm).numpy() for m in ("sensitivity", "fall out", "precision")}
    return ThresholdSweep(
        thresholds=thr,
        class_names=[names[c] for c in classes],
        classes=classes,
        tpr=rate["sensitivity"],
        fpr=rate["fall out"],
        precision=rate["precision"],
        counts=counts,
    )
