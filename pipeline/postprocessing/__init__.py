"""Post-processing: per-class thresholds, lung clean-up, temperature scaling and the configurable chain."""

from pipeline.postprocessing.chain import postprocessing_transforms
from pipeline.postprocessing.cleanup import LungCleanup, LungCleanupd, clean_lung_mask
from pipeline.postprocessing.temperature import (
    TEMPERATURE_KEY,
    ApplyTemperature,
    ApplyTemperatured,
    TemperatureScaler,
    calibration_before_after,
    fit_temperature,
    load_temperature,
    probabilities_to_logits,
    rescale_probabilities,
    save_temperature,
)
from pipeline.postprocessing.thresholds import (
    ClassThreshold,
    ClassThresholdd,
    ThresholdSweep,
    apply_class_thresholds,
    threshold_sweep,
)

__all__ = [
    "TEMPERATURE_KEY",
    "ApplyTemperature",
    "ApplyTemperatured",
    "ClassThreshold",
    "ClassThresholdd",
    "LungCleanup",
    "LungCleanupd",
    "TemperatureScaler",
    "ThresholdSweep",
    "apply_class_thresholds",
    "calibration_before_after",
    "clean_lung_mask",
    "fit_temperature",
    "load_temperature",
    "postprocessing_transforms",
    "probabilities_to_logits",
    "rescale_probabilities",
    "save_temperature",
    "threshold_sweep",
]
