"""The web application's road through the :class:`~pipeline.inference.Predictor`, shared by uploads and batch cases.

It is the batch's road: the Predictor's preprocessing, network and size restoration (what
:meth:`~pipeline.inference.Predictor.predict_images` does), then confidence and QC at the network's resolution,
computed by the same function that fills the batch manifest, so an image gets the same numbers on the page as in a
batch run with the same model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

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


def _batch_quality(prob_small: torch.Tensor, threshold: float) -> dict[str, Any]:
    from pipeline.metrics.qc import prediction_quality

    return prediction_quality(prob_small, threshold)  # the manifest's own numbers, on purpose


def segment_image(predictor: Predictor, image: XRayImage) -> WebSegmentation:
    """Segment one image that has been read already.

    Requests are served one at a time (a lock): memory stays bounded and torch already uses every core.

    Args:
        predictor: the Predictor.
        image: the radiograph (display polarity), as :func:`pipeline.io.read_image` returns it.
    """
    with _LOCK:
        tensor = torch.as_tensor(predictor.preprocess(image))
        prob_small = predictor.predict_tensor(tensor[None])[0].float().cpu()
        prob, mask = predictor.finish(image, prob_small)
    foreground = prob[0] if prob.shape[0] == 1 else 1.0 - prob[0]
    return WebSegmentation(prob, mask, foreground, _batch_quality(prob_small, predictor.threshold))
