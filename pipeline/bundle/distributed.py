"""Process-group set-up for the multi-GPU overlays (``torchrun``): NCCL on CUDA, gloo on CPU."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["distributed_network", "finish_distributed", "init_distributed", "is_rank0", "local_device"]


def local_device() -> torch.device:
    """This process's device: ``cuda:<LOCAL_RANK>`` when CUDA is present, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init_distributed(device: str | torch.device | None = None) -> None:
    """Join the ``torchrun`` process group (once) and make ``device`` this process's current CUDA device."""
    device = torch.device(device) if device is not None else local_device()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)


def is_rank0() -> bool:
    """True on rank 0 (and without a process group); ``RANK`` is read before the group exists."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def distributed_network(network: nn.Module, device: str | torch.device) -> nn.Module:
    """``network`` on ``device`` wrapped in ``DistributedDataParallel`` (device ids on CUDA only)."""
    device = torch.device(device)
    network = network.to(device)
    return nn.parallel.DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)


def finish_distributed() -> None:
    """Wait for every rank (rank 0 saves last), then leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
