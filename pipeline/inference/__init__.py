"""Inference: the Predictor (array / file / folder) shared by the bundle, the batch command and the web page."""

from pipeline.inference.loading import DEFAULT_BUNDLE, is_model_uri, load_predictor
from pipeline.inference.predictor import Prediction, Predictor, load_checkpoint

__all__ = ["DEFAULT_BUNDLE", "Prediction", "Predictor", "is_model_uri", "load_checkpoint", "load_predictor"]
