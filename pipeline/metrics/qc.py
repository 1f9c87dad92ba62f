"""Per-image quality control of predicted lung masks: label-free scores, flags against the model's own reference.

No ground truth is needed: these run on every inference output and mark the images a reader should look at.

**Inference uses** :func:`assess` (the one entry point): calibrated probabilities and mask at the network's
resolution, the model's ``qc_reference`` (stored at the end of training from its validation images, see
:mod:`pipeline.metrics.qc_reference`), optionally the flipped-image prediction and the network input. It returns
``confidence``, ``qc_flags``, ``qc_reasons`` (one sentence per flag, e.g. ``"uncertain pixels 14.2 % > 6.1 % (at most
4.9 % on validation)"``) and the scores of :func:`qc_scores`: ``uncertain_fraction`` (pixels whose top class is below
:data:`UNCERTAIN_CONFIDENCE`), ``mean_entropy``, ``area_fraction``, ``lr_ratio``, ``border_contact`` (lung along the
image edge), ``outside_body`` (lung on the dark background beside the body), ``tta_disagreement`` (``1 - Dice`` with
the flipped-image prediction). Flags fire beyond the validation range, never against fixed constants; an empty mask is
always flagged.

**Kept for the evaluation report and older callers** (:func:`qc_flags`, :func:`prediction_quality`): the fixed limits
below, from the ground truth of the data sets. Their entropy limit flags every image of an uncalibrated model; new
code should use :func:`assess`.

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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import spearmanr

from pipeline.metrics.qc_reference import check_reference
from pipeline.metrics.utils import as_numpy, class_probabilities

__all__ = [
    "DARK_LEVEL",
    "UNCERTAIN_CONFIDENCE",
    "assess",
    "border_contact",
    "outside_body",
    "prediction_quality",
    "qc_scores",
    "tta_disagreement",
    "uncertain_fraction",
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


# ---- label-free scores judged against the model's own validation reference (pipeline.metrics.qc_reference) ----

UNCERTAIN_CONFIDENCE: float = 0.9
"""A pixel is uncertain when its most likely class has a (calibrated) probability below this (binary: 0.1 < p < 0.9)."""

DARK_LEVEL: float = 0.12
"""Background outside the body: pixels darker than this fraction of the image's intensity range, connected to the
image edge (the direct-exposure strips beside the body in OpenIST are at 0-0.05; lung fields at 0.2-0.7)."""

_FALLBACK_NOTE = "no QC reference in this model: only the anatomical limits apply"


def uncertain_fraction(prob: np.ndarray | torch.Tensor, confidence: float = UNCERTAIN_CONFIDENCE) -> float:
    """Fraction of pixels whose most likely class has probability below ``confidence``."""
    return float((class_probabilities(prob).max(0) < confidence).mean())


def _ring_width(shape: tuple[int, ...]) -> int:
    return max(1, min(shape[-2:]) // 64)


def border_contact(mask: np.ndarray) -> float:
    """Fraction of the image's outer ring (``side // 64`` pixels wide, at least 1) that is lung.

    Lungs lie inside the chest; a lung mask along the image edge is a false positive on the dark background beside
    the body, or a lung cut off by the field of view.
    """
    m = np.asarray(mask).astype(bool)
    w = _ring_width(m.shape)
    ring = np.ones(m.shape, dtype=bool)
    ring[w:-w, w:-w] = False
    return float(m[ring].mean())


def outside_body(mask: np.ndarray, image: np.ndarray | torch.Tensor, dark_level: float = DARK_LEVEL) -> float:
    """Fraction of the predicted lung lying on the dark background outside the body.

    Background: pixels darker than ``dark_level`` of the image's intensity range (after min-max scaling of the
    network input) that are connected (8-neighbourhood) to the image edge, grown by one ring width.

    Args:
        mask: ``(H, W)`` predicted lung.
        image: ``(H, W)`` or ``(1, H, W)`` network input (any intensity scale; it is rescaled to [0, 1] here).
        dark_level: see :data:`DARK_LEVEL`.

    Returns:
        0 for an empty mask.
    """
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return 0.0
    img = as_numpy(image).astype(np.float64).reshape(m.shape)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return 0.0
    dark = (img - lo) / (hi - lo) < dark_level
    lab, _ = ndimage.label(dark, structure=np.ones((3, 3), bool))
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    background = np.isin(lab, edge[edge > 0])
    background = ndimage.binary_dilation(background, np.ones((3, 3), bool), iterations=_ring_width(m.shape))
    return float((m & background).sum() / m.sum())


def tta_disagreement(mask: np.ndarray, tta_prob: np.ndarray | torch.Tensor, threshold: float = 0.5) -> float:
    """``1 - Dice`` between the mask and the mask of a test-time-augmented prediction (e.g. of the flipped image,
    flipped back); 0 when both are empty."""
    m = np.asarray(mask).astype(bool)
    p = class_probabilities(tta_prob)
    t = (p[1] > threshold) if p.shape[0] == 2 else (p.argmax(0) == 1)
    denom = m.sum() + t.sum()
    return 0.0 if denom == 0 else float(1.0 - 2.0 * (m & t).sum() / denom)


def qc_scores(
    prob: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    image: np.ndarray | torch.Tensor | None = None,
    tta_prob: np.ndarray | torch.Tensor | None = None,
    lung_label: int = 1,
) -> dict[str, float]:
    """Every label-free QC score of one prediction, at the network's resolution.

    Args:
        prob: ``(C, H, W)`` calibrated probabilities.
        mask: ``(H, W)`` predicted label map.
        image: ``(H, W)`` or ``(1, H, W)`` network input; without it ``outside_body`` is NaN.
        tta_prob: ``(C, H, W)`` probabilities of an augmented copy, mapped back (flipped back); without it
            ``tta_disagreement`` is NaN.
        lung_label: value of the lung in ``mask``.

    Returns:
        ``confidence`` (mean max-probability), ``mean_entropy``, ``uncertainty`` (:func:`uncertainty_score`),
        ``uncertain_fraction``, ``area_fraction``, ``lr_ratio`` (NaN when empty), ``n_components``,
        ``border_contact``, ``outside_body``, ``tta_disagreement``.
    """
    p = class_probabilities(prob)
    m = as_numpy(mask)
    lung = m == lung_label
    return {
        "confidence": float(p.max(0).mean()),
        "mean_entropy": mean_entropy(prob),
        "uncertainty": uncertainty_score(prob, m),
        "uncertain_fraction": uncertain_fraction(prob),
        "area_fraction": float(lung.mean()),
        "lr_ratio": left_right_ratio(lung),
        "n_components": component_count(lung)[0],
        "border_contact": border_contact(lung),
        "outside_body": float("nan") if image is None else outside_body(lung, image),
        "tta_disagreement": float("nan") if tta_prob is None else tta_disagreement(lung, tta_prob),
    }


def _fallback_flags(scores: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Fixed anatomical limits (from the ground truth of JSRT/SCR and OpenIST) for a model without a reference."""
    flags, reasons = [], []
    lo, hi = AREA_FRACTION_RANGE
    area = scores["area_fraction"]
    if not lo <= area <= hi:
        flags.append("area_fraction")
        reasons.append(f"lung area {100 * area:.1f} % outside {100 * lo:.0f}-{100 * hi:.0f} % ({_FALLBACK_NOTE})")
    if scores["area_fraction"] > 0 and not scores["lr_ratio"] >= LR_RATIO_MIN:
        flags.append("lr_ratio")
        reasons.append(f"left/right lung balance {scores['lr_ratio']:.2f} < {LR_RATIO_MIN:.2f} ({_FALLBACK_NOTE})")
    if scores["area_fraction"] > 0 and scores["n_components"] != EXPECTED_COMPONENTS:
        flags.append("components")
        reasons.append(f"{scores['n_components']} lung region(s), {EXPECTED_COMPONENTS} expected ({_FALLBACK_NOTE})")
    return flags, reasons


def assess(
    prob_small: np.ndarray | torch.Tensor,
    mask_small: np.ndarray | torch.Tensor,
    reference: Mapping[str, Any] | None = None,
    tta_prob: np.ndarray | torch.Tensor | None = None,
    image_small: np.ndarray | torch.Tensor | None = None,
) -> dict[str, Any]:
    """Confidence, QC flags and their reasons for one prediction: what the manifest and the review page show.

    The one QC entry point of inference. Scores come from :func:`qc_scores`; flags fire against the model's own
    validation reference (``ModelArtifact.qc_reference``, see :mod:`pipeline.metrics.qc_reference`). Without a
    reference (a model trained before references existed) only fixed anatomical limits apply, and the entropy is
    not judged (its level depends on the model's calibration). An empty lung mask is always flagged.

    Args:
        prob_small: ``(C, S, S)`` calibrated probabilities at the network's resolution
            (:func:`pipeline.postprocessing.calibration.apply_calibration`).
        mask_small: ``(S, S)`` label map at that resolution (after any cleanup).
        reference: the model's QC reference, or ``None``.
        tta_prob: ``(C, S, S)`` calibrated probabilities of the horizontally flipped input, flipped back.
        image_small: ``(1, S, S)`` or ``(S, S)`` network input, for ``outside_body``.

    Returns:
        ``confidence``, ``qc_flags`` (list of score names, plus ``empty_mask``), ``qc_reasons`` (one sentence per
        flag), and every score of :func:`qc_scores`.

    Example::

        >>> q = assess(prob_small, mask_small, artifact.qc_reference, tta_prob=flipped, image_small=x)
        >>> q["qc_reasons"]
        ['uncertain pixels 14.2 % > 6.1 % (at most 4.9 % on validation)']
    """
    scores = qc_scores(prob_small, mask_small, image=image_small, tta_prob=tta_prob)
    if reference and reference.get("scores"):
        flags, reasons = check_reference(scores, reference)
    else:
        flags, reasons = _fallback_flags(scores)
    if scores["area_fraction"] == 0:
        flags.insert(0, "empty_mask")
        reasons.insert(0, "no lung found")
    return {"confidence": scores["confidence"], "qc_flags": flags, "qc_reasons": reasons,
            **{k: v for k, v in scores.items() if k != "confidence"}}
