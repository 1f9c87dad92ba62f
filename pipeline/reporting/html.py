"""The ``index.html`` pages of an evaluation report: one self-contained page per variant, one comparison page."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.metrics.utils import column_name

__all__ = ["INDEX_METRICS", "render_comparison_page", "render_report_page"]

INDEX_METRICS: tuple[tuple[str, str], ...] = (
    ("dice", "Dice"),
    ("iou", "IoU"),
    ("precision", "Precision"),
    ("recall", "Recall (sensitivity)"),
    ("specificity", "Specificity"),
    ("hd95_px", "HD95 (px)"),
    ("hd95_mm", "HD95 (mm)"),
    ("asd_px", "ASD (px)"),
    ("asd_mm", "ASD (mm)"),
    ("ece", "ECE (class-wise)"),
    ("ece_top_label", "ECE (top-label)"),
    ("uncertainty_score", "Uncertainty score"),
    ("mean_entropy", "Mean entropy"),
)
"""Per-image columns summarised at the top of a report page, with their display names."""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1150px;color:#222;
line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.28rem .6rem;text-align:right}th{background:#f4f6f8}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.4rem 0}
.note{color:#666;font-size:.85rem}.flag{color:#b30000}code{background:#f4f6f8;padding:0 .25rem}
"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.{digits}f}"
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def render_report_page(
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    figures: Mapping[str, str],
    title: str = "Segmentation evaluation",
    max_flagged_rows: int = 25,
) -> str:
    """HTML of one report: headline statistics, per-class table, calibration, QC, flagged cases, figures.

    Args:
        summary: the ``summary.json`` content (:meth:`pipeline.metrics.SegmentationAggregator.summary` plus the
            report's additions).
        rows: per-image rows in CSV order (flagged first).
        figures: ``{caption: relative PNG path}``.
        title: page title.
        max_flagged_rows: flagged cases listed on the page (all are in ``per_image.csv``).
    """
    names = list(summary["class_names"])
    per_image = summary["per_image"]
    headline = summary.get("headline_class", "")
    variant = summary.get("variant", {})
    settings = ", ".join(f"{k}={v}" for k, v in variant.items() if k != "name") or "as given"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append(
        f"<p>{summary['n_images']} images · classes: {html.escape(', '.join(names))} · headline: "
        f"<b>{html.escape(str(headline))}</b> · variant <b>{html.escape(str(variant.get('name', '')))}</b>: "
        f"<code>{html.escape(settings)}</code></p>"
        "<p class='note'>Files: <a href='per_image.csv'>per_image.csv</a> · <a href='summary.json'>summary.json</a>. "
        "Headline metrics are the lung class for binary outputs and class-frequency-weighted averages for "
        "multi-class outputs. Empty-mask distances are left out of the means (see surface status).</p>"
    )
    stat_rows = [
        [label, per_image[k]["mean"], per_image[k]["std"], per_image[k]["median"], per_image[k]["q25"],
         per_image[k]["q75"], per_image[k]["n"]]
        for k, label in INDEX_METRICS
        if k in per_image and per_image[k]["n"] > 0
    ]
    parts.append("<h2>Per-image metrics</h2>")
    parts.append(_table(["Metric", "Mean", "Std", "Median", "Q25", "Q75", "n"], stat_rows))

    pooled, cal, auc = summary["pooled"], summary["calibration"], summary["roc"]["auc"]
    class_rows = [
        [
            n,
            per_image.get(column_name("dice", n), {}).get("mean"),
            pooled["dice"][n],
            pooled["precision"][n],
            pooled["recall"][n],
            pooled["specificity"][n],
            auc.get(n),
            cal["per_class"]["ece"][n],
            cal["confidence"][n],
            cal["accuracy_of_assigned"][n],
            pooled["class_frequency"][n],
        ]
        for n in names
    ]
    parts.append("<h2>Per class</h2>")
    parts.append(
        _table(
            ["Class", "Dice (mean/image)", "Dice (pooled)", "Precision", "Recall", "Specificity", "Pixel AUC",
             "ECE", "Confidence", "Accuracy of assigned", "GT frequency"],
            class_rows,
        )
    )
    w = pooled["weighted"]
    parts.append(
        "<p class='note'>Pooled = pixels of all images together. Class-weighted (XNet) averages: "
        + ", ".join(f"{html.escape(k)} {_fmt(v)}" for k, v in w.items())
        + f". Top-label ECE {_fmt(cal['top_label']['ece'])}, ACE {_fmt(cal['top_label']['ace'])}, "
        f"MCE {_fmt(cal['top_label']['mce'])} ({cal['num_bins']} bins). Confidence = mean probability of the pixels "
        "assigned to the class; accuracy of assigned = fraction of them truly in the class. ROC on "
        f"{summary['roc']['n_pixels']:,} pixels sampled with seed {summary['roc']['seed']}.</p>"
    )

    qc = summary["qc"]
    sp = summary["uncertainty_dice_spearman"]
    parts.append("<h2>Quality control</h2>")
    parts.append(_table(["Flag", "Images"], [[k, v] for k, v in qc["flag_counts"].items()]))
    parts.append(
        f"<p>{qc['n_flagged']} of {summary['n_images']} images flagged. Spearman correlation of the uncertainty "
        f"score with Dice: rho = {_fmt(sp['spearman_rho'], 3)} (p = {_fmt(sp['p_value'], 4)}, n = {sp['n']}).</p>"
    )
    flagged = [r for r in rows if r.get("n_flags", 0)][:max_flagged_rows]
    if flagged:
        parts.append(
            _table(
                ["Case", "Flags", "Dice", "HD95 (px)", "Uncertainty", "Area fraction", "Components", "L/R ratio"],
                [
                    [r["case_id"], r.get("flags", ""), r.get("dice"), r.get("hd95_px"), r.get("uncertainty_score"),
                     r.get("area_fraction"), r.get("n_components"), r.get("lr_ratio")]
                    for r in flagged
                ],
            )
        )
    parts.append("<h2>Figures</h2>")
    for caption, path in figures.items():
        parts.append(f"<h3>{html.escape(caption)}</h3><img src='{html.escape(path)}' alt='{html.escape(caption)}'>")
    return _page(title, "".join(parts))


def render_comparison_page(rows: Sequence[Mapping[str, Any]], title: str = "Post-processing comparison") -> str:
    """HTML table comparing variants; each row needs ``variant`` (also the sub-folder name) plus metric columns."""
    if not rows:
        return _page(title, f"<h1>{html.escape(title)}</h1><p>No variants.</p>")
    header = list(rows[0])
    body_rows = []
    for r in rows:
        name = html.escape(str(r["variant"]))
        cells = [f"<td><a href='{name}/index.html'>{name}</a></td>"] + [f"<td>{_fmt(r[k])}</td>" for k in header[1:]]
        body_rows.append("<tr>" + "".join(cells) + "</tr>")
    table = (
        "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"
        + "".join(body_rows) + "</tbody></table>"
    )
    note = (
        "<p class='note'>Means over images; full reports per variant behind the links; "
        "<a href='comparison.csv'>comparison.csv</a>.</p>"
    )
    return _page(title, f"<h1>{html.escape(title)}</h1>{table}{note}")
