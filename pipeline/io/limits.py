"""The pixel limit: refuse images whose header claims more pixels than any radiograph has, *before* decoding them.

A compressed file's header states the image size, and decoders allocate the output before they read a byte of
pixel data: a 1.2 KB RLE file claiming 20000 x 20000 pixels makes pydicom allocate 0.8 GB, 60000² about 7 GB, in
every worker that opens it. Real radiographs stay below about 4300 x 4300 (18 Mpx, large-format detectors; stitched
full-spine or long-leg views reach about 30 Mpx), so the default limit of 64 Mpx (8000 x 8000) refuses only
impossible claims, and keeps one web upload at the limit within about 2 GB of server memory (``pipeline.web.capacity``
measures 20 bytes per pixel). The batch command (``xray-seg predict --max-pixels``), the
DICOM reader and the web upload all call :func:`check_pixel_count` with the size read from the header.

The limit comes from, in order: the ``limit`` argument, the ``XRAY_SEG_MAX_PIXELS`` environment variable, and
:data:`DEFAULT_PIXEL_LIMIT`. ``0`` or a negative value turns the check off.

Examples::

    >>> check_pixel_count(2048, 2048)                     # a normal film: returns the pixel count
    4194304
    >>> check_pixel_count(20000, 20000)
    Traceback (most recent call last):
    ...
    pipeline.io.limits.PixelLimitError: image claims 20000 x 20000 pixels (400.0 Mpx), above the limit of 64.0 Mpx; ...
"""

from __future__ import annotations

import os

from pipeline.io.image import ImageReadError

__all__ = ["DEFAULT_PIXEL_LIMIT", "PIXEL_LIMIT_ENV", "PixelLimitError", "check_pixel_count", "pixel_limit"]

#: Default largest accepted image, in pixels (rows x columns x frames): 64 Mpx, about 2x a stitched full-spine view.
DEFAULT_PIXEL_LIMIT: int = 64_000_000

#: Environment variable that overrides :data:`DEFAULT_PIXEL_LIMIT` (an integer; ``0`` disables the check).
PIXEL_LIMIT_ENV: str = "XRAY_SEG_MAX_PIXELS"


class PixelLimitError(ImageReadError):
    """The header claims more pixels than the limit allows (raised before any pixel is decoded)."""


def pixel_limit(limit: int | None = None) -> int:
    """The limit in effect: ``limit`` when given, else ``$XRAY_SEG_MAX_PIXELS``, else :data:`DEFAULT_PIXEL_LIMIT`.

    Args:
        limit: an explicit limit in pixels (``0`` or negative: no limit).

    Returns:
        The limit in pixels; ``0`` means no limit.

    Raises:
        ValueError: ``$XRAY_SEG_MAX_PIXELS`` is set but is not an integer.
    """
    if limit is None:
        text = os.environ.get(PIXEL_LIMIT_ENV, "").strip()
        if not text:
            return DEFAULT_PIXEL_LIMIT
        try:
            limit = int(float(text))
        except ValueError as err:
            raise ValueError(f"{PIXEL_LIMIT_ENV}={text!r} is not a number of pixels; use e.g. 64000000.") from err
    return max(0, int(limit))


def check_pixel_count(rows: int, cols: int, frames: int = 1, limit: int | None = None) -> int:
    """Refuse an image whose claimed size exceeds the pixel limit.

    Args:
        rows: ``Rows`` (image height) as stated in the header.
        cols: ``Columns`` (image width).
        frames: ``NumberOfFrames`` (1 for a single image).
        limit: the limit in pixels; ``None`` reads ``$XRAY_SEG_MAX_PIXELS`` or uses :data:`DEFAULT_PIXEL_LIMIT`;
            ``0`` or negative disables the check.

    Returns:
        The claimed number of pixels (``rows * cols * frames``).

    Raises:
        PixelLimitError: the claim exceeds the limit (the message is one line and names the limit and how to raise
            it, never a header value other than the size).
    """
    rows, cols, frames = int(rows or 0), int(cols or 0), max(1, int(frames or 1))
    count = rows * cols * frames
    allowed = pixel_limit(limit)
    if allowed and count > allowed:
        frame_text = f" x {frames} frames" if frames > 1 else ""
        raise PixelLimitError(
            f"image claims {rows} x {cols} pixels{frame_text} ({count / 1e6:.1f} Mpx), above the limit of "
            f"{allowed / 1e6:.1f} Mpx; refused before decoding (raise it with --max-pixels or {PIXEL_LIMIT_ENV})"
        )
    return count
