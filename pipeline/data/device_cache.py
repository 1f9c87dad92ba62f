"""A data loader without workers: the whole preprocessed dataset cached once as tensors, batches drawn on the device.

The stock path decodes once into a ``CacheDataset`` and then, every epoch, copies each image through ``DataLoader``
workers, augments it on the CPU and collates it before the host-to-device copy. For the small 2D radiograph sets
this project trains on (hundreds of 256² images: tens of MB), all of that can be done once: the decoded, resized and
intensity-scaled images are stacked into one ``(N, 1, H, W)`` tensor that lives on the GPU when it fits (pinned host
memory otherwise; a plain tensor on CPU). An epoch is then a random permutation, one ``index_select`` per batch and
a batched device augmentation (:func:`pipeline.transforms.device_augmentation`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from monai.data import CacheDataset, MetaTensor
from torch.utils.data import default_collate

from pipeline.keys import Keys

__all__ = ["PLACEMENTS", "DeviceCacheLoader"]

logger = logging.getLogger(__name__)

#: ``auto``: the device when the cache fits in ``max_device_fraction`` of its free memory, else pinned host memory.
PLACEMENTS = ("auto", "device", "pinned", "cpu")


def _plain(x: Any) -> torch.Tensor:
    """A plain ``torch.Tensor`` (no ``MetaTensor`` overhead on every batch operation)."""
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


class DeviceCacheLoader:
    """Iterable of augmented ``{"image", "label"}`` batches drawn from a dataset cached on the device.

    Preprocessing (decode, resize, intensity scaling: the deterministic chain) runs once, in ``num_workers`` threads,
    when the loader is built. Every iteration over the loader is one epoch: a fresh permutation (seeded by ``seed``
    and the epoch, so distributed ranks agree), batches gathered by index on the device and ``transform`` applied to
    each batch dictionary. Under ``torch.distributed`` each rank takes its own shard, as ``DistributedSampler`` does.

    Images are kept as float32, labels as uint8 (binary masks or class indices) and returned as float32.

    Args:
        data: datalist, e.g. ``[{"image": "a.png", "label": "a_mask.png"}, ...]``.
        transform: deterministic per-item preprocessing (e.g. ``Compose(preprocessing(...))``) producing
            channel-first tensors of one common shape.
        device: device the batches are returned on. Defaults to CUDA when available, else CPU.
        batch_size: images per batch. Defaults to 16.
        augmentation: callable applied to every batch dictionary on the device (e.g.
            :func:`pipeline.transforms.device_augmentation`); ``None`` for none (validation).
        shuffle: draw a new permutation every epoch. Defaults to True.
        drop_last: drop the last incomplete batch. Defaults to False.
        placement: one of :data:`PLACEMENTS`. Defaults to ``"auto"``.
        max_device_fraction: share of the device's free memory the cache may take under ``"auto"``. Defaults to 0.5.
        num_workers: threads that decode the dataset once. Defaults to 0 (the calling thread).
        keep_meta: return images as batched ``MetaTensor`` carrying each item's metadata (file names, for
            per-image reports); plain tensors otherwise. Defaults to False.
        seed: seed of the epoch permutations. Defaults to 0.
        even_divisible: under ``torch.distributed``, pad the permutation so every rank gets the same number of items
            (needed in training; validation keeps every item exactly once). Defaults to ``shuffle``.
        num_replicas: number of ranks; defaults to the ``torch.distributed`` world size (1 when not initialised).
        rank: this rank; defaults to the ``torch.distributed`` rank.
        prefetch: make the next batches in a background thread (on a side CUDA stream on a GPU), overlapping the
            gathering and augmentation launches with the training step. Defaults to False.

    Examples::

        >>> from monai.transforms import Compose
        >>> from pipeline.transforms import device_augmentation, preprocessing
        >>> loader = DeviceCacheLoader(datalist["training"], Compose(preprocessing(256)), batch_size=16,
        ...                            augmentation=device_augmentation(256))
        >>> batch = next(iter(loader))  # {"image": (16, 1, 256, 256), "label": (16, 1, 256, 256)} on the device
    """

    def __init__(
        self,
        data: Sequence[Mapping[Hashable, Any]],
        transform: Callable[[Any], Any],
        device: str | torch.device | None = None,
        batch_size: int = 16,
        augmentation: Callable[[dict[Hashable, Any]], dict[Hashable, Any]] | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        placement: str = "auto",
        max_device_fraction: float = 0.5,
        num_workers: int = 0,
        keep_meta: bool = False,
        seed: int = 0,
        even_divisible: bool | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        prefetch: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}.")
        if len(data) == 0:
            raise ValueError("data is empty: the datalist has no items for this split.")
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu"
        )
        self.batch_size = int(batch_size)
        self.augmentation = augmentation
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.keep_meta = bool(keep_meta)
        self.seed = int(seed)
        self.even_divisible = self.shuffle if even_divisible is None else bool(even_divisible)
        self._num_replicas, self._rank = num_replicas, rank
        self.prefetch = bool(prefetch)
        self.epoch = 0
        self.images, self.labels, self._meta = self._decode(data, transform, num_workers)
        self.placement = self._place(placement, max_device_fraction)

    # ---- building the cache --------------------------------------------------------------------------------------
    def _decode(
        self, data: Sequence[Mapping[Hashable, Any]], transform: Callable[[Any], Any], num_workers: int
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[dict[str, Any]]]:
        items = CacheDataset(list(data), transform=transform, cache_rate=1.0, num_workers=max(1, num_workers),
                             progress=False)
        images, labels, meta = [], [], []
        for i in range(len(items)):
            item = items[i]
            image = item[Keys.IMAGE.value]
            if self.keep_meta and isinstance(image, MetaTensor):
                meta.append(dict(image.meta))
            images.append(_plain(image).to(torch.float32))
            if Keys.LABEL.value in item:
                labels.append(_plain(item[Keys.LABEL.value]).round().to(torch.uint8))
        shapes = {tuple(t.shape) for t in images}
        if len(shapes) != 1:
            raise ValueError(f"all preprocessed images must share one shape to be cached as a batch; got {shapes}.")
        return torch.stack(images), (torch.stack(labels) if labels else None), meta

    def _place(self, placement: str, max_device_fraction: float) -> str:
        nbytes = self.images.nbytes + (self.labels.nbytes if self.labels is not None else 0)
        if self.device.type != "cuda":
            return "cpu"
        if placement == "auto":
            free, _ = torch.cuda.mem_get_info(self.device)
            placement = "device" if nbytes <= max_device_fraction * free else "pinned"
        if placement == "device":
            self.images = self.images.to(self.device)
            self.labels = self.labels.to(self.device) if self.labels is not None else None
        elif placement == "pinned":
            self.images = self.images.pin_memory()
            self.labels = self.labels.pin_memory() if self.labels is not None else None
        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
            logger.info("device cache: %d images %s, %.1f MB in %s memory", len(self.images),
                        tuple(self.images.shape[1:]), nbytes / 2**20, placement)
        return placement

    # ---- iteration ---------------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        initialised = dist.is_available() and dist.is_initialized()
        replicas = self._num_replicas if self._num_replicas is not None else (
            dist.get_world_size() if initialised else 1)
        rank = self._rank if self._rank is not None else (dist.get_rank() if initialised else 0)
        return int(replicas), int(rank)

    def _indices(self) -> torch.Tensor:
        """This rank's item order for the current epoch."""
        n = len(self.images)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        replicas, rank = self._world()
        if replicas > 1:
            if self.even_divisible:
                total = math.ceil(n / replicas) * replicas
                order = torch.cat([order, order[: total - n]]) if total > n else order
            order = order[rank::replicas]
        return order

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next permutation (iteration also advances it by one)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = len(self.images)
        replicas, rank = self._world()
        if replicas > 1:
            n = math.ceil(n / replicas) if self.even_divisible else len(range(rank, n, replicas))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[dict[Hashable, Any]]:
        """One epoch of batch dictionaries on :attr:`device`."""
        order = self._indices()
        self.epoch += 1
        # one host-to-device copy per epoch: a copy from pageable memory waits for the GPU queue to drain
        on_source = order.to(self.images.device)
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        slices = [(order[i : i + self.batch_size], on_source[i : i + self.batch_size])
                  for i in range(0, stop, self.batch_size)]
        if not self.prefetch:
            for index, idx in slices:
                yield self._batch(index, idx)
            return
        yield from self._prefetched(slices)

    def _prefetched(self, slices: list[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[dict[Hashable, Any]]:
        """Batches made ahead by a background thread, on a side CUDA stream when the device is a GPU.

        The thread queues the gathering and augmentation kernels of the next batches while the training thread waits
        for the GPU (e.g. when a handler reads the loss), so they overlap with the forward and backward passes. The
        training stream waits on an event before using a batch, and the batch's memory is recorded on it.
        """
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        ready: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def work() -> None:
            try:
                with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                    for index, idx in slices:
                        if stop.is_set():
                            return
                        batch = self._batch(index, idx)
                        event = torch.cuda.Event() if cuda else None
                        if event is not None:
                            event.record(stream)
                        ready.put((batch, event))
            except BaseException as err:  # handed to the training thread
                ready.put(err)
            ready.put(None)

        worker = threading.Thread(target=work, name="device-cache-prefetch", daemon=True)
        worker.start()
        try:
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                batch, event = item
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    for value in batch.values():
                        if isinstance(value, torch.Tensor) and value.is_cuda:
                            value.record_stream(current)
                yield batch
        finally:
            stop.set()
            while worker.is_alive():  # unblock a worker waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    ready.get_nowait()
                worker.join(timeout=0.01)

    def _batch(self, index: torch.Tensor, idx: torch.Tensor) -> dict[Hashable, Any]:
        """The batch of items ``index`` (host) / ``idx`` (the same, on the cache's device)."""
        non_blocking = self.placement == "pinned"
        image = self.images.index_select(0, idx)
        if non_blocking:
            image = image.pin_memory()
        batch: dict[Hashable, Any] = {Keys.IMAGE.value: image.to(self.device, non_blocking=non_blocking)}
        if self.labels is not None:
            label = self.labels.index_select(0, idx)
            if non_blocking:
                label = label.pin_memory()
            batch[Keys.LABEL.value] = label.to(self.device, non_blocking=non_blocking).float()
        if self.augmentation is not None:
            batch = dict(self.augmentation(batch))
        if self.keep_meta and self._meta:
            meta = default_collate([self._meta[i] for i in index.tolist()])
            image = MetaTensor(batch[Keys.IMAGE.value], meta=meta)
            image.is_batch = True
            batch[Keys.IMAGE.value] = image
        return batch
