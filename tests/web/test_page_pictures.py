"""The pictures of the case page: indexed PNG layers draw exactly what the RGBA layers drew, at a fraction of the cost."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipeline.web.images import (
    PROBABILITY_MAX_SIDE,
    contour_layer,
    contour_layer_png,
    mask_layer,
    mask_layer_png,
    probability_png_bytes,
    probability_rgb,
)


def rgba(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def labels(shape=(300, 200)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[40:200, 20:90] = 1
    mask[60:220, 110:180] = 2
    return mask


def test_indexed_mask_and_outline_layers_equal_the_rgba_layers():
    mask = labels()
    for shape in ((300, 200), (150, 100)):  # own size and the display size of a larger film
        assert np.array_equal(rgba(mask_layer_png(mask, shape)), mask_layer(mask, shape))
        assert np.array_equal(rgba(contour_layer_png(mask, shape)), contour_layer(mask, shape))
    layer = rgba(mask_layer_png(mask, (300, 200)))
    assert layer[0, 0, 3] == 0 and layer[100, 50, 3] == 255  # background transparent, lung opaque


def test_probability_map_is_capped_in_size_and_keeps_its_colours():
    rows, cols = 2048, 1536
    prob = np.tile(np.linspace(0.0, 1.0, cols, dtype=np.float32), (rows, 1))
    picture = Image.open(io.BytesIO(probability_png_bytes(prob, (rows, cols))))
    assert max(picture.size) == PROBABILITY_MAX_SIDE and picture.size == (384, 512)  # aspect kept
    colours = np.asarray(picture.convert("RGB"))
    expected = probability_rgb(prob, (512, 384))
    assert np.abs(colours.astype(int) - expected.astype(int)).max() <= 1
    assert tuple(colours[0, 0]) == (0, 0, 4) and tuple(colours[0, -1]) == (252, 255, 164)  # the ends of the map
    small = Image.open(io.BytesIO(probability_png_bytes(prob[:100, :80], (100, 80))))
    assert small.size == (80, 100)  # never enlarged
