"""Per-image quality-control flags for predicted lung masks, and an uncertainty score that should track Dice.

No ground truth is needed: these run on every inference output and mark the images a reader should look at.

Scores and thresholds (module-level constants, chosen from the ground-truth masks of JSRT/SCR (247 images) and
OpenIST (275 images) at 256 x 256, where lung area fractions span 0.15-0.46, left/right half ratios 0.54-1.0, and every
mask has exactly two components of at least 0.1 % of the image):

==================  ==========================================================  ================================
flag                score                                                       raised when
==================  ==========================================================  ================================
``high_entropy``    mean predictive entropy over all pixels, / ``log K``        ``> ENTROPY_MAX`` (0.10)
``empty_mask``      foreground pixel count                                      ``== 0``
``components``      connected components of at least                            ``!= EXPECTED_COMPONENTS`` (2)
                    ``MIN_COMPONENT_FRACTION`` of the image (8-connectivity)
``area_fraction``   foreground pixels / image pixels                            outside ``AREA_FRACTION_RANGE``
                                                                                (0.10-0.55)
``lr_imbalance``    smaller / larger foreground area of the image halves        ``< LR_RATIO_MIN`` (0.5)
==================  ==========================================================  ================================

The anatomical flags (last four) apply to lung masks (binary task); for multi-class outputs without a lung class
(XNet) only the entropy flag is evaluated, unless ``anatomical=True``.

``uncertainty_score`` is the expected Dice shortfall under the model's own belief: ``1 - soft Dice(p, mask)``,
``soft Dice = 2 sum(p * m) / (sum(p) + sum(m))``, averaged over the foreground classes. It is 0 for a hard, confident
prediction and grows with the probability mass that disagrees with the mask, so it should correlate negatively with
the true Dice; :func:`uncertainty_dice_correlation` measures that (Spearman).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import spearmanr

from pipeline.metrics.utils import as_numpy, class_probabilities

__all__ = [
    "prediction_quality",
    "AREA_FRACTION_RANGE",
    "ENTROPY_MAX",
    "EXPECTED_COMPONENTS",
    "LR_RATIO_MIN",
    "MIN_COMPONENT_FRACTION",
    "QC_FLAGS",
    "component_count",
    "left_right_ratio",
    "mean_entropy",
    "qc_flags",
    "uncertainty_dice_correlation",
    "uncertainty_score",
]

ENTROPY_MAX: float = 0.10
"""Highest acceptable mean normalised entropy. A confident model is uncertain only in a 2-3 pixel band along the
lung borders (about 3 % of a 256 x 256 image, entropy ~0.5 there, mean ~0.02); 0.10 means large uncertain regions."""

MIN_COMPONENT_FRACTION: float = 0.001
"""Components smaller than this fraction of the image are not counted (specks, handled by the cleanup)."""

EXPECTED_COMPONENTS: int = 2
"""Two lungs."""

AREA_FRACTION_RANGE: tuple[float, float] = (0.10, 0.55)
"""Plausible lung area as a fraction of the image (ground truth: 0.15-0.46)."""

LR_RATIO_MIN: float = 0.5
"""Lowest acceptable smaller/larger area ratio of the two image halves (ground truth: >= 0.54, median 0.8-0.86)."""

QC_FLAGS: tuple[str, ...] = ("high_entropy", "empty_mask", "components", "area_fraction", "lr_imbalance")
"""Every flag :func:`qc_flags` can raise."""


def mean_entropy(prob: np.ndarray | torch.Tensor) -> float:
    """Mean per-pixel predictive entropy, normalised to [0, 1] by ``log K``.

    Args:
        prob: ``(C, H, W)`` probabilities (``C == 1`` sigmoid, else softmax).
    """
    p = np.clip(class_probabilities(prob).astype(np.float64), 1e-12, 1.0)
    return float((-(p * np.log(p)).sum(0) / np.log(p.shape[0])).mean())


def uncertainty_score(prob: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor) -> float:
    """``1 - soft Dice(p_k, mask == k)`` averaged over the foreground classes ``k >= 1``.

    A class with neither probability mass nor mask pixels contributes 0 (nothing to be unsure about).
    """
    p = class_probabilities(prob).astype(np.float64)
    m = as_numpy(mask).astype(np.int64)
    gaps = []
    for k in range(1, p.shape[0]):
        mk = m == k
        denom = p[k].sum() + mk.sum()
        gaps.append(0.0 if denom < 1e-6 else 1.0 - 2.0 * (p[k] * mk).sum() / denom)
    return float(np.mean(gaps))


def component_count(mask: np.ndarray, min_fraction: float = MIN_COMPONENT_FRACTION) -> tuple[int, int]:
    """Connected components (8-connectivity) of a boolean mask: ``(count >= min_fraction of the image, all)``."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return 0, 0
    sizes = np.bincount(lab.ravel())[1:]
    return int((sizes >= min_fraction * mask.size).sum()), int(n)


def left_right_ratio(mask: np.ndarray) -> float:
    """Smaller over larger foreground area of the left and right image halves; NaN for an empty mask."""
    half = mask.shape[1] // 2
    left, right = float(mask[:, :half].sum()), float(mask[:, mask.shape[1] - half :].sum())
    return float("nan") if max(left, right) == 0 else min(left, right) / max(left, right)


def qc_flags(
    prob: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    lung_label: int = 1,
    anatomical: bool | None = None,
) -> dict[str, Any]:
    """Quality-control scores and raised flags of one prediction.

    Args:
        prob: ``(C, H, W)`` probabilities (``C == 1`` sigmoid lung output, else softmax).
        mask: ``(H, W)`` predicted label map (after any post-processing).
        lung_label: value of the lung class in ``mask``.
        anatomical: run the lung shape checks; default: only for one- or two-channel outputs.

    Returns:
        ``{"mean_entropy", "uncertainty_score", "area_fraction", "n_components", "n_components_all", "lr_ratio",
        "flags"}``; the shape scores are NaN (and not flagged) when the checks do not apply; ``flags`` lists the
        names from :data:`QC_FLAGS` that were raised, in that order.

    Example::

        >>> out = qc_flags(prob, mask)
        >>> out["flags"]
        ['components', 'lr_imbalance']
    """
    m = as_numpy(mask)
    anatomical = prob.shape[0] <= 2 if anatomical is None else anatomical
    scores: dict[str, Any] = {
        "mean_entropy": mean_entropy(prob),
        "uncertainty_score": uncertainty_score(prob, m),
        "area_fraction": float("nan"),
        "n_components": float("nan"),
        "n_components_all": float("nan"),
        "lr_ratio": float("nan"),
    }
    flags = ["high_entropy"] if scores["mean_entropy"] > ENTROPY_MAX else []
    if anatomical:
        lung = m == lung_label
        n_big, n_all = component_count(lung)
        scores.update(
            area_fraction=float(lung.mean()),
            n_components=n_big,
            n_components_all=n_all,
            lr_ratio=left_right_ratio(lung),
        )
        if not lung.any():
            flags.append("empty_mask")
        if n_big != EXPECTED_COMPONENTS:
            flags.append("components")
        lo, hi = AREA_FRACTION_RANGE
        if not lo <= scores["area_fraction"] <= hi:
            flags.append("area_fraction")
        if not scores["lr_ratio"] >= LR_RATIO_MIN:  # NaN (empty mask) counts as imbalanced
            flags.append("lr_imbalance")
    scores["flags"] = flags
    return scores


def uncertainty_dice_correlation(uncertainty: Sequence[float], dice: Sequence[float]) -> dict[str, float | int]:
    """Spearman rank correlation between per-image uncertainty and Dice (``scipy.stats.spearmanr``).

    A useful uncertainty score gives a clearly negative ``rho`` (more uncertain, lower Dice). Pairs with a NaN are
    dropped; fewer than 3 pairs, or a constant input, give NaN.

    Returns:
        ``{"spearman_rho", "p_value", "n"}``.
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    d = np.asarray(dice, dtype=np.float64)
    ok = np.isfinite(u) & np.isfinite(d)
    n = int(ok.sum())
    if n < 3 or np.ptp(u[ok]) == 0 or np.ptp(d[ok]) == 0:
        return {"spearman_rho": float("nan"), "p_value": float("nan"), "n": n}
    res = spearmanr(u[ok], d[ok])
    return {"spearman_rho": float(res.statistic), "p_value": float(res.pvalue), "n": n}


def prediction_quality(prob_small: torch.Tensor | np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Confidence and QC of one prediction, as the batch manifest and the web page report them, at the network's resolution (where :mod:`pipeline.metrics.qc`'s limits were calibrated).

    Confidence is the mean max-probability (binary: ``max(p, 1 - p)``); the flags and scores come from
    ``pipeline.metrics.qc_flags`` on the low-resolution probabilities and their thresholded mask.
    """
    p = np.asarray(prob_small, dtype=np.float32)
    if p.shape[0] == 1:
        mask_small = (p[0] > threshold).astype(np.uint8)
        confidence = float(np.maximum(p[0], 1.0 - p[0]).mean())
    else:
        mask_small = p.argmax(0).astype(np.uint8)
        confidence = float(p.max(0).mean())
    qc = qc_flags(p, mask_small)
    return {
        "confidence": confidence,
        "qc_flags": list(qc["flags"]),
        "mean_entropy": qc["mean_entropy"],
        "uncertainty": qc["uncertainty_score"],
        "n_components": qc["n_components"],
        "area_fraction": qc["area_fraction"],
    }
