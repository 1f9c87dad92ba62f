"""Inference: the Predictor (array / file / folder) shared by the bundle, the batch command and the web page."""

from pipeline.inference.predictor import Prediction, Predictor, load_checkpoint

__all__ = ["Prediction", "Predictor", "load_checkpoint"]
