"""Report figures. Every function returns a ``matplotlib.figure.Figure`` and never touches ``pyplot``.

Figures are built with the object API (``Figure()``), so nothing depends on, or changes, the global pyplot backend:
``Figure.savefig`` renders PNGs with the Agg canvas, which works headless. Tests can inspect the returned axes
(labels, titles, number of lines) instead of the pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pipeline.metrics.roc import ROCCurve

__all__ = [
    "CLASS_COLORS",
    "GalleryEntry",
    "plot_confidence_histogram",
    "plot_confusion_matrix",
    "plot_dice_histogram",
    "plot_overlay_gallery",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "plot_uncertainty_vs_dice",
]

CLASS_COLORS: tuple[str, ...] = ("#7f7f7f", "#e6550d", "#3182bd", "#31a354", "#756bb1", "#d62728")
"""Colour of class ``k`` in every figure (class 0, background, is grey and not drawn in overlays)."""


def _color(k: int) -> str:
    return CLASS_COLORS[k % len(CLASS_COLORS)]


def _style(ax: Any) -> None:
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)


def plot_reliability_diagram(calibration: Mapping[str, Any], class_names: Sequence[str]) -> Figure:
    """Reliability diagrams from pooled bins (:meth:`pipeline.metrics.CalibrationAccumulator.result`).

    Left: top-label diagram (Guo et al. 2017): accuracy per confidence bin as bars, the gap to the diagonal hatched.
    Right: class-wise curves, observed frequency of class ``k`` against mean ``p_k`` per bin.
    """
    edges = np.asarray(calibration["bin_edges"])
    width = float(edges[1] - edges[0])
    top = calibration["top_label"]
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    filled = np.asarray(top["counts"]) > 0
    centers = (edges[:-1] + edges[1:]) / 2
    acc = np.nan_to_num(np.asarray(top["mean_gt"]))
    conf = np.nan_to_num(np.asarray(top["mean_p"]))
    ax1.bar(centers[filled], acc[filled], width=width, color="#3182bd", edgecolor="white", label="Accuracy")
    ax1.bar(
        centers[filled], np.abs(conf - acc)[filled], bottom=np.minimum(conf, acc)[filled], width=width,
        facecolor=(0.84, 0.15, 0.16, 0.15), edgecolor="#d62728", hatch="//", linewidth=0.8, label="Gap to confidence",
    )
    ax1.plot([0, 1], [0, 1], ls="--", color="black", lw=1, label="Perfect calibration")
    ax1.set(xlim=(0, 1), ylim=(0, 1), xlabel="Confidence (max class probability)", ylabel="Accuracy")
    ax1.set_title(f"Top-label reliability  (ECE {float(top['ece']):.3f}, MCE {float(top['mce']):.3f})")
    ax1.legend(loc="upper left", fontsize=8)
    _style(ax1)

    per = calibration["per_class"]
    mean_p, mean_gt = np.asarray(per["mean_p"]), np.asarray(per["mean_gt"])
    ax2.plot([0, 1], [0, 1], ls="--", color="black", lw=1, label="Perfect calibration")
    for k, name in enumerate(class_names):
        ok = np.isfinite(mean_p[k]) & np.isfinite(mean_gt[k])
        ax2.plot(
            mean_p[k][ok], mean_gt[k][ok], marker="o", ms=3.5, lw=1.4, color=_color(k),
            label=f"{name} (ECE {float(per['ece'][k]):.3f})",
        )
    ax2.set(xlim=(0, 1), ylim=(0, 1), xlabel="Mean predicted probability", ylabel="Observed frequency")
    ax2.set_title("Class-wise reliability")
    ax2.legend(loc="upper left", fontsize=8)
    _style(ax2)
    return fig


def plot_confidence_histogram(calibration: Mapping[str, Any]) -> Figure:
    """Share of pixels per top-label confidence bin (log scale), with the mean confidence and the pixel accuracy."""
    edges = np.asarray(calibration["bin_edges"])
    top = calibration["top_label"]
    counts = np.asarray(top["counts"], dtype=np.float64)
    total = max(counts.sum(), 1.0)
    mean_conf = float(np.nansum(np.nan_to_num(top["mean_p"]) * counts) / total)
    accuracy = float(np.nansum(np.nan_to_num(top["mean_gt"]) * counts) / total)
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    share = counts / total
    ax.bar(edges[:-1], np.where(share > 0, share, np.nan), width=np.diff(edges), align="edge", color="#3182bd",
           edgecolor="white")
    ax.axvline(mean_conf, color="#d62728", lw=1.5, ls="--", label=f"Mean confidence {mean_conf:.3f}")
    ax.axvline(accuracy, color="black", lw=1.5, ls=":", label=f"Pixel accuracy {accuracy:.3f}")
    ax.set_yscale("log")
    ax.set(xlim=(0, 1), xlabel="Confidence (max class probability)", ylabel="Fraction of pixels")
    ax.set_title("Confidence histogram")
    ax.legend(loc="upper left", fontsize=8)
    _style(ax)
    return fig


def plot_roc_curves(curves: Sequence[ROCCurve]) -> Figure:
    """Pixel ROC curves per class: linear axes (left) and logarithmic false-positive rate (right)."""
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    n = curves[0].n_pixels if curves else 0
    for ax, log in zip(axes, (False, True)):
        for c in curves:
            fpr = np.asarray(c.fpr)
            x = np.clip(fpr, 1e-6, 1) if log else fpr
            ax.plot(x, c.tpr, lw=1.6, color=_color(c.class_index), label=f"{c.class_name} (AUC {c.auc:.4f})")
        if log:
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1)
            ax.set_title("ROC, log false-positive rate")
        else:
            ax.plot([0, 1], [0, 1], ls="--", color="black", lw=1, label="Chance")
            ax.set_xlim(0, 1)
            ax.set_title(f"Pixel ROC ({n:,} sampled pixels)")
        ax.set(ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
        ax.legend(loc="lower right", fontsize=8)
        _style(ax)
    return fig


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], title: str = "Normalised confusion matrix"
) -> Figure:
    """Row-normalised ``K x K`` confusion matrix (rows ground truth, columns prediction) with the values printed."""
    m = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    fig = Figure(figsize=(1.3 * k + 3.2, 1.1 * k + 2.4), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            v = m[i, j]
            ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:.3f}", ha="center", va="center",
                    color="white" if np.isfinite(v) and v > 0.5 else "black", fontsize=11)
    ax.set_xticks(range(k), class_names)
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="Predicted class", ylabel="True class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Fraction of true-class pixels")
    return fig


def plot_dice_histogram(dice: Sequence[float], label: str = "Dice") -> Figure:
    """Histogram of per-image Dice with the median marked."""
    d = np.asarray(dice, dtype=np.float64)
    d = d[np.isfinite(d)]
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    if d.size:
        lo = min(float(d.min()), 0.9)
        bins = np.linspace(np.floor(lo * 50) / 50, 1.0, 26)
        ax.hist(d, bins=bins, color="#3182bd", edgecolor="white")
        med = float(np.median(d))
        ax.axvline(med, color="#d62728", ls="--", lw=1.5, label=f"Median {med:.4f}")
        ax.legend(loc="upper left", fontsize=8)
    ax.set(xlabel=label, ylabel="Images")
    ax.set_title(f"Per-image {label} (n = {d.size})")
    _style(ax)
    return fig


def plot_uncertainty_vs_dice(
    uncertainty: Sequence[float], dice: Sequence[float], rho: float, label: str = "Dice"
) -> Figure:
    """Scatter of the QC uncertainty score against Dice, with the Spearman correlation in the title."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.scatter(uncertainty, dice, s=14, color="#3182bd", alpha=0.8, edgecolor="none")
    ax.set(xlabel="Uncertainty score (1 - soft Dice of the prediction)", ylabel=label)
    title = f"Uncertainty vs {label}"
    ax.set_title(f"{title}  (Spearman rho = {rho:.3f})" if np.isfinite(rho) else title)
    _style(ax)
    return fig


@dataclass
class GalleryEntry:
    """One column of the overlay gallery: ``image``, ``label`` and ``pred`` of equal ``(H, W)`` shape."""

    case_id: str
    tag: str
    score: float
    image: np.ndarray
    label: np.ndarray
    pred: np.ndarray


def _overlay(mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgba = np.zeros((*mask.shape, 4), dtype=np.float32)
    for k in np.unique(mask):
        if k > 0:
            rgba[mask == k] = to_rgba(_color(int(k)), alpha)
    return rgba


def plot_overlay_gallery(
    entries: Sequence[GalleryEntry], class_names: Sequence[str], score_name: str = "Dice"
) -> Figure:
    """Best / median / worst cases: columns are cases, rows are image, ground truth and prediction.

    The prediction row also draws the ground-truth outline (white), so misses and false positives stand out.
    """
    n = max(len(entries), 1)
    fig = Figure(figsize=(2.5 * n + 0.4, 8.2), layout="constrained")
    axes = np.asarray(fig.subplots(3, n, squeeze=False))
    rows = ("Image", "Ground truth", "Prediction")
    for j, e in enumerate(entries):
        lo, hi = np.percentile(e.image, [1, 99])
        for i in range(3):
            ax = axes[i, j]
            ax.imshow(e.image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="bilinear")
            if i == 1:
                ax.imshow(_overlay(e.label), interpolation="nearest")
            elif i == 2:
                ax.imshow(_overlay(e.pred), interpolation="nearest")
                for k in range(1, len(class_names)):
                    if (e.label == k).any():
                        ax.contour(e.label == k, levels=[0.5], colors="white", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(rows[i], fontsize=11)
        axes[0, j].set_title(f"{e.tag}: {e.case_id}\n{score_name} {e.score:.4f}", fontsize=9)
    for j in range(len(entries), n):
        for i in range(3):
            axes[i, j].axis("off")
    handles = [
        Patch(color=_color(k), alpha=0.6, label=name)
        for k, name in enumerate(class_names)
        if k > 0
    ]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9, frameon=False)
    return fig
