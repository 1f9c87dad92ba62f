"""Dictionary keys shared by every transform, engine and writer in the pipeline."""

from __future__ import annotations

from enum import Enum

__all__ = ["Keys"]


class Keys(str, Enum):
    """Keys of the data dictionaries that travel through transforms and engines.

    They match MONAI's ``CommonKeys`` values so MONAI engines and handlers find them without mapping.
    """

    IMAGE = "image"
    LABEL = "label"
    PRED = "pred"
    PROB = "prob"  # probabilities before discretisation, kept beside ``pred`` for AUC and calibration
    LOSS = "loss"

    def __str__(self) -> str:  # so f-strings and MONAI key lookups see the plain value
        return self.value
