"""The training and evaluation loaders of the bundles, for both data paths, chosen by one ``data_path`` argument.

``cpu``: ``CacheDataset`` + ``DataLoader`` workers, per-image augmentation (MONAI's classic path).
``gpu``: :class:`~pipeline.data.device_cache.DeviceCacheLoader`, the dataset decoded once into one tensor on the
device and augmented per batch there (also runs on a CPU-only machine). ``auto`` takes ``gpu`` on CUDA.

Under ``torchrun`` (a process group is initialised) each rank reads its own shard: ``DistributedSampler`` on the
cpu path, the loader's own sharding on the device path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from monai.data import CacheDataset, DataLoader, Dataset, DistributedSampler, DistributedWeightedRandomSampler
from monai.transforms import Compose

from pipeline.bundle.choices import on_device_data
from pipeline.data.device_cache import DeviceCacheLoader
from pipeline.data.sampling import group_balanced_sampler, group_weights
from pipeline.transforms.gpu_augment import device_augmentation
from pipeline.transforms.presets import augmentation, preprocessing

__all__ = ["evaluation_loader", "training_loader"]

logger = logging.getLogger(__name__)


def _distributed(distributed: bool | None) -> bool:
    if distributed is None:
        return dist.is_available() and dist.is_initialized()
    return bool(distributed)


def _items(data: Sequence[Mapping[str, Any]] | Dataset) -> list[Mapping[str, Any]]:
    """The item list of a MONAI ``Dataset`` (the configs' ``train#dataset``) or of a plain sequence."""
    return list(data.data if isinstance(data, Dataset) else data)


def training_loader(
    data: Sequence[Mapping[str, Any]],
    image_size: int,
    intensity: str = "minmax",
    num_classes: int = 1,
    augment: Mapping[str, Any] | None = None,
    data_path: str = "auto",
    device: str | torch.device | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    cache_rate: float = 1.0,
    seed: int = 0,
    per_group: int = 0,
    distributed: bool | None = None,
    prefetch: bool = False,
) -> DataLoader | DeviceCacheLoader:
    """The training loader: the shared preprocessing chain plus augmentation, on the chosen data path.

    Args:
        data: the training items (``image``, ``label`` paths; ``group`` for balanced sampling), or a MONAI
            ``Dataset`` of them (its items are used; the transforms are built here).
        image_size: side the network sees.
        intensity: intensity scaling (``minmax`` | ``percentile``).
        num_classes: network output channels (the label layout follows it).
        augment: arguments of :func:`pipeline.transforms.augmentation` (the device path takes the same ones).
        data_path: ``auto`` | ``cpu`` | ``gpu`` (see the module).
        device: the training device.
        batch_size: images per step; the last, incomplete batch is dropped when there is more than one batch.
        num_workers: loader workers (cpu path) or decoding threads (device path).
        cache_rate: fraction of decoded, resized images kept in memory (cpu path).
        seed: seed of the device path's shuffling and of the balanced sampler.
        per_group: class-balanced oversampling: draws per ``group`` (e.g. body part) and epoch; 0 = plain shuffling.
            Runs on the cpu path (``auto`` picks it; an explicit ``gpu`` is refused).
        distributed: shard by rank; ``None`` = when a process group is initialised (``torchrun``).
        prefetch: device path: make the next batches ahead on a side CUDA stream.

    Raises:
        ValueError: ``data`` is empty, or ``per_group`` with ``data_path: gpu``.
    """
    data = _items(data)
    if len(data) == 0:
        raise ValueError("the training split is empty: check the dataset folder and split_fractions.")
    augment = dict(augment or {})
    drop_last = len(data) > batch_size
    on_device = on_device_data(data_path, device)
    if on_device and per_group:
        if str(data_path).lower() == "gpu":
            raise ValueError("per_group oversampling runs on the cpu data path: set --data_path cpu (or auto), "
                             "or --per_body_part 0 to train on the device path without it.")
        logger.info("data path: cpu (class-balanced oversampling needs the sampler of the cpu path)")
        on_device = False
    if on_device:
        return DeviceCacheLoader(
            data=data, transform=Compose(preprocessing(image_size, intensity, num_classes)), device=device,
            batch_size=batch_size, augmentation=device_augmentation(image_size, **augment), shuffle=True,
            drop_last=drop_last, num_workers=num_workers, seed=seed, prefetch=prefetch,
        )
    transform = Compose(preprocessing(image_size, intensity, num_classes) + augmentation(image_size, **augment))
    dataset = CacheDataset(data=data, transform=transform, cache_rate=cache_rate, num_workers=num_workers,
                           progress=False)
    sampler: Any = None
    if per_group:
        if _distributed(distributed):
            groups = len({str(item.get("group", "")) for item in data})
            sampler = DistributedWeightedRandomSampler(dataset, weights=group_weights(data),
                                                       num_samples_per_rank=per_group * groups // dist.get_world_size())
        else:
            sampler = group_balanced_sampler(data, per_group=per_group, seed=seed)
    elif _distributed(distributed):
        sampler = DistributedSampler(dataset, even_divisible=True, shuffle=True)
    return DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, drop_last=drop_last,
                      num_workers=num_workers)


def evaluation_loader(
    data: Sequence[Mapping[str, Any]],
    transform: Callable[[Any], Any] | Sequence[Callable[[Any], Any]],
    data_path: str = "auto",
    device: str | torch.device | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    cache_rate: float = 1.0,
    cache: bool = True,
    distributed: bool | None = None,
) -> DataLoader | DeviceCacheLoader:
    """A validation / evaluation loader (no shuffling; image metadata kept for per-image reports).

    Args:
        data: the items (``image``, ``label``), or a MONAI ``Dataset`` of them.
        transform: the preprocessing chain (a ``Compose`` or a list of transforms).
        data_path: ``auto`` | ``cpu`` | ``gpu``.
        device: the device of the evaluation.
        batch_size: images per step.
        num_workers: loader workers (cpu path) or decoding threads (device path).
        cache_rate: fraction of images kept in memory (cpu path with ``cache``).
        cache: keep decoded images (validation every epoch); False reads them once (a single evaluation pass).
        distributed: shard by rank; ``None`` = when a process group is initialised.
    """
    data = _items(data)
    if len(data) == 0:
        raise ValueError("the evaluation split is empty: check the dataset folder and split_fractions.")
    transform = transform if callable(transform) else Compose(list(transform))
    if on_device_data(data_path, device):
        return DeviceCacheLoader(data=data, transform=transform, device=device, batch_size=batch_size, shuffle=False,
                                 num_workers=num_workers, keep_meta=True)
    if cache:
        dataset: Dataset = CacheDataset(data=data, transform=transform, cache_rate=cache_rate,
                                        num_workers=num_workers, progress=False)
    else:
        dataset = Dataset(data=data, transform=transform)
    sampler = DistributedSampler(dataset, even_divisible=False, shuffle=False) if _distributed(distributed) else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler, num_workers=num_workers)
