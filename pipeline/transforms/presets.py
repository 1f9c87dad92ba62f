"""The preprocessing and augmentation chains, defined once for every entry point.

Training, validation, evaluation, batch inference, the web page and the benchmarks all build their transforms here,
so the pixels the model sees at inference are made exactly as in training (no train/inference skew).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.transforms import (
    EnsureTyped,
    MapTransform,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resize,
    Resized,
    ScaleIntensityd,
    ScaleIntensityRangePercentilesd,
    Transform,
)

from pipeline.keys import Keys
from pipeline.transforms.io import LoadXRayd
from pipeline.transforms.label import NormalizeLabeld
from pipeline.transforms.resize import AntiAliasResized

__all__ = ["INTENSITY_MODES", "preprocessing", "augmentation", "restore_original_size"]

#: ``minmax``: per-image min-max to [-1, 1] (the papers' choice). ``percentile``: the 0.5th-99.5th percentile range
#: to [-1, 1], clipped, robust to burned-in text, markers and blanked film labels.
INTENSITY_MODES = ("minmax", "percentile")


def _intensity(key: str, mode: str) -> MapTransform:
    if mode == "minmax":
        return ScaleIntensityd(keys=key, minv=-1.0, maxv=1.0)
    if mode == "percentile":
        return ScaleIntensityRangePercentilesd(keys=key, lower=0.5, upper=99.5, b_min=-1.0, b_max=1.0, clip=True)
    raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {mode!r}.")


def preprocessing(
    image_size: int | Sequence[int] = 256,
    intensity: str = "minmax",
    num_classes: int = 1,
    with_label: bool = True,
    voi: bool = False,
    load: bool = True,
) -> list[Transform]:
    """Deterministic chain: load → normalise the mask → resize → scale intensity to [-1, 1].

    The image is resized by :class:`~pipeline.transforms.resize.AntiAliasResized` (the numbers of MONAI's
    ``Resized(mode="bilinear", anti_aliasing=True)``, with memory linear in the image size), the label by
    ``Resized(mode="nearest")``. Training, evaluation and every inference entry point use this one chain.

    Args:
        image_size: side (or ``(rows, cols)``) the network sees. Defaults to 256.
        intensity: ``"minmax"`` or ``"percentile"`` (see :data:`INTENSITY_MODES`). Defaults to ``"minmax"``.
        num_classes: network output channels; 1 binarises the mask, more keeps class indices.
        with_label: also load and prepare ``label``. False for inference.
        voi: apply the DICOM VOI LUT / window when present. Defaults to False.
        load: include the loader (False when the dict already holds tensors).

    Returns:
        A list of dictionary transforms on keys ``image`` (and ``label``).
    """
    size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    keys = [Keys.IMAGE.value, Keys.LABEL.value] if with_label else [Keys.IMAGE.value]
    chain: list[Transform] = []
    if load:
        chain.append(LoadXRayd(keys=keys, voi=voi))
    if with_label:
        chain.append(NormalizeLabeld(keys=Keys.LABEL.value, num_classes=num_classes))
    # the image: MONAI's anti-aliased bilinear resize, computed with banded sparse operators (same numbers, linear
    # memory); the label: nearest neighbour, never smoothed
    chain.append(AntiAliasResized(keys=Keys.IMAGE.value, spatial_size=size))
    if with_label:
        chain.append(Resized(keys=Keys.LABEL.value, spatial_size=size, mode="nearest", anti_aliasing=False))
    chain.append(_intensity(Keys.IMAGE.value, intensity))
    chain.append(EnsureTyped(keys=keys, dtype=torch.float32, track_meta=True))
    return chain


def augmentation(
    image_size: int = 256,
    flip_prob: float = 0.5,
    affine_prob: float = 0.5,
    rotate_degrees: float = 10.0,
    scale: float = 0.1,
    translate: float = 0.05,
    elastic_prob: float = 0.3,
    elastic_magnitude: Sequence[float] = (1.0, 2.0),
    intensity_prob: float = 0.3,
    gamma: Sequence[float] = (0.7, 1.5),
    noise_std: float = 0.02,
    with_label: bool = True,
) -> list[Transform]:
    """Random chain for training: flips, affine, elastic and intensity augmentation.

    Geometric steps move image and label together (bilinear for the image, nearest for the label). Intensity steps
    touch the image only. Padding repeats the border, which for radiographs is air or collimator, not grey.

    Args:
        image_size: side of the images (sets the elastic control-point spacing, 1/8 of the side).
        flip_prob: probability of a left-right flip. Defaults to 0.5 (the lung paper's only augmentation).
        affine_prob: probability of a random affine. Defaults to 0.5.
        rotate_degrees: maximum rotation in degrees. Defaults to 10.
        scale: maximum relative zoom (±). Defaults to 0.1.
        translate: maximum shift as a fraction of the side (±). Defaults to 0.05.
        elastic_prob: probability of an elastic deformation (``Rand2DElasticd``, "crucial" in the XNet paper).
        elastic_magnitude: range of the elastic displacement magnitude. Defaults to (1, 2).
        intensity_prob: probability of each intensity step (contrast/gamma, scale, shift, smoothing). 0 disables.
        gamma: gamma range for the contrast step. Defaults to (0.7, 1.5).
        noise_std: maximum standard deviation of Gaussian noise (on the [-1, 1] scale). Defaults to 0.02.
        with_label: the dictionaries hold a ``label`` too.

    Returns:
        A list of random dictionary transforms.
    """
    img, lbl = Keys.IMAGE.value, Keys.LABEL.value
    keys = [img, lbl] if with_label else [img]
    modes = ("bilinear", "nearest")[: len(keys)]
    chain: list[Transform] = []
    if flip_prob > 0:
        chain.append(RandFlipd(keys=keys, prob=flip_prob, spatial_axis=1))
    if affine_prob > 0:
        chain.append(
            RandAffined(
                keys=keys,
                prob=affine_prob,
                rotate_range=(math.radians(rotate_degrees),),
                scale_range=(scale, scale),
                translate_range=(translate * image_size, translate * image_size),
                mode=modes,
                padding_mode="border",
            )
        )
    if elastic_prob > 0:
        spacing = max(4, image_size // 8)
        chain.append(
            Rand2DElasticd(
                keys=keys,
                prob=elastic_prob,
                spacing=(spacing, spacing),
                magnitude_range=tuple(elastic_magnitude),
                mode=modes,
                padding_mode="border",
            )
        )
    if intensity_prob > 0:
        chain += [
            RandAdjustContrastd(keys=img, prob=intensity_prob, gamma=tuple(gamma)),
            RandScaleIntensityd(keys=img, prob=intensity_prob, factors=0.15),
            RandShiftIntensityd(keys=img, prob=intensity_prob, offsets=0.1),
            RandGaussianSmoothd(keys=img, prob=intensity_prob * 0.5, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0)),
        ]
    if noise_std > 0 and intensity_prob > 0:
        chain.append(RandGaussianNoised(keys=img, prob=intensity_prob, std=noise_std))
    return chain


def restore_original_size(prob: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Bring a ``(C, h, w)`` probability map back to the original ``(rows, cols)`` of its image.

    The single place where predictions return to the input geometry (masks are thresholded after, so edges are
    smooth rather than blocky). Bilinear resampling of probabilities, never of hard masks.
    """
    size = tuple(int(s) for s in spatial_shape)
    if tuple(prob.shape[1:]) == size:
        return prob
    resized = Resize(spatial_size=size, mode="bilinear", anti_aliasing=False)(prob)
    return torch.as_tensor(resized).clamp_(0.0, 1.0)
