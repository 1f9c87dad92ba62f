"""X-ray transforms: loading with owned photometrics, mask normalisation, and the shared preprocessing / augmentation chains."""

from pipeline.transforms.io import LoadXRay, LoadXRayd, to_metatensor
from pipeline.transforms.label import NormalizeLabel, NormalizeLabeld
from pipeline.transforms.resize import AntiAliasResize, AntiAliasResized
from pipeline.transforms.presets import (
    INTENSITY_MODES,
    augmentation,
    preprocessing,
    restore_original_size,
)

__all__ = [
    "INTENSITY_MODES",
    "AntiAliasResize",
    "AntiAliasResized",
    "LoadXRay",
    "LoadXRayd",
    "NormalizeLabel",
    "NormalizeLabeld",
    "augmentation",
    "preprocessing",
    "restore_original_size",
    "to_metatensor",
]
from pipeline.transforms.gpu_augment import (
    RandBatchIntensityd,
    RandBatchSpatiald,
    device_augmentation,
    elastic_displacement,
    random_affine,
)

__all__ += ["RandBatchIntensityd", "RandBatchSpatiald", "device_augmentation", "elastic_displacement", "random_affine"]
