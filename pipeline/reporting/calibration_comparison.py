"""Calibration methods side by side: ECE, ACE and MCE per method and data set, in one figure.

ECE alone hides what a global temperature does to the lung border (the few pixels a reader looks at): it weights bins
by their pixel count, so millions of confident background pixels dominate it. ACE (every filled bin counts equally)
and MCE (the worst bin) show the border; the figure puts the three next to each other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

__all__ = ["CALIBRATION_ERRORS", "plot_calibration_comparison"]

CALIBRATION_ERRORS: tuple[str, ...] = ("ece", "ace", "mce")
"""The three reductions over reliability bins, in panel order."""


def plot_calibration_comparison(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Figure:
    """Grouped bars: one panel per error (ECE, ACE, MCE), one group per data set, one bar per method.

    Args:
        results: ``{method: {data_set: {"ece": ..., "ace": ..., "mce": ...}}}`` (e.g. ``scripts/benchmark_qc.py``).

    Returns:
        The figure (three axes, titled ``ECE``, ``ACE``, ``MCE``).

    Example::

        >>> fig = plot_calibration_comparison({"none": {"test": {"ece": .02, "ace": .03, "mce": .06}},
        ...                                    "isotonic": {"test": {"ece": .004, "ace": .02, "mce": .04}}})
    """
    methods = list(results)
    sets = list(next(iter(results.values()))) if methods else []
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, len(CALIBRATION_ERRORS))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(sets))
    for ax, err in zip(axes, CALIBRATION_ERRORS):
        for i, m in enumerate(methods):
            vals = [float(results[m][s].get(err, np.nan)) for s in sets]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, label=m)
        ax.set_xticks(x, sets)
        ax.set_title(err.upper())
        ax.set_ylabel("lung-class error (pooled pixels)")
        ax.grid(True, axis="y", alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].legend(fontsize=8)
    return fig
