"""What one upload may cost the server: a pixel limit checked before decoding, and a bounded number of uploads at once.

A compressed file can claim any size: a 140 kB PNG of 12000² or a 195 kB deflated DICOM of 10000² would make the
decoders and the resize allocate gigabytes. Before anything is decoded, :func:`claimed_pixels` reads the size the
header claims (Pillow's lazy open, pydicom without pixel data) and :func:`check_upload_pixels` refuses it above the
batch's pixel limit (``pipeline.io.limits.check_pixel_count``, default 64 Mpx) with a 413 that says so.

:class:`UploadSlots` bounds how many uploads are decoded and segmented at the same time and the memory they reserve
together (about :data:`BYTES_PER_PIXEL` per pixel of each image); a request that finds no room waits a little, then
gets 503 with ``Retry-After`` instead of pushing the machine into an out-of-memory kill, and an image too large for
the whole budget gets 413 at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from pipeline.io.limits import check_pixel_count
from pipeline.web.errors import WebError

__all__ = ["BYTES_PER_PIXEL", "UploadSlots", "available_memory", "check_upload_pixels", "claimed_pixels",
           "default_memory_budget", "default_upload_slots"]

logger = logging.getLogger(__name__)

#: Memory one upload of a typical film may take while it is decoded, segmented and rendered (bytes).
BYTES_PER_UPLOAD: int = 2 * 1024**3

#: Memory an upload takes per pixel of its image, from decoding to the rendered page: measured 20 bytes per pixel on
#: a 4280 x 3520 12-bit DICOM after a warm-up upload (peak RSS 1.09 GB against 0.80 GB;
#: ``scripts/measure_upload_memory.py``), rounded up. The first upload after a start also pays about 165 MB once
#: (lazy imports, highdicom's table of the standard).
BYTES_PER_PIXEL: int = 24


def claimed_pixels(path: Path, fmt: str) -> tuple[int, int, int]:
    """``(rows, cols, frames)`` as the file's header claims them, without decoding pixel data.

    Raises:
        WebError: 400 when the header cannot be read; 413 when Pillow already calls it a decompression bomb.
    """
    if fmt == "dicom":
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            frames = int(str(ds.get("NumberOfFrames", 1) or 1))
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
        except Exception as err:  # noqa: BLE001 - any header damage is the same answer to the user
            raise WebError(400, f"The DICOM header could not be read ({type(err).__name__}).",
                           "Unreadable file") from err
        return rows, cols, max(1, frames) * max(1, samples)
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                cols, rows = img.size
                frames = int(getattr(img, "n_frames", 1) or 1)
    except Image.DecompressionBombError as err:
        raise WebError(413, "The image claims far more pixels than a radiograph has; it was not decoded.",
                       "Image too large") from err
    except Exception as err:  # noqa: BLE001
        raise WebError(400, f"The image header could not be read ({type(err).__name__}).", "Unreadable file") from err
    return int(rows), int(cols), frames


def check_upload_pixels(path: Path, fmt: str, limit: int | None = None) -> tuple[int, int]:
    """Refuse an upload whose header claims more pixels than ``limit`` (``None``: the batch's default).

    Returns:
        ``(rows, cols)`` as claimed.

    Raises:
        WebError: 413 above the limit (nothing was decoded), 400 for an unreadable header.
    """
    rows, cols, frames = claimed_pixels(path, fmt)
    try:
        check_pixel_count(rows, cols, frames, limit=limit)
    except Exception as err:  # noqa: BLE001 - the limit's own error type
        raise WebError(413, f"The image is too large to segment here: {err}. Nothing was decoded. Downsample the "
                            "file, or raise the limit with --max-pixels.", "Image too large") from err
    return rows, cols


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), or ``None`` when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def default_upload_slots(bytes_per_upload: int = BYTES_PER_UPLOAD) -> int:
    """Uploads processed at once by default: what the available memory holds at :data:`BYTES_PER_UPLOAD` each,
    at least 1 and at most 4."""
    available = available_memory()
    if available is None:
        return 1
    return max(1, min(4, int(available // max(1, bytes_per_upload)) - 1 or 1))


def default_memory_budget() -> int | None:
    """Bytes all uploads in progress may take together: 60 % of the memory available at start (``None``: unknown)."""
    available = available_memory()
    return int(available * 0.6) if available else None


class UploadSlots:
    """Bounds on the uploads processed at once: a number of slots and a memory budget shared by them.

    An upload reserves ``pixels * bytes_per_pixel`` of the budget (measured: about 85 bytes per pixel from decoding
    to the rendered page, see ``docs/web.md``). A request that finds no slot or not enough budget waits up to
    ``wait_s`` seconds, then gets 503; an image that would not fit even in the whole budget gets 413 at once.

    Args:
        slots: uploads processed at the same time.
        wait_s: how long a request waits for a slot and budget before 503.
        memory_budget: bytes the uploads in progress may take together; ``None`` for no budget.
        bytes_per_pixel: the memory an upload takes per pixel of its image.
    """

    def __init__(self, slots: int, wait_s: float = 10.0, memory_budget: int | None = None,
                 bytes_per_pixel: int = BYTES_PER_PIXEL) -> None:
        if int(slots) < 1:
            raise ValueError(f"slots must be at least 1, got {slots}.")
        self.slots = int(slots)
        self.wait_s = float(wait_s)
        self.memory_budget = int(memory_budget) if memory_budget else None
        self.bytes_per_pixel = int(bytes_per_pixel)
        self._cond = threading.Condition()
        self._active = 0
        self._reserved = 0

    def cost(self, pixels: int) -> int:
        """Bytes reserved for an image of ``pixels`` pixels."""
        return int(pixels) * self.bytes_per_pixel

    @contextlib.contextmanager
    def hold(self, pixels: int = 0) -> Iterator[None]:
        """Hold a slot and the memory of an image of ``pixels`` pixels for the block (blocking: call it in a worker
        thread).

        Raises:
            WebError: 413 when the image alone exceeds the memory budget; 503 with a Retry-After hint when no slot
                or budget frees up within ``wait_s``.
        """
        cost = self.cost(pixels)
        if self.memory_budget is not None and cost > self.memory_budget:
            raise WebError(413, f"The image ({pixels / 1e6:.0f} Mpx) needs about {cost / 2**30:.1f} GB to segment, "
                                f"more than this server allows for uploads ({self.memory_budget / 2**30:.1f} GB). "
                                "Downsample it, or run `xray-seg predict` on it.", "Image too large")

        def free() -> bool:
            return self._active < self.slots and (
                self.memory_budget is None or self._reserved + cost <= self.memory_budget)

        with self._cond:
            if not self._cond.wait_for(free, timeout=self.wait_s):
                logger.warning("upload refused with 503: %d upload(s) in progress", self._active)
                raise WebError(503, f"The server is busy with {self._active} other upload(s); try again in a "
                                    "moment.", "Busy", headers={"Retry-After": "5"})
            self._active += 1
            self._reserved += cost
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._reserved -= cost
                self._cond.notify_all()
