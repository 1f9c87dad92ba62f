"""Batched random augmentation on the device: the training chain of :func:`~pipeline.transforms.augmentation`, run on
a whole ``(B, C, H, W)`` batch at once (on the GPU when the batch lives there).

The CPU chain (``RandFlipd`` → ``RandAffined`` → ``Rand2DElasticd`` → contrast, scale, shift, smoothing, noise)
runs per image in ``DataLoader`` workers; here the same family with the same ranges is drawn per image but applied
with a handful of batched kernels:

* geometry: left-right flip, affine (rotation, per-axis scale, translation) and the elastic field are composed into one
  sampling grid per image, then one ``grid_sample`` moves images (bilinear) and labels (nearest) together, with border
  padding. The elastic field is built exactly as MONAI's ``Rand2DElastic`` builds it: Gaussian offsets of a uniform
  random magnitude (pixels) on a control grid of spacing ``image_size // 8`` (at least 4), upsampled bicubically and
  centre-cropped (here as two small matrix products, the same numbers). Composing the three maps resamples once instead of three times (slightly sharper images, the same
  displacements).
* intensity (image only, per image with probability ``intensity_prob`` each): gamma contrast on the image's own range,
  scale ±15 %, shift ±0.1, Gaussian smoothing (probability halved, sigma 0.25-1 per axis, zero padding as
  ``GaussianSmooth``) and Gaussian noise of a standard deviation drawn in ``[0, noise_std)``.

Random draws come from ``torch`` on the batch's device (seeded by ``monai.utils.set_determinism`` or by ``seed``), so
nothing waits for the host.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform
from monai.utils import ensure_tuple_rep

from pipeline.keys import Keys

__all__ = [
    "BatchRandomState",
    "RandBatchIntensityd",
    "RandBatchSpatiald",
    "apply_to_chosen",
    "device_augmentation",
    "elastic_displacement",
    "random_affine",
]


class BatchRandomState:
    """Random numbers drawn on the batch's device: the global ``torch`` generator, or a private seeded one.

    Args:
        seed: seed of a private generator (created on the device of the first batch). ``None`` uses the global
            generator of that device, which ``monai.utils.set_determinism`` seeds.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None

    def set_random_state(self, seed: int | None = None) -> None:
        """Restart the private generator from ``seed`` (``None``: use the global generator)."""
        self.seed, self._generator = seed, None

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The generator to use on ``device`` (``None`` means the global one)."""
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(int(self.seed))
        return self._generator

    def uniform(self, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
        """``n`` draws from ``U[low, high)``."""
        return low + (high - low) * torch.rand(n, device=device, generator=self.generator(device))

    def bernoulli(self, n: int, prob: float, device: torch.device) -> torch.Tensor:
        """``n`` booleans, each true with probability ``prob``."""
        return torch.rand(n, device=device, generator=self.generator(device)) < prob

    def normal(self, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """Standard normal draws of ``shape``."""
        return torch.randn(tuple(shape), device=device, generator=self.generator(device))


def apply_to_chosen(
    chosen: torch.Tensor, x: torch.Tensor, fn: Callable[[torch.Tensor, Any], torch.Tensor]
) -> torch.Tensor:
    """``fn`` applied to the chosen images of a batch, ``x`` kept for the others.

    On CUDA every image is computed and the result selected with ``torch.where`` (no host synchronisation); on the
    host only the chosen images are computed, which matters for the expensive steps drawn with low probability.

    Args:
        chosen: ``(B,)`` booleans.
        x: ``(B, ...)`` values kept where not chosen.
        fn: ``fn(images, rows)`` returning new values for ``images``; ``rows`` indexes per-image parameters
            (``slice(None)`` for all, else the chosen indices).
    """
    if x.device.type == "cuda":
        return torch.where(chosen.view((-1,) + (1,) * (x.ndim - 1)), fn(x, slice(None)), x)
    rows = chosen.nonzero().flatten()
    if rows.numel() == 0:
        return x
    out = x.clone()
    out[rows] = fn(x[rows], rows).to(x.dtype)
    return out


def random_affine(
    batch_size: int,
    spatial_shape: Sequence[int],
    state: BatchRandomState,
    device: torch.device,
    flip_prob: float = 0.5,
    affine_prob: float = 0.5,
    rotate_degrees: float = 10.0,
    scale: float = 0.1,
    translate_px: float = 0.0,
) -> torch.Tensor:
    """Per-image affine maps (output → input sampling coordinates) in ``grid_sample``'s normalised coordinates.

    Matches ``RandFlip(spatial_axis=1)`` followed by ``RandAffine(rotate_range, scale_range=(scale, scale),
    translate_range=(translate_px, translate_px))``: rotation uniform in ±``rotate_degrees``, an independent scale
    factor ``1 + U(-scale, scale)`` per axis, a translation of ``U(-translate_px, translate_px)`` pixels per axis;
    each image is flipped with ``flip_prob`` and transformed with ``affine_prob``.

    Args:
        batch_size: number of images.
        spatial_shape: ``(H, W)``.
        state: where the random numbers come from.
        device: device of the result.
        flip_prob: probability of a left-right flip.
        affine_prob: probability of the random affine.
        rotate_degrees: maximum rotation (degrees).
        scale: maximum relative zoom per axis.
        translate_px: maximum shift per axis, in pixels.

    Returns:
        ``(B, 2, 3)`` float32 matrices ``[A | t]`` acting on ``(x, y)`` = (column, row) normalised coordinates, as
        ``torch.nn.functional.affine_grid`` takes them.
    """
    n = batch_size
    height, width = (int(s) for s in spatial_shape)
    on = state.bernoulli(n, affine_prob, device).float()
    angle = state.uniform(n, -math.radians(rotate_degrees), math.radians(rotate_degrees), device) * on
    sx = 1.0 + state.uniform(n, -scale, scale, device) * on
    sy = 1.0 + state.uniform(n, -scale, scale, device) * on
    tx = state.uniform(n, -translate_px, translate_px, device) * on
    ty = state.uniform(n, -translate_px, translate_px, device) * on
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation @ scale in pixel units, then conjugated by the pixel -> normalised scaling (2/W, 2/H) per axis
    a00, a01 = cos * sx, -sin * sy * (height / width)
    a10, a11 = sin * sx * (width / height), cos * sy
    flip = torch.where(state.bernoulli(n, flip_prob, device), -1.0, 1.0)
    theta = torch.stack(
        [
            torch.stack([flip * a00, flip * a01, flip * tx * 2.0 / width], dim=1),
            torch.stack([a10, a11, ty * 2.0 / height], dim=1),
        ],
        dim=1,
    )
    return theta


def elastic_displacement(
    batch_size: int,
    spatial_shape: Sequence[int],
    state: BatchRandomState,
    device: torch.device,
    spacing: int = 32,
    magnitude_range: Sequence[float] = (1.0, 2.0),
    prob: float = 0.3,
) -> torch.Tensor:
    """Smooth random displacement fields, drawn as MONAI's ``Rand2DElastic`` draws them, for a whole batch.

    A control grid of ``spacing`` pixels (MONAI's ``create_control_grid`` size) gets standard-normal offsets times a
    magnitude drawn uniformly in ``magnitude_range`` (pixels); bicubic upsampling by ``spacing`` and a centre crop
    give the dense field. Images not selected (probability ``1 - prob``) get a zero field.

    Args:
        batch_size: number of images.
        spatial_shape: ``(H, W)``.
        state: where the random numbers come from.
        device: device of the result.
        spacing: control-point spacing in pixels.
        magnitude_range: range of the offset magnitude (pixels).
        prob: probability that an image is deformed.

    Returns:
        ``(B, H, W, 2)`` float32 displacement in ``grid_sample``'s normalised ``(x, y)`` coordinates.
    """
    height, width = (int(s) for s in spatial_shape)

    def control_points(d: int) -> int:  # monai.transforms.utils.create_control_grid
        return int(math.ceil((d - 1.0) / (2.0 * spacing) + 0.5) * 2 + 2 if d % 2 == 0 else
                   math.ceil((d - 1.0) / (2.0 * spacing)) * 2 + 3)

    gh, gw = control_points(height), control_points(width)
    magnitude = state.uniform(batch_size, float(magnitude_range[0]), float(magnitude_range[1]), device)
    magnitude = magnitude * state.bernoulli(batch_size, prob, device).float()
    offsets = state.normal((batch_size, 2, gh, gw), device) * magnitude[:, None, None, None]
    # bicubic upsampling by `spacing` then the centre crop, as two small matrix products (separable, exact)
    rows = _bicubic_matrix(gh, spacing, height, str(device))
    cols = _bicubic_matrix(gw, spacing, width, str(device))
    field = rows @ offsets @ cols.T  # (B, 2 = (row, col) pixels, H, W)
    # (x, y) normalised; python scalars, not a host tensor: a host-to-device copy would wait for the GPU queue
    return torch.stack([field[:, 1] * (2.0 / width), field[:, 0] * (2.0 / height)], dim=-1)


@functools.lru_cache(maxsize=16)
def _bicubic_matrix(points: int, spacing: int, size: int, device: str) -> torch.Tensor:
    """``(size, points)`` weights of ``F.interpolate(bicubic, scale spacing, align_corners=False)`` + centre crop."""
    basis = torch.eye(points, dtype=torch.float32).view(points, 1, points, 1)
    up = F.interpolate(basis, size=(points * spacing, 1), mode="bicubic", align_corners=False)[:, 0, :, 0]
    start = (points * spacing - size) // 2
    return up[:, start : start + size].T.contiguous().to(device)


@functools.lru_cache(maxsize=8)
def _identity_grid(spatial_shape: tuple[int, int], device: str) -> torch.Tensor:
    """``(H, W, 2)`` normalised pixel-centre coordinates (``affine_grid`` of the identity, align_corners=False)."""
    identity = torch.eye(2, 3, device=device)[None]
    return F.affine_grid(identity, [1, 1, *spatial_shape], align_corners=False)[0]


class RandBatchSpatiald(MapTransform):
    """Random flip, affine and elastic deformation of a batch, one ``grid_sample`` per key.

    Each image of the ``(B, C, H, W)`` batch gets its own draw; all keys of one image share it (image and label stay
    aligned). The sampling grid is ``flip ∘ affine ∘ (identity + elastic)``, the composition the CPU chain
    (``RandFlipd`` → ``RandAffined`` → ``Rand2DElasticd``) applies in three resamplings.

    Args:
        keys: keys to move, e.g. ``["image", "label"]``.
        image_size: side of the images; sets the translation (a fraction of it) and the elastic spacing (1/8 of it,
            at least 4), as :func:`~pipeline.transforms.augmentation` does.
        flip_prob: probability of a left-right flip. Defaults to 0.5.
        affine_prob: probability of the random affine. Defaults to 0.5.
        rotate_degrees: maximum rotation in degrees. Defaults to 10.
        scale: maximum relative zoom per axis (±). Defaults to 0.1.
        translate: maximum shift as a fraction of ``image_size`` (±). Defaults to 0.05.
        elastic_prob: probability of the elastic deformation. Defaults to 0.3.
        elastic_magnitude: range of the elastic offset magnitude (pixels). Defaults to (1, 2).
        mode: interpolation per key (``"bilinear"`` / ``"nearest"``). Defaults to bilinear for the first key and
            nearest for the others.
        padding_mode: ``grid_sample`` padding. Defaults to ``"border"`` (air or collimator, not grey).
        seed: seed of a private generator; ``None`` uses the global ``torch`` generator of the batch's device.
        allow_missing_keys: don't raise if a key is absent.

    Examples::

        >>> aug = RandBatchSpatiald(["image", "label"], image_size=256)
        >>> out = aug({"image": torch.rand(16, 1, 256, 256), "label": torch.ones(16, 1, 256, 256)})
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_size: int = 256,
        flip_prob: float = 0.5,
        affine_prob: float = 0.5,
        rotate_degrees: float = 10.0,
        scale: float = 0.1,
        translate: float = 0.05,
        elastic_prob: float = 0.3,
        elastic_magnitude: Sequence[float] = (1.0, 2.0),
        mode: str | Sequence[str] | None = None,
        padding_mode: str = "border",
        seed: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}.")
        if len(elastic_magnitude) != 2 or elastic_magnitude[0] > elastic_magnitude[1]:
            raise ValueError(f"elastic_magnitude must be (low, high) with low <= high, got {elastic_magnitude}.")
        self.image_size = int(image_size)
        self.flip_prob, self.affine_prob, self.elastic_prob = float(flip_prob), float(affine_prob), float(elastic_prob)
        self.rotate_degrees, self.scale = float(rotate_degrees), float(scale)
        self.translate_px = float(translate) * self.image_size
        self.elastic_spacing = max(4, self.image_size // 8)
        self.elastic_magnitude = (float(elastic_magnitude[0]), float(elastic_magnitude[1]))
        default_modes = ["bilinear"] + ["nearest"] * (len(self.keys) - 1)
        self.mode = ensure_tuple_rep(mode, len(self.keys)) if mode is not None else tuple(default_modes)
        self.padding_mode = padding_mode
        self.random = BatchRandomState(seed)

    def set_random_state(self, seed: int | None = None) -> RandBatchSpatiald:
        """Seed the private generator (``None``: the global one); returns ``self``."""
        self.random.set_random_state(seed)
        return self

    def sampling_grid(self, batch_size: int, spatial_shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """Draw one batch of transforms and return the ``(B, H, W, 2)`` grid for ``grid_sample``."""
        theta = random_affine(
            batch_size, spatial_shape, self.random, device, self.flip_prob, self.affine_prob,
            self.rotate_degrees, self.scale, self.translate_px,
        )
        base = _identity_grid(tuple(int(s) for s in spatial_shape), str(device))[None]
        if self.elastic_prob > 0:
            base = base + elastic_displacement(
                batch_size, spatial_shape, self.random, device, self.elastic_spacing, self.elastic_magnitude,
                self.elastic_prob,
            )
        return torch.einsum("bhwj,bij->bhwi", base, theta[:, :, :2]) + theta[:, None, None, :, 2]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Move every key of the batch dictionary with the same per-image grids."""
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        first = torch.as_tensor(d[keys[0]])
        if first.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) batches, got shape {tuple(first.shape)} for {keys[0]!r}.")
        grid = self.sampling_grid(first.shape[0], first.shape[2:], first.device)
        for key, mode in self.key_iterator(d, self.mode):
            x = torch.as_tensor(d[key])
            out = F.grid_sample(x.float(), grid.to(x.device), mode=mode, padding_mode=self.padding_mode,
                                align_corners=False)
            d[key] = out.to(x.dtype) if x.is_floating_point() else out.round().to(x.dtype)
        return d


class RandBatchIntensityd(MapTransform):
    """Random intensity augmentation of a batch (images only), each step drawn per image.

    The steps and ranges of the CPU chain: ``RandAdjustContrast`` (gamma on the image's own min-max range),
    ``RandScaleIntensity`` (×(1 ± 0.15)), ``RandShiftIntensity`` (± 0.1), ``RandGaussianSmooth`` (probability
    ``prob / 2``, sigma 0.25-1 per axis) and ``RandGaussianNoise`` (standard deviation drawn in ``[0, noise_std)``).

    Args:
        keys: image keys. Defaults to ``"image"``.
        prob: probability of each step. Defaults to 0.3; 0 disables all of them.
        gamma: gamma range. Defaults to (0.7, 1.5).
        scale_factor: maximum relative intensity scaling. Defaults to 0.15.
        shift_offset: maximum intensity shift. Defaults to 0.1.
        smooth_sigma: range of the smoothing sigma per axis. Defaults to (0.25, 1.0).
        noise_std: maximum noise standard deviation (0 disables noise). Defaults to 0.02.
        seed: seed of a private generator; ``None`` uses the global ``torch`` generator of the batch's device.
        allow_missing_keys: don't raise if a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection = Keys.IMAGE.value,
        prob: float = 0.3,
        gamma: Sequence[float] = (0.7, 1.5),
        scale_factor: float = 0.15,
        shift_offset: float = 0.1,
        smooth_sigma: Sequence[float] = (0.25, 1.0),
        noise_std: float = 0.02,
        seed: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(gamma) != 2 or not 0 < gamma[0] <= gamma[1]:
            raise ValueError(f"gamma must be (low, high) with 0 < low <= high, got {gamma}.")
        self.prob = float(prob)
        self.gamma = (float(gamma[0]), float(gamma[1]))
        self.scale_factor, self.shift_offset = float(scale_factor), float(shift_offset)
        self.smooth_sigma = (float(smooth_sigma[0]), float(smooth_sigma[1]))
        self.noise_std = float(noise_std)
        self.random = BatchRandomState(seed)

    def set_random_state(self, seed: int | None = None) -> RandBatchIntensityd:
        """Seed the private generator (``None``: the global one); returns ``self``."""
        self.random.set_random_state(seed)
        return self

    def _smooth(self, x: torch.Tensor, sigma_rows: torch.Tensor, sigma_cols: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur with a sigma per image and axis (erf kernels, zero padding, as MONAI)."""
        b, c, h, w = x.shape
        tail = int(max(self.smooth_sigma[1] * 4.0, 0.5) + 0.5)
        pos = torch.arange(-tail, tail + 1, device=x.device, dtype=torch.float32)

        def kernels(sigma: torch.Tensor) -> torch.Tensor:
            t = 0.70710678 / sigma[:, None]
            k = (0.5 * ((t * (pos + 0.5)).erf() - (t * (pos - 0.5)).erf())).clamp(min=0)
            return k.repeat_interleave(c, dim=0)  # (B * C, K)

        k_rows, k_cols = kernels(sigma_rows), kernels(sigma_cols)
        y = x.reshape(1, b * c, h, w).float()
        y = F.conv2d(y, k_rows[:, None, :, None], padding=(tail, 0), groups=b * c)
        y = F.conv2d(y, k_cols[:, None, None, :], padding=(0, tail), groups=b * c)
        return y.reshape(b, c, h, w).to(x.dtype)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Augment the intensities of every image key of the batch dictionary."""
        d = dict(data)
        if self.prob <= 0:
            return d
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            n, dev = x.shape[0], x.device
            view = (n,) + (1,) * (x.ndim - 1)
            dims = tuple(range(1, x.ndim))

            def chosen(p: float) -> torch.Tensor:
                return self.random.bernoulli(n, p, dev)

            gamma = self.random.uniform(n, *self.gamma, dev).view(view)

            def contrast(v: torch.Tensor, rows: Any) -> torch.Tensor:
                lo = v.amin(dim=dims, keepdim=True)
                span = v.amax(dim=dims, keepdim=True) - lo
                return ((v - lo) / (span + 1e-7)).clamp(min=0) ** gamma[rows] * span + lo

            x = apply_to_chosen(chosen(self.prob), x, contrast)
            factor = 1.0 + self.random.uniform(n, -self.scale_factor, self.scale_factor, dev).view(view)
            x = torch.where(chosen(self.prob).view(view), x * factor, x)
            offset = self.random.uniform(n, -self.shift_offset, self.shift_offset, dev).view(view)
            x = torch.where(chosen(self.prob).view(view), x + offset, x)
            sigma_rows = self.random.uniform(n, *self.smooth_sigma, dev)
            sigma_cols = self.random.uniform(n, *self.smooth_sigma, dev)
            x = apply_to_chosen(chosen(self.prob * 0.5), x,
                                lambda v, rows: self._smooth(v, sigma_rows[rows], sigma_cols[rows]))
            if self.noise_std > 0:
                std = self.random.uniform(n, 0.0, self.noise_std, dev).view(view) * chosen(self.prob).view(view)
                x = x + self.random.normal(x.shape, dev) * std
            d[key] = x
        return d


def device_augmentation(
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
    seed: int | None = None,
) -> Compose:
    """The batched device version of :func:`~pipeline.transforms.augmentation`, with the same arguments.

    Takes and returns batch dictionaries ``{"image": (B, 1, H, W), "label": (B, C, H, W)}`` on any device, so a bundle
    switches paths with the same ``augment`` settings: ``device_augmentation(@image_size, **@augment)``.

    Args:
        image_size: side of the images (translation unit and elastic control-point spacing, 1/8 of the side).
        flip_prob: probability of a left-right flip.
        affine_prob: probability of a random affine.
        rotate_degrees: maximum rotation in degrees.
        scale: maximum relative zoom (±).
        translate: maximum shift as a fraction of the side (±).
        elastic_prob: probability of an elastic deformation.
        elastic_magnitude: range of the elastic displacement magnitude (pixels).
        intensity_prob: probability of each intensity step. 0 disables.
        gamma: gamma range for the contrast step.
        noise_std: maximum standard deviation of Gaussian noise (on the [-1, 1] scale).
        with_label: the dictionaries hold a ``label`` too (moved with nearest-neighbour sampling).
        seed: seed of private generators; ``None`` uses the global ``torch`` generator of the batch's device.

    Returns:
        A ``Compose`` of :class:`RandBatchSpatiald` and :class:`RandBatchIntensityd`.
    """
    keys = [Keys.IMAGE.value, Keys.LABEL.value] if with_label else [Keys.IMAGE.value]
    chain: list[MapTransform] = []
    if flip_prob > 0 or affine_prob > 0 or elastic_prob > 0:
        chain.append(
            RandBatchSpatiald(
                keys, image_size, flip_prob, affine_prob, rotate_degrees, scale, translate, elastic_prob,
                elastic_magnitude, seed=seed,
            )
        )
    if intensity_prob > 0:
        chain.append(
            RandBatchIntensityd(
                Keys.IMAGE.value, intensity_prob, gamma, noise_std=noise_std, seed=None if seed is None else seed + 1
            )
        )
    return Compose(chain)
