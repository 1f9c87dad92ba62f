"""Anatomical clean-up of predicted lung masks: drop specks, keep the two lungs, fill holes.

Steps, each optional:

1. drop connected components smaller than ``min_area_fraction`` of the image (``scipy.ndimage.label``; MONAI's
   ``RemoveSmallObjects`` would do, but with scikit-image 0.26 it passes the deprecated ``min_size`` argument and
   warns on every call);
2. keep the ``num_components`` largest components (MONAI ``KeepLargestConnectedComponent``; two lungs);
3. fill enclosed holes (MONAI ``FillHoles``), e.g. where a nodule or a pacemaker made the network hesitate.

Step 1 matters when only one lung was found: "keep the two largest" alone would then keep a speck as the second lung.
Components are 8-connected throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import FillHoles, KeepLargestConnectedComponent, MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_numpy
from scipy import ndimage

__all__ = ["LungCleanup", "LungCleanupd", "clean_lung_mask"]

_EIGHT = np.ones((3, 3), dtype=bool)


def clean_lung_mask(
    mask: np.ndarray,
    num_components: int | None = 2,
    min_area_fraction: float = 0.005,
    fill_holes: bool = True,
) -> np.ndarray:
    """Clean one 2D boolean lung mask.

    Args:
        mask: ``(H, W)`` boolean (or 0/1) lung mask.
        num_components: components to keep, largest first; ``None`` keeps all.
        min_area_fraction: components smaller than this fraction of the image are dropped; 0 disables.
            The default 0.005 (328 pixels at 256 x 256) is far below the smallest lung in JSRT/OpenIST (~7 %).
        fill_holes: fill background regions enclosed by lung.

    Returns:
        The cleaned ``(H, W)`` boolean mask.
    """
    m = np.asarray(mask).astype(bool)
    if min_area_fraction > 0 and m.any():
        lab, _ = ndimage.label(m, structure=_EIGHT)
        sizes = np.bincount(lab.ravel())
        small = sizes < min_area_fraction * m.size
        small[0] = False
        m = m & ~small[lab]
    if num_components is not None and m.any():
        keep = KeepLargestConnectedComponent(num_components=num_components, connectivity=2)
        m = convert_to_numpy(keep(torch.from_numpy(m[None].astype(np.uint8))))[0].astype(bool)
    if fill_holes and m.any():
        m = convert_to_numpy(FillHoles(connectivity=1)(torch.from_numpy(m[None].astype(np.uint8))))[0].astype(bool)
    return m


class LungCleanup(Transform):
    """Array transform applying :func:`clean_lung_mask` to a channel-first discrete prediction.

    Accepted inputs (2D, channel first):

    * ``(1, H, W)`` label map or 0/1 mask: pixels equal to ``lung_label`` are the lung; pixels removed become 0,
      filled holes become ``lung_label``;
    * ``(K, H, W)`` one-hot, ``K > 1``: channel ``lung_label`` is the lung; removed pixels move to channel 0, filled
      holes move to the lung channel.

    Args:
        num_components: components to keep (2 lungs); ``None`` keeps all.
        min_area_fraction: drop components smaller than this fraction of the image; 0 disables.
        fill_holes: fill enclosed holes.
        lung_label: lung class value (label map) or channel (one-hot).

    The output has the input's type, dtype and metadata.

    Example::

        >>> LungCleanup()(pred)            # pred: (1, 256, 256) 0/1 after thresholding
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        num_components: int | None = 2,
        min_area_fraction: float = 0.005,
        fill_holes: bool = True,
        lung_label: int = 1,
    ) -> None:
        if num_components is not None and num_components < 1:
            raise ValueError(f"num_components must be >= 1 or None, got {num_components}.")
        if not 0.0 <= min_area_fraction < 1.0:
            raise ValueError(f"min_area_fraction must lie in [0, 1), got {min_area_fraction}.")
        self.num_components = num_components
        self.min_area_fraction = min_area_fraction
        self.fill_holes = fill_holes
        self.lung_label = lung_label

    def __call__(self, img: Any) -> Any:
        arr = convert_to_numpy(img)
        if arr.ndim != 3:
            raise ValueError(f"LungCleanup expects a channel-first 2D array (C, H, W), got shape {arr.shape}.")
        onehot = arr.shape[0] > 1
        lung = arr[self.lung_label] > 0.5 if onehot else arr[0] == self.lung_label
        clean = clean_lung_mask(lung, self.num_components, self.min_area_fraction, self.fill_holes)
        out = arr.copy()
        if onehot:
            out[:, clean] = 0
            out[self.lung_label, clean] = 1
            removed = lung & ~clean
            out[self.lung_label, removed] = 0
            out[0, removed] = 1
        else:
            out[0, lung & ~clean] = 0
            out[0, clean] = self.lung_label
        result, *_ = convert_to_dst_type(out, img)
        return result


class LungCleanupd(MapTransform):
    """Dictionary version of :class:`LungCleanup`.

    Example (bundle YAML, after ``AsDiscreted``)::

        - _target_: pipeline.postprocessing.LungCleanupd
          keys: pred
          min_area_fraction: 0.005
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_components: int | None = 2,
        min_area_fraction: float = 0.005,
        fill_holes: bool = True,
        lung_label: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.cleanup = LungCleanup(num_components, min_area_fraction, fill_holes, lung_label)

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cleanup(d[key])
        return d
