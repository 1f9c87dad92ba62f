"""The in-memory form every reader returns: pixels in display polarity plus the little metadata the pipeline needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["XRayImage", "ImageReadError", "UnsupportedImageError"]


class ImageReadError(RuntimeError):
    """A file could not be read as an image (missing, truncated, corrupt or not an image at all)."""


class UnsupportedImageError(ImageReadError):
    """A file is a valid image or DICOM object that the pipeline deliberately refuses (colour, multi-frame, ...)."""


@dataclass
class XRayImage:
    """Pixels of one radiograph, in rows x columns order and MONOCHROME2 polarity (bright = dense).

    Attributes:
        pixels: float32 array of shape ``(rows, cols)``. For DICOM, modality LUT applied, MONOCHROME1 inverted and,
            if asked for, the VOI LUT/window applied; for PNG/JPEG/TIFF, the stored grey values.
        source: path of the file the pixels came from.
        format: ``"dicom"``, ``"png"``, ``"jpeg"``, ``"tiff"`` or ``"nifti"``.
        spacing: pixel spacing in mm as ``(row, col)`` when the file states it, else ``None``.
        value_range: the range the pixel values can take (e.g. ``(0, 4095)`` for 12-bit data), used by fixed-range
            intensity scaling.
        meta: other facts (DICOM UIDs, photometric interpretation, bits stored, window, ...).
    """

    pixels: np.ndarray
    source: str
    format: str
    spacing: tuple[float, float] | None = None
    value_range: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the original image."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))
