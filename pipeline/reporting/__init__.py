"""Evaluation reports: per-image CSV, summary JSON, figures and an HTML page, for one or several variants."""

from pipeline.reporting.case import EvaluationCase, ReportVariant
from pipeline.reporting.figures import (
    CLASS_COLORS,
    GalleryEntry,
    plot_confidence_histogram,
    plot_confusion_matrix,
    plot_dice_histogram,
    plot_overlay_gallery,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_uncertainty_vs_dice,
)
from pipeline.reporting.handler import EvaluationReportHandler, case_from_output
from pipeline.reporting.html import INDEX_METRICS, render_comparison_page, render_report_page
from pipeline.reporting.report import GALLERY_SIZE, ReportResult, write_evaluation_report
from pipeline.reporting.serialization import to_json_safe, write_csv, write_json

__all__ = [
    "CLASS_COLORS",
    "GALLERY_SIZE",
    "INDEX_METRICS",
    "EvaluationCase",
    "EvaluationReportHandler",
    "GalleryEntry",
    "ReportResult",
    "ReportVariant",
    "case_from_output",
    "plot_confidence_histogram",
    "plot_confusion_matrix",
    "plot_dice_histogram",
    "plot_overlay_gallery",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "plot_uncertainty_vs_dice",
    "render_comparison_page",
    "render_report_page",
    "to_json_safe",
    "write_csv",
    "write_evaluation_report",
    "write_json",
]
