"""Rank, world size and the few collectives the batch runner needs under ``torchrun`` (gloo, CPU objects only).

Outside ``torchrun`` (``WORLD_SIZE`` unset or 1) every method is a local no-op, so the runner has one code path.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

__all__ = ["BatchDist"]


class BatchDist:
    """The process group of a distributed batch (initialised here only when ``WORLD_SIZE > 1`` and none exists).

    Args:
        timeout_s: collective timeout; ranks wait for the slowest at the final barrier, so it is long by default.
    """

    def __init__(self, timeout_s: float = 24 * 3600.0) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.rank = int(os.environ.get("RANK", "0") or 0)
        self.owned = False
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
                self.owned = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (``[obj]`` outside torchrun)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Destroy the process group if this object created it."""
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()
