"""The web application's road through the :class:`~pipeline.inference.Predictor`, shared by uploads and batch cases.

It is the batch's road: :meth:`~pipeline.inference.Predictor.predict_batch` (preprocessing, network, size
restoration, confidence and QC at the network's resolution), so an image gets the same mask and numbers on the page
as in a batch run with the same model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.inference.predictor import Predictor
from pipeline.io import XRayImage

__all__ = ["WebSegmentation", "segment_image"]

_LOCK = threading.Lock()


@dataclass
class WebSegmentation:
    """One segmented image.

    Attributes:
        prob: ``(C, rows, cols)`` probabilities at the original size.
        mask: ``(rows, cols)`` uint8 mask (0/1, or class indices) at the original size.
        foreground: ``(rows, cols)`` foreground (lung) probability.
        quality: ``confidence``, ``qc_flags``, ``mean_entropy``, ``uncertainty``, ``n_components``,
            ``area_fraction``, as in the batch manifest.
    """

    prob: np.ndarray
    mask: np.ndarray
    foreground: np.ndarray
    quality: dict[str, Any]


def segment_image(predictor: Predictor, image: XRayImage) -> WebSegmentation:
    """Segment one image that has been read already, through :meth:`Predictor.predict_images` (the one road).

    Requests are served one at a time (a lock): memory stays bounded and torch already uses every core.

    Args:
        predictor: the Predictor.
        image: the radiograph (display polarity), as :func:`pipeline.io.read_image` returns it.
    """
    with _LOCK:
        result = predictor.predict_images([image])[0]
    return WebSegmentation(result.prob, result.mask, result.foreground_prob, result.quality)
