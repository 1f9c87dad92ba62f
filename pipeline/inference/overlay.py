"""Review overlays: the radiograph with a translucent mask and its contour, as an RGB PNG.

Meant for a quick visual check of a batch (a reader flicks through ``overlays/*.png``), not for diagnosis. The image
is reduced to at most ``max_side`` pixels first (box filter), then windowed robustly (0.5th-99.5th percentile, so
burned-in labels and black borders do not flatten the contrast); the mask is reduced to the same size and its contour
drawn there, and the PNG is written with light compression (zlib level 1). Every step after the first works on the
small image, so the overlay of a 2048² film costs a few milliseconds, not a quarter of the batch's time.

Pillow and NumPy only (no matplotlib), so the batch command can draw overlays in any installation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_COLOR", "box_reduce", "display_image", "overlay_indexed", "overlay_rgb", "write_overlay_png"]

#: Fill and contour colour (RGB) of the lung mask.
DEFAULT_COLOR: tuple[int, int, int] = (255, 80, 40)


def display_image(pixels: np.ndarray, max_side: int | None = 1024) -> np.ndarray:
    """Shrink a radiograph to at most ``max_side`` pixels and window it to ``uint8`` for display.

    Args:
        pixels: ``(rows, cols)`` image in display polarity (bright = dense), any dtype.
        max_side: longest side of the result; ``None`` keeps the original size.

    Returns:
        ``uint8`` ``(h, w)`` image.
    """
    from PIL import Image

    arr = np.asarray(pixels, dtype=np.float32)
    if max_side is not None and max(arr.shape) > max_side:
        factor = max_side / max(arr.shape)
        arr = box_reduce(arr, (max(1, round(arr.shape[0] * factor)), max(1, round(arr.shape[1] * factor))))
    step = max(1, int(np.sqrt(arr.size / 65_536)))  # percentiles from a ~65k-pixel subsample: fast and stable
    sample = arr[::step, ::step]
    lo, hi = np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=1.0))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)


def box_reduce(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Shrink a ``float32`` image to ``shape`` with a box filter, in memory and time linear in the input.

    Whole ``k x k`` blocks are averaged first in NumPy (no full-size copy), then Pillow's box resize takes the small
    remainder; on a 2048² film this is 3-4x faster than one box resize of the whole image, with the same pixels.
    """
    from PIL import Image

    arr = np.asarray(arr, dtype=np.float32)
    k = int(min(arr.shape[0] / max(1, shape[0]), arr.shape[1] / max(1, shape[1])))
    arr = _bin(arr, k)
    if arr.shape != tuple(shape):
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr), mode="F").resize((shape[1], shape[0]),
                                                                                     Image.Resampling.BOX))
    return arr


def _bin(arr: np.ndarray, k: int) -> np.ndarray:
    """Mean of each ``k x k`` block (rows and columns beyond a whole block are dropped); ``arr`` when ``k < 2``."""
    if k < 2:
        return arr
    rows, cols = (arr.shape[0] // k) * k, (arr.shape[1] // k) * k
    total = np.zeros((rows // k, cols // k), dtype=np.float32)
    for dr in range(k):  # k² strided adds: each reads 1/k² of the image, so the whole pass reads it once
        for dc in range(k):
            total += arr[dr:rows:k, dc:cols:k]
    return total * np.float32(1.0 / (k * k))


def _fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    m = np.asarray(mask)
    if m.shape == shape:
        return m > 0
    # nearest neighbour: the mask is only drawn at display size, and picking pixels is ~10x cheaper than averaging
    small = Image.fromarray((m > 0).astype(np.uint8)).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(small) > 0


def _contour(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def overlay_rgb(
    display: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    alpha: float = 0.3,
) -> np.ndarray:
    """Blend a mask over a display image and draw the mask's outline.

    Args:
        display: ``uint8`` ``(h, w)`` image (see :func:`display_image`).
        mask: binary mask of any size (resized to ``display``; non-zero = foreground).
        color: fill and contour colour.
        alpha: fill opacity in [0, 1].

    Returns:
        ``uint8`` ``(h, w, 3)`` RGB image.
    """
    m = _fit_mask(mask, display.shape[:2])
    gray = np.asarray(display, dtype=np.uint8)
    edge = _contour(m)
    levels = np.arange(256, dtype=np.float32)
    rgb = np.empty(gray.shape + (3,), dtype=np.uint8)
    for c, value in enumerate(color):  # a 256-entry table per channel instead of float arithmetic per pixel
        blended = np.clip(np.rint((1.0 - alpha) * levels + alpha * value), 0, 255).astype(np.uint8)
        channel = np.where(m, blended[gray], gray)
        channel[edge] = value
        rgb[..., c] = channel
    return rgb


def overlay_indexed(
    display: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    alpha: float = 0.3,
) -> Any:
    """The overlay of :func:`overlay_rgb` as a palette image (one byte per pixel; what the batch writes).

    The palette holds 128 grey levels, the same 128 levels tinted with ``color`` and the contour colour, so the
    PNG encoder compresses a third of the bytes of an RGB image (the grey step of 2 is invisible at review size).

    Returns:
        A ``PIL.Image`` in mode ``"P"``.
    """
    from PIL import Image

    m = _fit_mask(mask, display.shape[:2])
    index = np.right_shift(np.asarray(display, dtype=np.uint8), 1)  # 0..127: grey
    index[m] += 128  # 128..255: tinted grey
    index[_contour(m)] = 255  # the contour (the brightest tinted grey is given up for it)
    grey = np.arange(128, dtype=np.float32) * 2 + 0.5
    tint = np.asarray(color, dtype=np.float32)
    tinted = (1.0 - alpha) * grey[:, None] + alpha * tint[None, :]
    palette = np.concatenate([np.repeat(grey[:, None], 3, axis=1), tinted])
    palette[255] = tint
    image = Image.fromarray(index, mode="P")
    image.putpalette(np.clip(np.rint(palette), 0, 255).astype(np.uint8).ravel().tolist())
    return image


def write_overlay_png(
    path: str | Path,
    pixels: np.ndarray,
    mask: np.ndarray,
    max_side: int | None = 1024,
    color: tuple[int, int, int] = DEFAULT_COLOR,
    alpha: float = 0.3,
    prepared: bool = False,
) -> Path:
    """Write the overlay PNG of an image and its mask, atomically.

    Args:
        path: the PNG to write.
        pixels: the radiograph ``(rows, cols)``, or an already prepared ``uint8`` display image when ``prepared``.
        mask: the mask at the image's (or any) resolution.
        max_side: longest side of the overlay.
        color: mask colour.
        alpha: fill opacity.
        prepared: ``pixels`` is the output of :func:`display_image` (the batch makes it in a decoding worker).

    Returns:
        The written path.
    """
    from pipeline.io.writers import atomic_path

    display = np.asarray(pixels, dtype=np.uint8) if prepared else display_image(pixels, max_side)
    image = overlay_indexed(display, mask, color, alpha)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)  # review images: speed over bytes
    return Path(path)
