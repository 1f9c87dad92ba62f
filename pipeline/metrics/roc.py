"""Pixel-level ROC curves and AUC per class, on a fixed-seed subsample of the pixels of an evaluation.

A 256 x 256 evaluation set of 250 images holds 16 M pixels; an exact ROC over all of them is neither needed nor cheap
(MONAI's ``compute_roc_auc`` loops in Python). :class:`PixelSampler` therefore draws at most
:data:`PIXELS_PER_IMAGE` pixels from every image, uniformly and with a fixed seed, and :meth:`PixelSampler.sample`
subsamples the pool to at most :data:`ROC_SAMPLE_SIZE` (200,000) pixels per evaluation. The AUC is MONAI's
``compute_roc_auc`` (one-vs-rest per class); the curve points are computed here because MONAI returns only the area.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from pipeline.metrics.utils import as_numpy

__all__ = ["PIXELS_PER_IMAGE", "ROC_SAMPLE_SIZE", "PixelSampler", "ROCCurve", "pixel_roc", "roc_curve_points"]

ROC_SAMPLE_SIZE: int = 200_000
"""Maximum number of pixels, pooled over all images, that one evaluation's ROC curves and AUCs use."""

PIXELS_PER_IMAGE: int = 8_192
"""Maximum number of pixels drawn from one image before pooling (an eighth of a 256 x 256 image)."""

MAX_CURVE_POINTS: int = 512
"""Curve points kept for plotting and JSON; the AUC always uses the whole sample."""


@dataclass
class ROCCurve:
    """ROC of one class against the rest.

    Attributes:
        class_name: the positive class; class_index: its index (and colour in figures).
        auc: area under the curve (MONAI ``compute_roc_auc``); NaN when the sample holds only one of the two labels.
        fpr: false-positive rates, increasing from 0 to 1.
        tpr: true-positive rates at the same thresholds.
        thresholds: probability thresholds (``p >= t`` is positive), decreasing; the first is ``+inf``.
        n_pixels: pixels in the sample; n_positive: how many of them belong to the class.
    """

    class_name: str
    class_index: int
    auc: float
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_pixels: int
    n_positive: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (lists of floats; the infinite first threshold written as ``null``)."""
        thr = [None if not np.isfinite(t) else round(float(t), 6) for t in self.thresholds]
        return {
            "class_name": self.class_name,
            "class_index": self.class_index,
            "auc": None if not np.isfinite(self.auc) else float(self.auc),
            "n_pixels": self.n_pixels,
            "n_positive": self.n_positive,
            "fpr": [round(float(x), 6) for x in self.fpr],
            "tpr": [round(float(x), 6) for x in self.tpr],
            "thresholds": thr,
        }


class PixelSampler:
    """Collects a bounded, reproducible random subset of (probabilities, label) pixels over many images.

    Args:
        max_pixels: pool size returned by :meth:`sample`; default :data:`ROC_SAMPLE_SIZE`.
        pixels_per_image: pixels drawn from each image by :meth:`add`; default :data:`PIXELS_PER_IMAGE`. Images
            with fewer pixels contribute all of them.
        seed: seed of the NumPy generator; the same images in the same order give the same sample.

    Example::

        >>> s = PixelSampler(max_pixels=1000, pixels_per_image=600, seed=0)
        >>> s.add(np.random.rand(2, 32, 32), np.zeros((32, 32), int))
        >>> s.add(np.random.rand(2, 32, 32), np.ones((32, 32), int))
        >>> p, y = s.sample(); p.shape, y.shape
        ((1000, 2), (1000,))
    """

    def __init__(self, max_pixels: int = ROC_SAMPLE_SIZE, pixels_per_image: int = PIXELS_PER_IMAGE, seed: int = 0):
        if max_pixels < 1 or pixels_per_image < 1:
            raise ValueError("max_pixels and pixels_per_image must be positive.")
        self.max_pixels = int(max_pixels)
        self.pixels_per_image = int(pixels_per_image)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def add(self, class_prob: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> None:
        """Draw pixels from one image: ``class_prob`` ``(K, H, W)`` probabilities, ``label`` ``(H, W)`` classes."""
        p = as_numpy(class_prob).reshape(class_prob.shape[0], -1)
        y = as_numpy(label).reshape(-1)
        n = y.shape[0]
        idx = self._rng.choice(n, size=self.pixels_per_image, replace=False) if n > self.pixels_per_image else None
        self._probs.append(np.ascontiguousarray((p if idx is None else p[:, idx]).T, dtype=np.float32))
        self._labels.append((y if idx is None else y[idx]).astype(np.int64))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """The pooled sample: probabilities ``(N, K)`` float32 and labels ``(N,)`` int64, ``N <= max_pixels``."""
        if not self._probs:
            raise ValueError("no image was added to the sampler.")
        p = np.concatenate(self._probs, axis=0)
        y = np.concatenate(self._labels, axis=0)
        if y.shape[0] > self.max_pixels:
            idx = np.random.default_rng(self.seed + 1).choice(y.shape[0], size=self.max_pixels, replace=False)
            p, y = p[idx], y[idx]
        return p, y


def roc_curve_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points of a score against binary truth (one point per distinct score; ``score >= t`` is positive).

    Returns:
        ``(fpr, tpr, thresholds)``, starting at ``(0, 0, +inf)`` and ending at ``(1, 1, min score)``. Rates are NaN
        when the truth holds no positives (TPR) or no negatives (FPR).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(positive).ravel().astype(bool)
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(t)[last_of_run]
    fp = (last_of_run + 1) - tp
    n_pos, n_neg = t.sum(), t.size - t.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(tp.size + 1, np.nan)
        fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(fp.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s[last_of_run]]


def _thin(*arrays: np.ndarray, max_points: int) -> tuple[np.ndarray, ...]:
    n = arrays[0].size
    if n <= max_points:
        return arrays
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return tuple(a[idx] for a in arrays)


def pixel_roc(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int] | None = None,
    max_points: int = MAX_CURVE_POINTS,
) -> list[ROCCurve]:
    """One-vs-rest ROC curve and AUC for the classes of a pixel sample.

    Args:
        probs: ``(N, K)`` class probabilities, e.g. from :meth:`PixelSampler.sample`.
        labels: ``(N,)`` ground-truth classes.
        class_names: ``K`` names.
        classes: class indices to compute, default all. For a binary task pass ``[1]``: the background curve is the
            mirror image of the lung curve with the same AUC in exact arithmetic, but ``1 - p`` in float32 merges
            the saturated probabilities into ties and bends it.
        max_points: curve points kept (evenly spaced along the curve) for plots and JSON.

    Returns:
        One :class:`ROCCurve` per requested class.
    """
    p = np.asarray(probs, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    curves = []
    for k in range(len(class_names)) if classes is None else classes:
        name = class_names[k]
        pos = y == k
        with warnings.catch_warnings():  # a one-label sample gives NaN; MONAI warns about it too
            warnings.simplefilter("ignore")
            auc = float(compute_roc_auc(torch.from_numpy(p[:, k]), torch.from_numpy(pos.astype(np.float32))))
        fpr, tpr, thr = _thin(*roc_curve_points(p[:, k], pos), max_points=max_points)
        curves.append(ROCCurve(name, int(k), auc, fpr, tpr, thr, int(y.size), int(pos.sum())))
    return curves
