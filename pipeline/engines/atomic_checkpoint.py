"""MONAI's ``CheckpointSaver`` with files replaced atomically, so a best model on disk is never missing or half-written.

MONAI's saver writes with ignite's ``DiskSaver(atomic=False)`` (ignite's atomic mode would give the file mode 0600),
and before writing a new best under the fixed ``key_metric_filename`` ignite removes the previous one. Between the
two, ``models/model.pt`` does not exist, then exists half-written: a crash there loses the best model, and a second
training or an evaluation reading the folder at that moment fails on a truncated file (seen as a
``not a readable model file`` error in ``tests/tracking/test_concurrency.py``). Here every file goes through
:func:`pipeline.io.atomic_path` (written beside, then renamed over; the user's umask decides the mode), and a fixed
file name is not removed first: the rename replaces it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from pipeline.io import atomic_path

__all__ = ["AtomicCheckpointSaver"]


class _AtomicDiskSaver(DiskSaver):
    """``DiskSaver`` that writes through :func:`pipeline.io.atomic_path`, with MONAI's optional fixed file name."""

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=False)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint=checkpoint, filename=self.filename or filename, metadata=metadata)

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        with atomic_path(path) as tmp:
            func(checkpoint, tmp, **self.kwargs)

    def remove(self, filename: str) -> None:
        if self.filename is None:  # a fixed name is replaced by the next save's rename, never deleted first
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` (same arguments) whose checkpoints are written atomically."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, getattr(checkpoint.save_handler, "filename",
                                                                                  None))
