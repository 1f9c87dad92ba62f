"""Values that depend on the machine or the task, chosen in code instead of ``$ ... if ... else ...`` in YAML."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from monai.losses import DiceCELoss

from pipeline.bundle.starting_weights import fine_tunes
from pipeline.engines.device_path import resolve_data_path

__all__ = ["dataset_folder", "folder_name", "on_device_data", "per_device", "per_start", "place_network",
           "prediction_postprocessing", "segmentation_loss"]


def per_device(device: str | torch.device, cpu: Any, cuda: Any) -> Any:
    """The value for the device type: the CPU profile sizes a run for a laptop, CUDA for the full model.

    In a config (both arguments stay overridable, e.g. ``--image_size#cpu 96``, or ``--image_size 256`` for all)::

        image_size: {_target_: pipeline.bundle.per_device, device: '@device', cpu: 128, cuda: 256}

    Args:
        device: the run's device (``torch.device`` or a string such as ``"cuda:1"``).
        cpu: value without a GPU.
        cuda: value on a CUDA device.
    """
    return cuda if torch.device(device).type == "cuda" else cpu


def per_start(pretrained: Any, scratch: Any, fine_tune: Any) -> Any:
    """The value for how a run starts: from scratch, or fine-tuning from ``--pretrained`` weights.

    The learning rate is the case in point: the one-cycle schedule peaks at 10x the base rate, which retrains a
    network from scratch well and wipes out a champion's weights in one epoch (the `make train` model fell from
    validation Dice 0.936 to 0.42 after one fine-tuning epoch at 1e-4; at 2e-5 it stays at 0.935 over five)::

        learning_rate: {_target_: pipeline.bundle.per_start, pretrained: '@pretrained', scratch: 0.0001, fine_tune: 0.00002}

    Args:
        pretrained: the run's ``pretrained`` setting (``None`` or empty: from scratch).
        scratch: value when training from scratch.
        fine_tune: value when starting from given weights.
    """
    return fine_tune if fine_tunes(pretrained) else scratch


def on_device_data(data_path: str = "auto", device: str | torch.device | None = None) -> bool:
    """True when the run uses the device data path (dataset cached on the device, batched augmentation there).

    Args:
        data_path: ``auto`` (device path on CUDA), ``cpu`` or ``gpu`` (see :func:`pipeline.engines.resolve_data_path`).
        device: the training device.
    """
    return _resolved_data_path(str(data_path), None if device is None else torch.device(device)) == "gpu"


@functools.lru_cache(maxsize=None)
def _resolved_data_path(data_path: str, device: torch.device | None) -> str:
    return resolve_data_path(data_path, device)  # once per process and setting: the choice is logged once


def segmentation_loss(num_classes: int, **kwargs: Any) -> DiceCELoss:
    """Dice + cross-entropy for the output layout: sigmoid for one channel, softmax over one-hot labels otherwise.

    Args:
        num_classes: network output channels.
        kwargs: further ``DiceCELoss`` arguments (e.g. ``lambda_dice``).
    """
    binary = int(num_classes) == 1
    return DiceCELoss(sigmoid=binary, softmax=not binary, to_onehot_y=not binary, **kwargs)


def place_network(network: torch.nn.Module, device: str | torch.device, channels_last: bool = False) -> torch.nn.Module:
    """``network`` on ``device``, in NHWC memory layout with ``channels_last`` (worth it with compile on CUDA)."""
    fmt = torch.channels_last if channels_last else torch.preserve_format
    return network.to(torch.device(device), memory_format=fmt)


def folder_name(path: str) -> str:
    """The last component of a folder path (the dataset's name in run names and reports)."""
    import os

    return os.path.basename(os.path.normpath(str(path)))


def prediction_postprocessing(num_classes: int, threshold: float = 0.5, **kwargs: Any) -> Any:
    """Logits to probabilities and labels: the threshold for one sigmoid channel, the argmax over several classes.

    Args:
        num_classes: network output channels.
        threshold: probability threshold of the binary case (ignored for multi-class models).
        kwargs: further :func:`pipeline.postprocessing.postprocessing_transforms` arguments.
    """
    from pipeline.postprocessing import postprocessing_transforms

    binary = int(num_classes) == 1
    return postprocessing_transforms(int(num_classes), thresholds=float(threshold) if binary else None, **kwargs)


def dataset_folder(dataset_dir: str = "auto", synthetic: Mapping[str, Any] | None = None) -> str:
    """The dataset folder (``images/`` + ``masks/``) a ``dataset_dir`` setting names.

    Args:
        dataset_dir: ``synthetic`` (generated once, see ``synthetic``), or anything
            :func:`pipeline.data.resolve_dataset_dir` accepts (``auto``, ``sample``, ``crd``, a folder).
        synthetic: arguments of :func:`pipeline.data.synthetic_dataset_dir` (``root``, ``n``, ``seed``, ``size``);
            ``None`` when the bundle has no synthetic data.

    Raises:
        ValueError: ``synthetic`` asked of a bundle without synthetic data.
    """
    from pipeline.data import resolve_dataset_dir, synthetic_dataset_dir

    if str(dataset_dir) == "synthetic":
        if synthetic is None:
            raise ValueError("this bundle has no synthetic data: pass --dataset_dir with a folder of images/ + masks/.")
        return synthetic_dataset_dir(**dict(synthetic))
    return resolve_dataset_dir(dataset_dir)
