"""Pictures for the review page: windowed radiographs, mask layers and probability maps as in-memory PNGs.

Everything here works on arrays and returns bytes or ``data:`` URLs, never files: the page receives its images
inline, so an upload leaves nothing behind on the server's disk.

The radiograph is shown as a radiologist expects it: in display polarity (bright = dense; the readers of
:mod:`pipeline.io` already invert MONOCHROME1), 8-bit PNG/JPEG/TIFF files exactly as stored (they were windowed
when they were exported), and every other image (12/16-bit DICOM, 16-bit PNG or TIFF) through the robust
0.5th-99.5th percentile window of :func:`pipeline.inference.overlay.display_image`, the one the batch overlays use.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

from pipeline.inference.overlay import DEFAULT_COLOR, box_reduce, display_image, encode_overlay_png, nearest_resize
from pipeline.io import XRayImage, encode_mask_png
from pipeline.io.png import FILTER_UP, encode_png

__all__ = [
    "CLASS_COLORS",
    "DISPLAY_MAX_SIDE",
    "contour_layer",
    "contour_layer_png",
    "data_url",
    "display_window",
    "fit_mask",
    "mask_layer",
    "mask_layer_png",
    "mask_png_bytes",
    "overlay_png_bytes",
    "palette_png_bytes",
    "png_bytes",
    "probability_png_bytes",
    "probability_rgb",
]

#: Longest side of the images sent to the browser (the downloads of the mask keep the original size).
DISPLAY_MAX_SIDE: int = 1024

#: Longest side of the probability map sent to the browser: the network sees 128-256 px, so a larger map only
#: interpolates; the page stretches it over the film like the other layers.
PROBABILITY_MAX_SIDE: int = 512

#: Fill colours of label values 1, 2, ... (label 1 is the lung colour of the batch overlays).
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    DEFAULT_COLOR,
    (40, 170, 255),
    (120, 220, 60),
    (250, 210, 40),
    (200, 90, 230),
)

# anchor colours of the probability colour map (dark blue -> purple -> orange -> light yellow, perceptually ordered)
_PROB_ANCHORS = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
     [252, 255, 164]],
    dtype=np.float32,
)


def png_bytes(display: np.ndarray) -> bytes:
    """Encode a ``uint8`` ``(h, w)`` display image as PNG bytes (the "up" filter: radiographs compress to ~60 %)."""
    return encode_png(np.asarray(display, dtype=np.uint8), row_filter=FILTER_UP, strategy=zlib.Z_HUFFMAN_ONLY)


def palette_png_bytes(indices: np.ndarray, colours: np.ndarray | list[tuple[int, int, int]],
                      transparent: int | None = 0) -> bytes:
    """An indexed-colour PNG: one byte per pixel plus a palette (4x less to encode than RGBA, same picture).

    Args:
        indices: ``uint8`` ``(h, w)`` palette indices.
        colours: RGB colour of each index (at most 256).
        transparent: index drawn fully transparent (``None``: none).
    """
    palette = np.zeros((256, 3), dtype=np.uint8)  # every index valid: one missing from ``colours`` is drawn black
    table = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)[:256]
    palette[: len(table)] = table
    return encode_png(np.asarray(indices, dtype=np.uint8), palette, transparent, strategy=zlib.Z_RLE)


def data_url(data: bytes, mime: str = "image/png") -> str:
    """A ``data:`` URL (base64) holding ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _shrink(display: np.ndarray, max_side: int | None) -> np.ndarray:
    from PIL import Image

    if max_side is None or max(display.shape) <= max_side:
        return display
    factor = max_side / max(display.shape)
    size = (max(1, round(display.shape[1] * factor)), max(1, round(display.shape[0] * factor)))
    return np.asarray(Image.fromarray(display).resize(size, Image.Resampling.BOX))


def display_window(image: XRayImage, max_side: int | None = DISPLAY_MAX_SIDE) -> tuple[np.ndarray, str]:
    """The radiograph as shown on the page, and a description of the window used.

    Args:
        image: the image as read by :func:`pipeline.io.read_image` (display polarity).
        max_side: longest side of the result (box-filtered); ``None`` keeps the original size.

    Returns:
        ``uint8`` ``(h, w)`` image and a short text such as ``"8-bit values as stored"``.
    """
    pixels = np.asarray(image.pixels)
    stored_8bit = (
        image.format in ("png", "jpeg", "tiff")
        and image.value_range == (0.0, 255.0)
        and float(pixels.min(initial=0.0)) >= 0.0
        and float(pixels.max(initial=0.0)) <= 255.0
    )
    if stored_8bit:
        return _shrink(np.rint(pixels).astype(np.uint8), max_side), "8-bit values as stored"
    text = "0.5-99.5th percentile window"
    if image.format == "dicom":
        bits = int(image.meta.get("BitsStored", 0) or 0)
        photometric = str(image.meta.get("PhotometricInterpretation", "") or "")
        source = " ".join(part for part in (f"{bits}-bit" if bits else "", photometric) if part)
        if source:
            text += f" of {source}"
        if photometric == "MONOCHROME1":
            text += ", inverted to bright = dense"
    return display_image(pixels, max_side), text


def fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A label map resized to ``shape`` (nearest neighbour, so class values stay exact), as ``uint8``."""
    return np.ascontiguousarray(nearest_resize(np.asarray(mask).astype(np.uint8, copy=False), shape))


def _colour_of(label: int) -> tuple[int, int, int]:
    return CLASS_COLORS[(int(label) - 1) % len(CLASS_COLORS)]


def _label_palette() -> list[tuple[int, int, int]]:
    """Palette of label maps: index 0 (background, drawn transparent) black, label k in its colour."""
    return [(0, 0, 0)] + [_colour_of(k) for k in range(1, 256)]


def mask_layer_png(mask: np.ndarray, shape: tuple[int, int]) -> bytes:
    """:func:`mask_layer` as an indexed PNG (what the page receives)."""
    return palette_png_bytes(fit_mask(mask, shape), _label_palette())


def contour_layer_png(mask: np.ndarray, shape: tuple[int, int], width: int = 1) -> bytes:
    """:func:`contour_layer` as an indexed PNG (what the page receives)."""
    return palette_png_bytes(_contour_labels(fit_mask(mask, shape), width), _label_palette())


def _contour_labels(labels: np.ndarray, width: int) -> np.ndarray:
    from scipy import ndimage

    edges = np.zeros_like(labels)
    for label in np.unique(labels):
        if label == 0:
            continue
        region = labels == label
        edge = region & ~ndimage.binary_erosion(region, iterations=max(1, int(width)), border_value=0)
        edges[edge] = label
    return edges


def mask_layer(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An RGBA layer painting each label (value > 0) in its colour, opaque; transparent elsewhere.

    The page stacks it over the radiograph and sets its CSS opacity from the slider.
    """
    labels = fit_mask(mask, shape)
    rgba = np.zeros((*labels.shape, 4), dtype=np.uint8)
    for label in np.unique(labels):
        if label == 0:
            continue
        rgba[labels == label] = (*_colour_of(label), 255)
    return rgba


def contour_layer(mask: np.ndarray, shape: tuple[int, int], width: int = 1) -> np.ndarray:
    """An RGBA layer with the outline (``width`` pixels, inside the region) of each label."""
    edges = _contour_labels(fit_mask(mask, shape), width)
    rgba = np.zeros((*edges.shape, 4), dtype=np.uint8)
    for label in np.unique(edges):
        if label:
            rgba[edges == label] = (*_colour_of(label), 255)
    return rgba


def _probability_lut() -> np.ndarray:
    """``(256, 3)`` colours of the probabilities 0, 1/255, ..., 1 (linear between the anchors)."""
    position = np.linspace(0.0, 1.0, 256, dtype=np.float32) * (len(_PROB_ANCHORS) - 1)
    lower = np.floor(position).astype(np.int64).clip(0, len(_PROB_ANCHORS) - 2)
    frac = (position - lower)[:, None]
    rgb = (1.0 - frac) * _PROB_ANCHORS[lower] + frac * _PROB_ANCHORS[lower + 1]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


_PROB_LUT = _probability_lut()


def _probability_levels(prob: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """Probabilities resized to ``shape`` and quantised to 0..255 (box filter when shrinking, bilinear otherwise)."""
    from PIL import Image

    p = np.asarray(prob, dtype=np.float32)
    if shape is not None and p.shape != tuple(shape):
        if shape[0] <= p.shape[0] and shape[1] <= p.shape[1]:
            p = box_reduce(p, shape)  # memory linear in the output: no full-size copy of a 64 Mpx map
        else:
            p = np.asarray(Image.fromarray(np.ascontiguousarray(p), mode="F").resize((shape[1], shape[0]),
                                                                                     Image.Resampling.BILINEAR))
    return np.rint(np.clip(np.nan_to_num(p), 0.0, 1.0) * 255.0).astype(np.uint8)


def probability_rgb(prob: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Colour a ``(rows, cols)`` probability map in [0, 1] (dark = 0, light yellow = 1), in 256 steps.

    Args:
        prob: foreground probability.
        shape: output size (bilinear resize), e.g. the display image's; ``None`` keeps the size.

    Returns:
        ``uint8`` ``(h, w, 3)`` RGB image.
    """
    return _PROB_LUT[_probability_levels(prob, shape)]


def probability_png_bytes(prob: np.ndarray, shape: tuple[int, int], max_side: int = PROBABILITY_MAX_SIDE) -> bytes:
    """The probability map as the page receives it: an indexed PNG of ``shape``'s aspect, at most ``max_side``."""
    factor = min(1.0, max_side / max(shape))
    small = (max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor)))
    return palette_png_bytes(_probability_levels(prob, small), _PROB_LUT, transparent=None)


def mask_png_bytes(mask: np.ndarray, binary: bool = True) -> bytes:
    """The mask at its own size as PNG, byte for byte as the batch writes it (:func:`pipeline.io.encode_mask_png`)."""
    return encode_mask_png(mask, binary)


def overlay_png_bytes(display: np.ndarray, mask: np.ndarray, alpha: float = 0.3) -> bytes:
    """The review overlay (radiograph, translucent mask, outline) exactly as the batch writes it, as PNG bytes."""
    return encode_overlay_png(display, mask, alpha=alpha)
