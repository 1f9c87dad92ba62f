"""What "unusual" means for one model: QC score distributions on its validation images, and flags against them.

At the end of training (:class:`pipeline.engines.CalibrationHandler`) every label-free QC score of
:func:`pipeline.metrics.qc.qc_scores` is computed on the validation images, after calibration; the reference stores,
per score, the sorted values and the limits a new image is judged against:

* a score that is bad when high (uncertain pixels, entropy, lung on the image border or on the dark background,
  disagreement with the flipped image) is flagged above ``max + slack``;
* a score that is bad when low (left/right balance) below ``min - slack``; the lung area on both sides;
* ``slack = max(tolerance, SLACK * (max - min))``, with ``SLACK = 1``: the validation range extended by its own
  width on the bad side. A validation split has 4 to a few dozen images, so its extreme is a noisy estimate of the
  extreme of the population; ``tolerance`` (per score, in the score's units) keeps a reference whose values are all
  equal (e.g. no lung on the border at all) from flagging a single pixel. The lung area's tolerance is wide
  (10 points): it varies with the field of view between hospitals, not only with the segmentation.

Chosen by measurement (``scripts/benchmark_qc.py``, ``docs/results.md``): SLACK 0.25 flagged 37 % of JSRT test for a
model with 4 validation images, SLACK 1 flags 6 % while catching 87 % of the OpenIST images below JSRT test's
5th-percentile Dice.

The reference is a small JSON-serialisable dict (``ModelArtifact.qc_reference``); :func:`check_reference` turns scores
into flag names and one-line reasons such as ``"uncertain pixels 14.2 % > 6.1 % (at most 4.9 % on validation)"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "QC_SCORES",
    "SLACK",
    "QCScore",
    "build_qc_reference",
    "check_reference",
    "format_score",
]

SLACK: float = 1.0
"""Margin beyond the validation range, as a fraction of that range (see the module docstring)."""


@dataclass(frozen=True)
class QCScore:
    """How one QC score is judged and worded.

    Args:
        name: key in the scores dict (and the flag name).
        label: words for the reason line.
        side: ``"high"``, ``"low"`` or ``"both"``: which side is bad.
        unit: ``"percent"`` (a fraction shown in %) or ``"ratio"`` (shown with two decimals).
        tolerance: smallest slack, in the score's own units.
    """

    name: str
    label: str
    side: str
    unit: str
    tolerance: float


QC_SCORES: dict[str, QCScore] = {
    s.name: s
    for s in (
        QCScore("uncertain_fraction", "uncertain pixels", "high", "percent", 0.005),
        QCScore("mean_entropy", "mean entropy", "high", "ratio", 0.005),
        QCScore("area_fraction", "lung area", "both", "percent", 0.10),
        QCScore("lr_ratio", "left/right lung balance", "low", "ratio", 0.05),
        QCScore("border_contact", "lung along the image border", "high", "percent", 0.01),
        QCScore("outside_body", "lung on dark background outside the body", "high", "percent", 0.01),
        QCScore("tta_disagreement", "disagreement with the flipped image", "high", "percent", 0.01),
    )
}
"""The scores judged against the reference, in the order flags are listed."""


def format_score(score: QCScore, value: float) -> str:
    """``0.142`` → ``"14.2 %"`` for a percent score, ``"0.14"`` for a ratio."""
    if not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.1f} %" if score.unit == "percent" else f"{value:.2f}"


def build_qc_reference(
    scores: Iterable[Mapping[str, Any]], slack: float = SLACK, split: str = "validation", **info: Any
) -> dict[str, Any]:
    """Reference distributions and limits from the QC scores of the validation images.

    Args:
        scores: one dict per image (from :func:`pipeline.metrics.qc.qc_scores`); NaN values are left out.
        slack: margin beyond the range, as a fraction of it.
        split: which images these were (written into the reference).
        info: anything else to record (e.g. ``calibration="isotonic"``).

    Returns:
        ``{"split", "n_images", "slack", "scores": {name: {"values", "min", "median", "max", "low"?, "high"?}},
        ...info}``; a score with no finite value on any image is left out (and never flags).
    """
    rows = list(scores)
    out: dict[str, Any] = {"split": split, "n_images": len(rows), "slack": float(slack), **info, "scores": {}}
    for name, spec in QC_SCORES.items():
        v = np.array([float(r.get(name, np.nan)) for r in rows], dtype=np.float64)
        v = np.sort(v[np.isfinite(v)])
        if v.size == 0:
            continue
        lo, hi = float(v[0]), float(v[-1])
        margin = max(spec.tolerance, slack * (hi - lo))
        entry: dict[str, Any] = {"values": [round(float(x), 6) for x in v], "min": lo, "median": float(np.median(v)),
                                 "max": hi}
        if spec.side in ("high", "both"):
            entry["high"] = hi + margin
        if spec.side in ("low", "both"):
            entry["low"] = lo - margin
        out["scores"][name] = entry
    return out


def check_reference(scores: Mapping[str, Any], reference: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Flags and one-line reasons for the scores of one image against a reference.

    Args:
        scores: the image's QC scores.
        reference: from :func:`build_qc_reference`.

    Returns:
        ``(flags, reasons)``: score names beyond their limits, in :data:`QC_SCORES` order, and one sentence each.
    """
    flags, reasons = [], []
    ref_scores = reference.get("scores", {})
    split = reference.get("split", "validation")
    for name, spec in QC_SCORES.items():
        ref = ref_scores.get(name)
        value = float(scores.get(name, np.nan))
        if ref is None or not math.isfinite(value):
            continue
        if "high" in ref and value > ref["high"]:
            flags.append(name)
            reasons.append(f"{spec.label} {format_score(spec, value)} > {format_score(spec, ref['high'])} "
                           f"(at most {format_score(spec, ref['max'])} on {split})")
        elif "low" in ref and value < ref["low"]:
            flags.append(name)
            reasons.append(f"{spec.label} {format_score(spec, value)} < {format_score(spec, ref['low'])} "
                           f"(at least {format_score(spec, ref['min'])} on {split})")
    return flags, reasons
