"""Review overlays: the radiograph with a translucent mask and its contour, as an RGB PNG.

Meant for a quick visual check of a batch (a reader flicks through ``overlays/*.png``), not for diagnosis. The image
is windowed robustly (0.5th-99.5th percentile, so burned-in labels and black borders do not flatten the contrast) and
reduced to at most ``max_side`` pixels (box filter), which keeps a 2048² film's overlay light and fast to write.

Pillow and NumPy only (no matplotlib), so the batch command can draw overlays in any installation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_COLOR", "display_image", "overlay_rgb", "write_overlay_png"]

#: Fill and contour colour (RGB) of the lung mask.
DEFAULT_COLOR: tuple[int, int, int] = (255, 80, 40)


def display_image(pixels: np.ndarray, max_side: int | None = 1024) -> np.ndarray:
    """Window a radiograph to ``uint8`` for display and shrink it to at most ``max_side`` pixels.

    Args:
        pixels: ``(rows, cols)`` image in display polarity (bright = dense), any dtype.
        max_side: longest side of the result; ``None`` keeps the original size.

    Returns:
        ``uint8`` ``(h, w)`` image.
    """
    from PIL import Image

    arr = np.asarray(pixels, dtype=np.float32)
    step = max(1, int(np.sqrt(arr.size / 250_000)))  # percentiles from a ~250k-pixel subsample: fast and stable
    sample = arr[::step, ::step]
    lo, hi = np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=1.0))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
    if max_side is not None and max(out.shape) > max_side:
        factor = max_side / max(out.shape)
        size = (max(1, round(out.shape[1] * factor)), max(1, round(out.shape[0] * factor)))
        out = np.asarray(Image.fromarray(out).resize(size, Image.Resampling.BOX))
    return out


def _fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    m = np.asarray(mask) > 0
    if m.shape == shape:
        return m
    small = Image.fromarray(m.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(small) >= 128


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
    rgb = np.repeat(display[..., None], 3, axis=2).astype(np.float32)
    tint = np.asarray(color, dtype=np.float32)
    rgb[m] = (1.0 - alpha) * rgb[m] + alpha * tint
    rgb[_contour(m)] = tint
    return np.clip(rgb, 0, 255).astype(np.uint8)


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
    from pipeline.io.writers import write_png

    display = np.asarray(pixels, dtype=np.uint8) if prepared else display_image(pixels, max_side)
    return write_png(path, overlay_rgb(display, mask, color, alpha))
