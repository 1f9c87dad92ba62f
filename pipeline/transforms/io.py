"""X-ray loading transforms: any supported file (or an already-read image) → channel-first ``MetaTensor``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

import pipeline.dicom.reader  # noqa: F401 - registers the DICOM reader with pipeline.io.read_image
from pipeline.io import XRayImage, read_image

__all__ = ["LoadXRay", "LoadXRayd"]


class LoadXRay(Transform):
    """Load a radiograph or mask as a ``(1, rows, cols)`` float32 ``MetaTensor``.

    The same road for every file type: PNG/JPEG/TIFF through Pillow, DICOM through the project's pydicom reader
    (modality LUT, optional VOI LUT/window, MONOCHROME1 inversion, BitsStored), NIfTI through nibabel. Arrays keep
    the rows x columns order of ``numpy``/``PIL``/``pydicom`` (MONAI's own readers transpose to columns x rows; this
    transform does not, so a PNG and a DICOM of the same pixels give the same tensor).

    The metadata carries what later steps need: ``filename_or_obj``, ``spatial_shape`` (original rows, cols),
    ``pixel_spacing`` (mm; NaN when unknown), ``value_range`` (NaN when unknown), ``format`` and
    ``sop_instance_uid`` (empty for non-DICOM). The affine is a
    diagonal of the pixel spacing (1 mm when unknown), so MONAI's spatial transforms track geometry correctly.

    Args:
        voi: apply the DICOM VOI LUT / window when present. Defaults to False.

    Examples::

        >>> img = LoadXRay()("chest.dcm")
        >>> img.shape, img.meta["spatial_shape"]
    """

    def __init__(self, voi: bool = False) -> None:
        self.voi = voi

    def __call__(self, src: str | Path | XRayImage) -> MetaTensor:
        """Read ``src`` (a path or an :class:`XRayImage` already in memory) and return a channel-first tensor."""
        image = src if isinstance(src, XRayImage) else read_image(src, voi=self.voi)
        return to_metatensor(image)


def to_metatensor(image: XRayImage) -> MetaTensor:
    """Wrap an :class:`XRayImage` as a ``(1, rows, cols)`` ``MetaTensor`` with geometry and provenance metadata."""
    spacing = image.spacing or (1.0, 1.0)
    affine = torch.diag(torch.tensor([spacing[0], spacing[1], 1.0, 1.0], dtype=torch.float64))
    nan2 = [float("nan"), float("nan")]
    # a fixed set of keys with fixed types, so batches mixing DICOM and PNG files still collate
    meta: dict[str, Any] = {
        "filename_or_obj": image.source,
        "spatial_shape": np.asarray(image.shape),
        "original_channel_dim": "no_channel",
        "pixel_spacing": [float(s) for s in image.spacing] if image.spacing else nan2,
        "value_range": [float(v) for v in image.value_range] if image.value_range else nan2,
        "format": image.format,
        "sop_instance_uid": str(image.meta.get("SOPInstanceUID", "")),
    }
    data = torch.from_numpy(np.ascontiguousarray(image.pixels, dtype=np.float32))[None]
    return MetaTensor(data, affine=affine, meta=meta)


class LoadXRayd(MapTransform):
    """Dictionary version of :class:`LoadXRay`: loads every key (image and mask alike) with the same reader.

    Args:
        keys: keys of the paths to load, e.g. ``["image", "label"]``.
        voi: apply the DICOM VOI LUT / window when present (images only matter; masks are never DICOM windowed).
        allow_missing_keys: don't raise if a key is absent (e.g. inference data without labels).
    """

    def __init__(self, keys: KeysCollection, voi: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadXRay(voi=voi)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


