"""Inference: the Predictor (array / file / folder), the resumable DICOM batch runner, overlays and acceleration."""

from pipeline.inference.acceleration import OptimizedNetwork, optimize_for_inference
from pipeline.inference.batch import BatchRunner, BatchSummary
from pipeline.inference.loading import load_predictor
from pipeline.inference.outputs import (
    OUTPUT_KINDS,
    REVIEW_FILES,
    OutputFolderError,
    OutputKind,
    check_output_dir,
)
from pipeline.inference.overlay import display_image, overlay_rgb, write_overlay_png
from pipeline.inference.predictor import Prediction, Predictor, is_model_uri

__all__ = [
    "OUTPUT_KINDS",
    "REVIEW_FILES",
    "BatchRunner",
    "BatchSummary",
    "OptimizedNetwork",
    "OutputFolderError",
    "OutputKind",
    "Prediction",
    "Predictor",
    "check_output_dir",
    "display_image",
    "is_model_uri",
    "load_predictor",
    "optimize_for_inference",
    "overlay_rgb",
    "write_overlay_png",
]
