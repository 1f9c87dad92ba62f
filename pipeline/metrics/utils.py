"""Conversions shared by the metrics: network probabilities to per-class maps, label maps to one-hot, class names.

Every metric in :mod:`pipeline.metrics` works on *K >= 2 classes*. A binary (one-channel, sigmoid) network output is
expanded to two classes, ``background = 1 - p`` and ``lung = p``, so calibration, ROC and per-class tables treat the
binary and the multi-class (XNet: open beam, soft tissue, bone) tasks the same way. For binary outputs the headline
numbers are those of class 1 (lung).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "BINARY_CLASS_NAMES",
    "as_numpy",
    "class_probabilities",
    "column_name",
    "num_classes_of",
    "one_hot_tensor",
    "probabilities_to_labels",
    "resolve_class_names",
]

BINARY_CLASS_NAMES: tuple[str, str] = ("background", "lung")
"""Class names used for one-channel (sigmoid) outputs when the caller gives none."""


def as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return ``x`` as a NumPy array (detached and on the CPU for tensors, MetaTensor metadata dropped)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def num_classes_of(prob: np.ndarray | torch.Tensor) -> int:
    """Number of classes ``K`` that a channel-first probability map ``(C, H, W)`` stands for: ``max(C, 2)``."""
    return max(int(prob.shape[0]), 2)


def class_probabilities(prob: np.ndarray | torch.Tensor) -> np.ndarray:
    """Expand a channel-first probability map to one channel per class.

    Args:
        prob: probabilities of shape ``(C, H, W)``; ``C == 1`` means a sigmoid output for the foreground class,
            ``C > 1`` softmax probabilities (channels already sum to one).

    Returns:
        float32 array ``(K, H, W)`` with ``K = max(C, 2)``; for ``C == 1`` the channels are ``[1 - p, p]``.

    Raises:
        ValueError: when ``prob`` is not three-dimensional.
    """
    p = as_numpy(prob).astype(np.float32, copy=False)
    if p.ndim != 3:
        raise ValueError(f"prob must be channel-first (C, H, W), got shape {p.shape}.")
    if p.shape[0] == 1:
        return np.concatenate([1.0 - p, p], axis=0)
    return p


def probabilities_to_labels(prob: np.ndarray | torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Plain discretisation: ``p >= threshold`` for one channel, ``argmax`` over channels otherwise.

    For per-class thresholds (false-positive reduction) use :func:`pipeline.postprocessing.apply_class_thresholds`.

    Returns:
        int64 label map ``(H, W)``.
    """
    p = as_numpy(prob)
    if p.shape[0] == 1:
        return (p[0] >= threshold).astype(np.int64)
    return np.argmax(p, axis=0).astype(np.int64)


def one_hot_tensor(label: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot encode a label map ``(H, W)`` into the batch-first float tensor ``(1, K, H, W)`` MONAI metrics take.

    Raises:
        ValueError: when the label holds values outside ``[0, num_classes)``.
    """
    lab = as_numpy(label).astype(np.int64)
    if lab.size and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        raise ValueError(
            f"label values must lie in [0, {num_classes}), got [{int(lab.min())}, {int(lab.max())}]; "
            "map 0/255 masks to 0/1 first."
        )
    # same result as monai.networks.utils.one_hot, done in NumPy: torch's threaded scatter is ~100x slower on a
    # busy 2-core machine for these small maps
    return torch.from_numpy((lab[None, None] == np.arange(num_classes)[None, :, None, None]).astype(np.float32))


def resolve_class_names(class_names: Sequence[str] | None, num_channels: int) -> list[str]:
    """Names for the ``K = max(num_channels, 2)`` classes.

    A one-channel output accepts one name (the foreground, ``"background"`` is prepended) or two.

    Raises:
        ValueError: when the number of names does not match the classes.
    """
    k = max(num_channels, 2)
    if class_names is None:
        return list(BINARY_CLASS_NAMES) if num_channels == 1 else [f"class{i}" for i in range(k)]
    names = list(class_names)
    if num_channels == 1 and len(names) == 1:
        names = ["background", *names]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names but the output stands for {k} classes.")
    return names


def column_name(metric: str, class_name: str) -> str:
    """Per-class column name, ``<metric>_<class>`` with spaces in the class name turned into underscores."""
    return f"{metric}_{class_name.strip().replace(' ', '_')}"
