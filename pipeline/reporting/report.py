"""Write a complete evaluation report (tables, JSON, figures, HTML) for one or several post-processing variants.

Layout of ``out_dir`` for one variant::

    per_image.csv             one row per image, flagged images first, then by headline Dice (worst first)
    summary.json              dataset-level metrics, ROC points, reliability bins, QC counts, Spearman, settings
    reliability_diagram.png   top-label and class-wise reliability
    confidence_histogram.png
    roc_curves.png
    confusion_matrix.png      row-normalised, pixel-pooled
    dice_histogram.png
    uncertainty_vs_dice.png
    overlay_gallery.png       best / median / worst cases by headline Dice
    index.html                everything above on one page

With several variants (e.g. raw, cleanup, temperature + cleanup), every variant gets that layout in
``out_dir/<variant name>/`` and ``out_dir`` gets ``comparison.csv``, ``comparison.json`` and an ``index.html`` linking
them; the cases are read once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import monai
import numpy as np
from matplotlib.figure import Figure

import pipeline
from pipeline.metrics.aggregation import SegmentationAggregator
from pipeline.metrics.calibration import CALIBRATION_BINS
from pipeline.metrics.roc import PIXELS_PER_IMAGE, ROC_SAMPLE_SIZE
from pipeline.reporting.case import EvaluationCase, ReportVariant
from pipeline.reporting.figures import (
    GalleryEntry,
    plot_confidence_histogram,
    plot_confusion_matrix,
    plot_dice_histogram,
    plot_overlay_gallery,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_uncertainty_vs_dice,
)
from pipeline.reporting.html import render_comparison_page, render_report_page
from pipeline.reporting.serialization import write_csv, write_json

__all__ = ["GALLERY_SIZE", "ReportResult", "write_evaluation_report"]

logger = logging.getLogger(__name__)

GALLERY_SIZE: int = 256
"""Longest side, in pixels, of the thumbnails kept in memory for the overlay gallery."""

FIGURES: tuple[tuple[str, str], ...] = (
    ("reliability_diagram", "Reliability diagram"),
    ("confidence_histogram", "Confidence histogram"),
    ("roc_curves", "ROC curves"),
    ("confusion_matrix", "Normalised confusion matrix"),
    ("dice_histogram", "Dice histogram"),
    ("uncertainty_vs_dice", "Uncertainty vs Dice"),
    ("overlay_gallery", "Best / median / worst cases"),
)


@dataclass
class ReportResult:
    """What :func:`write_evaluation_report` wrote.

    Attributes:
        out_dir: the report folder.
        files: ``{name: path}`` (``per_image_csv``, ``summary_json``, ``index_html``, one entry per figure; for a
            comparison ``comparison_csv``, ``comparison_json``, ``index_html``).
        summary: the ``summary.json`` content (for a comparison: ``{"comparison": rows}``).
        rows: per-image rows in CSV order (empty for a comparison).
        variants: ``{name: ReportResult}`` of every variant when several were compared, else empty.
    """

    out_dir: Path
    files: dict[str, Path]
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    variants: dict[str, ReportResult] = field(default_factory=dict)


def _thumbnail(a: np.ndarray) -> np.ndarray:
    step = max(1, math.ceil(max(a.shape) / GALLERY_SIZE))
    return a[::step, ::step]


def _display_thumbnail(image: np.ndarray) -> np.ndarray:
    """Thumbnail scaled to [0, 1] between the 1st and 99th percentiles (float16 cannot hold 16-bit raw values)."""
    t = _thumbnail(image).astype(np.float32)
    lo, hi = np.percentile(t, [1, 99])
    return np.clip((t - lo) / (hi - lo if hi > lo else 1.0), 0, 1).astype(np.float16)


class _VariantRun:
    """Accumulates one variant over the cases."""

    def __init__(self, variant: ReportVariant, class_names: Sequence[str] | None, num_channels: int, **agg: Any):
        self.variant = variant
        self.aggregator = SegmentationAggregator(class_names, num_channels, **agg)
        self.preds: list[np.ndarray] = []

    def add(self, case: EvaluationCase) -> None:
        prob, pred = self.variant.apply(case.prob)
        self.aggregator.add(prob, case.label, pred, case.spacing, case.case_id)
        self.preds.append(_thumbnail(pred).astype(np.uint8))


def _sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(r: dict[str, Any]) -> tuple[int, float]:
        d = float(r.get("dice", math.nan))
        return (0 if r.get("n_flags", 0) else 1, d if math.isfinite(d) else math.inf)

    ordered = sorted(rows, key=key)
    lead = ("case_id", "n_flags", "flags")
    return [{**{k: r[k] for k in lead if k in r}, **{k: v for k, v in r.items() if k not in lead}} for r in ordered]


def _gallery_indices(dice: np.ndarray, per_group: int) -> list[tuple[str, int]]:
    finite = np.flatnonzero(np.isfinite(dice))
    order = finite[np.argsort(dice[finite], kind="stable")]  # worst first
    n = order.size
    if n == 0:
        return []
    g = max(1, min(per_group, n // 3 if n >= 3 else 1))
    mid = max(0, n // 2 - g // 2)
    picks = [("best", i) for i in order[::-1][:g]] + [("median", i) for i in order[mid : mid + g]]
    picks += [("worst", i) for i in order[:g]]
    unique: list[tuple[str, int]] = []
    for tag, i in picks:
        if int(i) not in {j for _, j in unique}:
            unique.append((tag, int(i)))
    return unique


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def _write_variant(
    run: _VariantRun,
    out_dir: Path,
    images: list[np.ndarray],
    labels: list[np.ndarray],
    title: str,
    gallery_per_group: int,
    dpi: int,
    figures: bool,
) -> ReportResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    agg = run.aggregator
    names = agg.class_names
    summary = agg.summary()
    cal = agg.calibration()
    curves = agg.roc()
    headline = summary["headline_class"]
    dice_label = f"Dice ({headline})"
    dice = agg.column("dice")
    summary["variant"] = run.variant.describe()
    summary["roc_curves"] = [c.to_dict() for c in curves]
    summary["reliability"] = {
        "bin_edges": cal["bin_edges"],
        "top_label": {k: cal["top_label"][k] for k in ("mean_p", "mean_gt", "counts")},
        "per_class": {k: dict(zip(names, cal["per_class"][k])) for k in ("mean_p", "mean_gt", "counts")},
    }
    summary["software"] = {"pipeline": pipeline.__version__, "monai": monai.__version__}
    rows = _sorted_rows(agg.rows)

    files: dict[str, Path] = {"per_image_csv": write_csv(out_dir / "per_image.csv", rows)}
    gallery = [
        GalleryEntry(agg.rows[i]["case_id"], tag, float(dice[i]), images[i].astype(np.float32), labels[i], run.preds[i])
        for tag, i in _gallery_indices(dice, gallery_per_group)
    ]
    rho = float(summary["uncertainty_dice_spearman"]["spearman_rho"])
    plots = {
        "reliability_diagram": lambda: plot_reliability_diagram(cal, names),
        "confidence_histogram": lambda: plot_confidence_histogram(cal),
        "roc_curves": lambda: plot_roc_curves(curves),
        "confusion_matrix": lambda: plot_confusion_matrix(agg.confusion_matrix(), names),
        "dice_histogram": lambda: plot_dice_histogram(dice, dice_label),
        "uncertainty_vs_dice": lambda: plot_uncertainty_vs_dice(agg.column("uncertainty_score"), dice, rho, dice_label),
        "overlay_gallery": lambda: plot_overlay_gallery(gallery, names, dice_label),
    }
    for name, plot in plots.items() if figures else ():
        files[name] = _save(plot(), out_dir / f"{name}.png", dpi)
    summary["files"] = {k: p.name for k, p in files.items()}
    summary["files"].update(summary_json="summary.json", index_html="index.html")
    files["summary_json"] = write_json(out_dir / "summary.json", summary)
    captions = {cap: f"{key}.png" for key, cap in FIGURES if key in files}
    page = render_report_page(summary, rows, captions, title=title)
    files["index_html"] = out_dir / "index.html"
    files["index_html"].write_text(page)
    logger.info("wrote evaluation report of %d images to %s", len(rows), out_dir)
    return ReportResult(out_dir, files, summary, rows)


def _foreground(values: Any) -> float:
    """Mean over the foreground classes of per-class values (``{class name: value}``, background first)."""
    v = np.atleast_1d(np.asarray(list(values.values()) if isinstance(values, Mapping) else values, dtype=np.float64))
    return float(np.nanmean(v[1:] if v.size > 1 else v))


def _comparison_row(name: str, res: ReportResult) -> dict[str, Any]:
    s = res.summary
    pi = s["per_image"]

    def mean(k: str) -> float:
        return float(pi[k]["mean"]) if k in pi else math.nan

    v = s["variant"]
    return {
        "variant": name,
        "temperature": v["temperature"],
        "calibration": v.get("calibration", "none"),
        "cleanup": bool(v["cleanup"]),
        "thresholds": str(v["thresholds"]),
        "dice_mean": mean("dice"),
        "dice_median": float(pi["dice"]["median"]),
        "iou_mean": mean("iou"),
        "hd95_px_mean": mean("hd95_px"),
        "hd95_mm_mean": mean("hd95_mm"),
        "asd_px_mean": mean("asd_px"),
        "ece_mean": mean("ece"),
        "ece_top_label_pooled": float(s["calibration"]["top_label"]["ece"]),
        # ECE alone hides the lung border (it weights bins by pixel count): ACE and MCE of the lung class beside it
        **{f"{k}_lung_pooled": _foreground(s["calibration"]["per_class"][k]) for k in ("ece", "ace", "mce")},
        "n_flagged": int(s["qc"]["n_flagged"]),
        "uncertainty_dice_rho": float(s["uncertainty_dice_spearman"]["spearman_rho"]),
    }


def write_evaluation_report(
    cases: Iterable[EvaluationCase],
    out_dir: str | Path,
    class_names: Sequence[str] | None = None,
    variants: ReportVariant | Sequence[ReportVariant] | None = None,
    num_bins: int = CALIBRATION_BINS,
    roc_sample_size: int = ROC_SAMPLE_SIZE,
    pixels_per_image: int = PIXELS_PER_IMAGE,
    seed: int = 0,
    gallery_per_group: int = 2,
    title: str = "Segmentation evaluation",
    dpi: int = 110,
    figures: bool = True,
) -> ReportResult:
    """Evaluate cases and write the report files (see the module docstring for the layout).

    Args:
        cases: per-image :class:`EvaluationCase` records; read once, so a generator is fine. All cases must have the
            same number of probability channels.
        out_dir: report folder (created).
        class_names: names of the classes; one name (e.g. ``["lung"]``) or two for a sigmoid output, ``C`` names for
            a softmax output (XNet: ``["open beam", "soft tissue", "bone"]``).
        variants: post-processing settings. ``None``: one default variant (probabilities as given, 0.5 / arg-max,
            no cleanup). One :class:`ReportVariant`: written straight into ``out_dir``. Several: one sub-folder each
            plus a comparison page, in a single pass over the cases.
        num_bins: calibration bins.
        roc_sample_size: pixels per evaluation for ROC (default 200,000), drawn with ``seed``.
        pixels_per_image: pixels drawn from each image into the ROC pool.
        seed: ROC sampling seed.
        gallery_per_group: cases shown for each of best / median / worst.
        title: page title.
        dpi: PNG resolution.
        figures: draw the PNG figures (about 5 s per variant on a CPU); ``False`` writes only the tables, JSON and
            HTML, for quick sweeps.

    Returns:
        :class:`ReportResult`; for several variants its ``variants`` holds each one's result.

    Raises:
        ValueError: when there are no cases, or variant names repeat.

    Example::

        >>> cases = (EvaluationCase(i, img, prob, lab, spacing) for i, img, prob, lab, spacing in predictions)
        >>> write_evaluation_report(cases, "eval/report", ["lung"],
        ...     variants=[ReportVariant("raw"), ReportVariant("cleanup", cleanup=True)])
    """
    out = Path(out_dir)
    if variants is None:
        vlist = [ReportVariant()]
    else:
        vlist = [variants] if isinstance(variants, ReportVariant) else list(variants)
    if not vlist or len({v.name for v in vlist}) != len(vlist):
        raise ValueError(f"variants need unique names, got {[v.name for v in vlist]}.")
    agg_kwargs = {
        "num_bins": num_bins,
        "roc_sample_size": roc_sample_size,
        "pixels_per_image": pixels_per_image,
        "seed": seed,
    }
    runs: list[_VariantRun] = []
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for case in cases:
        if not runs:
            runs = [_VariantRun(v, class_names, int(case.prob.shape[0]), **agg_kwargs) for v in vlist]
        for run in runs:
            run.add(case)
        images.append(_display_thumbnail(case.image))
        labels.append(_thumbnail(case.label).astype(np.uint8))
    if not runs:
        raise ValueError("write_evaluation_report got no cases.")

    if len(runs) == 1:
        return _write_variant(runs[0], out, images, labels, title, gallery_per_group, dpi, figures)

    results = {}
    for run in runs:
        name = run.variant.name
        results[name] = _write_variant(
            run, out / name, images, labels, f"{title} – {name}", gallery_per_group, dpi, figures
        )
    comparison = [_comparison_row(name, res) for name, res in results.items()]
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "comparison_csv": write_csv(out / "comparison.csv", comparison),
        "comparison_json": write_json(out / "comparison.json", {"variants": comparison}),
        "index_html": out / "index.html",
    }
    files["index_html"].write_text(render_comparison_page(comparison, title=f"{title} – post-processing comparison"))
    logger.info("wrote comparison of %d variants to %s", len(results), out)
    return ReportResult(out, files, {"comparison": comparison}, variants=results)
