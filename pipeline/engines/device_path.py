"""Trainer options of the device data path: which path to take, the AMP precision, and a channels-last batch hook.

The bundle picks its data path with one key (``data_path: auto | cpu | gpu``). ``gpu`` means the dataset is cached
as one tensor on the training device and augmented there in batches (:class:`pipeline.data.DeviceCacheLoader` +
:func:`pipeline.transforms.device_augmentation`); it also runs on a CPU-only machine, where "the device" is the CPU.
The training loop itself stays MONAI's ``SupervisedTrainer``; this module only provides its ``prepare_batch``,
``amp_kwargs`` and a batched ``postprocessing``.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from monai.config import KeysCollection
from monai.engines.utils import PrepareBatch, default_prepare_batch
from monai.transforms import MapTransform

from pipeline.keys import Keys

__all__ = ["DATA_PATHS", "DetachOutputd", "DevicePrepareBatch", "amp_kwargs", "resolve_data_path"]

logger = logging.getLogger(__name__)

#: ``auto``: ``gpu`` when the training device is CUDA, else ``cpu``. ``cpu``: ``CacheDataset`` + ``DataLoader``
#: workers + per-image MONAI augmentation. ``gpu``: the device-cached dataset with batched device augmentation.
DATA_PATHS = ("auto", "cpu", "gpu")


def resolve_data_path(data_path: str = "auto", device: str | torch.device | None = None) -> str:
    """Resolve the bundle's ``data_path`` setting to ``"cpu"`` or ``"gpu"`` and log the choice.

    Args:
        data_path: one of :data:`DATA_PATHS`. Defaults to ``"auto"``.
        device: the training device; ``None`` means CUDA when available.

    Returns:
        ``"gpu"`` or ``"cpu"``.

    Raises:
        ValueError: unknown setting; the message lists the valid ones.
    """
    key = str(data_path).strip().lower()
    if key not in DATA_PATHS:
        raise ValueError(f"data_path must be one of {', '.join(DATA_PATHS)}, got {data_path!r}.")
    on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if key == "auto":
        key = "gpu" if on_cuda else "cpu"
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return key  # only rank 0 logs
    if key == "gpu":
        logger.info("data path: gpu (dataset cached once on %s, augmentation batched on the device)",
                    "the GPU" if on_cuda else "the CPU")
    else:
        logger.info("data path: cpu (CacheDataset + DataLoader workers, per-image augmentation)")
    return key


def amp_kwargs(device: str | torch.device | None = None) -> dict[str, Any]:
    """``torch.autocast`` arguments for MONAI engines: bf16 where the GPU supports it, else fp16.

    Args:
        device: the training device; ``None`` means CUDA when available.
    """
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return {"dtype": torch.bfloat16}
    return {"dtype": torch.float16}


class DevicePrepareBatch(PrepareBatch):
    """``prepare_batch`` for MONAI engines: ``(image, label)`` on the device, optionally in channels-last layout.

    Batches that already live on the device (the device data path) are passed through without a copy; CPU batches
    are copied as by MONAI's ``default_prepare_batch``. With ``channels_last`` the image is made NHWC-contiguous, the
    layout cuDNN and ``torch.compile`` prefer when the network is also ``channels_last``.

    Args:
        channels_last: convert images to ``torch.channels_last``. Defaults to False.
    """

    def __init__(self, channels_last: bool = False) -> None:
        self.channels_last = bool(channels_last)

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor] | torch.Tensor | Sequence[torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Return ``(image, label)`` on ``device`` (``label`` is ``None`` when absent)."""
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)  # type: ignore[arg-type,misc]
        if self.channels_last and image.ndim == 4:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, label


class DetachOutputd(MapTransform):
    """Training ``postprocessing`` of the device path: detach the batch's prediction and loss from the graph.

    With ``decollate=False`` the trainer keeps its output as one batch dictionary instead of splitting it into
    per-image dictionaries every iteration (MONAI's decollation also detaches). Nothing in training reads the
    predictions, so detaching them (and the loss the handlers log) is the only post-processing needed.

    Args:
        keys: keys to detach. Defaults to ``("pred", "loss")``.
    """

    def __init__(self, keys: KeysCollection = (Keys.PRED.value, Keys.LOSS.value)) -> None:
        super().__init__(keys, allow_missing_keys=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Return the dictionary with the keys' tensors detached."""
        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], torch.Tensor):
                d[key] = d[key].detach()
        return d
