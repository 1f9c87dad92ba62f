"""Inference: the Predictor (array / file / folder) shared by the bundle, the batch command and the web page."""

from pipeline.inference.loading import DEFAULT_BUNDLE, is_model_uri, load_predictor
from pipeline.inference.predictor import Prediction, Predictor, load_checkpoint

__all__ = ["DEFAULT_BUNDLE", "Prediction", "Predictor", "is_model_uri", "load_checkpoint", "load_predictor"]

# batch inference and review overlays (hospital DICOM batches: ``xray-seg predict``)
from pipeline.inference.batch import OUTPUT_KINDS, BatchRunner, BatchSummary, FastPreprocess  # noqa: E402
from pipeline.inference.overlay import display_image, overlay_rgb, write_overlay_png  # noqa: E402

__all__ += ["OUTPUT_KINDS", "BatchRunner", "BatchSummary", "FastPreprocess", "display_image", "overlay_rgb", "write_overlay_png"]
