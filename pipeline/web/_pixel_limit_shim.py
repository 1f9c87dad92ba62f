"""TEMPORARY stand-in for ``pipeline.io.limits.check_pixel_count`` (engineer i14) until it lands on main.

Delete this file once ``pipeline/io/limits.py`` is on main; :mod:`pipeline.web.capacity` imports the real one first.
"""

from __future__ import annotations

DEFAULT_MAX_PIXELS = 100_000_000


class PixelLimitError(ValueError):
    """An image claims more pixels than the limit."""


def check_pixel_count(rows: int, cols: int, frames: int = 1, limit: int | None = None) -> int:
    """Raise :class:`PixelLimitError` when ``rows * cols * frames`` exceeds ``limit``; return the count."""
    limit = DEFAULT_MAX_PIXELS if limit is None else int(limit)
    count = int(rows) * int(cols) * max(1, int(frames or 1))
    if count > limit:
        raise PixelLimitError(f"the image claims {rows} x {cols} x {frames} = {count / 1e6:.0f} Mpx, above the limit "
                              f"of {limit / 1e6:.0f} Mpx")
    return count
