"""The batch's DataLoader side: header scans and decoding in worker processes that die with their parent.

Two datasets feed :class:`~pipeline.inference.BatchRunner`: :class:`ScanDataset` (one header scan and selection per
file) and :class:`DecodeDataset` (one decode + preprocessing per selected file, returning a record with the
network-size tensor, a small display image for the overlay and the header for the SEG; the full-size pixels stay in
the worker). Failures become records with a reason code, never exceptions.

Workers are started with :func:`die_with_parent` as ``worker_init_fn``: on Linux they ask the kernel for SIGKILL when
their parent dies (``prctl(PR_SET_PDEATHSIG)``), and they exit at once if the parent is already gone. Without it a
``kill -9`` of ``xray-seg predict`` left workers running for minutes, holding hundreds of MB, reparented to PID 1.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.dicom.errors import classify_read_error, one_line, redact, strip_path
from pipeline.dicom.selection import FileSelection, SelectionRules, select_file
from pipeline.inference.overlay import display_image
from pipeline.io import XRayImage, read_image
from pipeline.io.limits import PixelLimitError, check_pixel_count

__all__ = ["DecodeDataset", "ScanDataset", "die_with_parent", "make_loader"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int, worker_id: int = 0) -> None:
    """``worker_init_fn``: make this worker die with the process that started it.

    Args:
        parent_pid: the parent's PID, taken *before* the workers were started (bind it with ``functools.partial``).
        worker_id: given by the DataLoader; unused.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the getppid check below still covers a dead parent
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _as_list(batch: list[Any]) -> list[Any]:
    """Collate that keeps the records as a list (they hold images of different sizes and error records)."""
    return batch


def make_loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    """A DataLoader over ``dataset`` in order, with ``workers`` processes that die with this one."""
    workers = min(int(workers), len(dataset))  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_list,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=functools.partial(die_with_parent, os.getpid()) if workers > 0 else None,
    )


class ScanDataset(Dataset):
    """Header scan and selection of one file per item (cheap; parallel in workers)."""

    def __init__(self, paths: Sequence[str], rules: SelectionRules) -> None:
        self.paths = list(paths)
        self.rules = rules

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> FileSelection:
        return select_file(self.paths[index], self.rules)


def _check_plain_image(path: str, pixel_limit: int | None) -> None:
    """The pixel limit for PNG/JPEG/TIFF, from the image header (Pillow reads the size without decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            cols, rows = img.size
            frames = int(getattr(img, "n_frames", 1) or 1)
    except Image.DecompressionBombError as err:  # above Pillow's own limit: surely above ours
        raise PixelLimitError(f"image claims more pixels than Pillow accepts ({one_line(err)})") from None
    except Exception:  # noqa: BLE001 - not an image Pillow opens: the reader reports it properly
        return
    check_pixel_count(rows, cols, frames, pixel_limit)


class DecodeDataset(Dataset):
    """Decode + preprocess one selected file per item; returns a record dict (the image's data, or the error).

    The full-resolution pixels stay in the worker: the record carries what the main process needs, i.e. the
    preprocessed ``(1, S, S)`` tensor, a display-size copy for the overlay, the DICOM header for the SEG and the
    geometry. Shipping a 2048² float32 image between processes would cost 16 MB per file.

    Args:
        items: the selected files.
        preprocess: image -> ``(1, S, S)`` tensor (the Predictor's).
        voi: apply the DICOM VOI LUT.
        overlay_max_side: longest side of the display image, or ``None`` for no overlay.
        need_header: keep the DICOM header (for the SEG).
        pixel_limit: the pixel limit (:func:`pipeline.io.limits.check_pixel_count`), checked before decoding.
    """

    def __init__(
        self,
        items: Sequence[FileSelection],
        preprocess: Callable[[XRayImage], torch.Tensor],
        voi: bool,
        overlay_max_side: int | None,
        need_header: bool,
        pixel_limit: int | None = None,
    ) -> None:
        self.items = list(items)
        self.preprocess = preprocess
        self.voi = voi
        self.overlay_max_side = overlay_max_side
        self.need_header = need_header
        self.pixel_limit = pixel_limit

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from pipeline.dicom.reader import dicom_to_image, read_dicom_dataset

        item = self.items[index]
        record: dict[str, Any] = {"item": item, "ok": False, "seconds": {}}
        t0 = time.perf_counter()
        ds = None
        try:
            if item.format == "dicom":
                ds = read_dicom_dataset(item.path)
                image = dicom_to_image(ds, item.path, voi=self.voi, pixel_limit=self.pixel_limit)
                if "PixelData" in ds:
                    del ds.PixelData  # the SEG needs the header only; do not ship the pixels to the main process
            else:
                _check_plain_image(item.path, self.pixel_limit)
                image = read_image(item.path, voi=self.voi)
            t1 = time.perf_counter()
            tensor = torch.as_tensor(self.preprocess(image)).float()
            display = display_image(image.pixels, self.overlay_max_side) if self.overlay_max_side else None
        except Exception as err:  # noqa: BLE001 - every failure becomes an error row; the batch goes on
            code, reason = classify_read_error(err, item.path)
            record["code"], record["reason"] = code, redact(reason, ds, [item.path])  # a quoted value stays out
            # the library's own words, for the debug log: no path, no header value
            record["detail"] = redact(strip_path(f"{type(err).__name__}: {err}", item.path), ds, [item.path])
            record["seconds"] = {"read": time.perf_counter() - t0}
            return record
        record.update(
            ok=True,
            tensor=tensor,
            display=display,
            header=ds if self.need_header else None,
            shape=image.shape,
            spacing=image.spacing,
            seconds={"read": t1 - t0, "preprocess": time.perf_counter() - t1},
        )
        return record
