"""The project's PNG encoder: every file reads back in Pillow with exactly the pixels, palette and transparency given."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.inference.overlay import display_image, encode_overlay_png, overlay_rgb
from pipeline.io import encode_mask_png, encode_png, read_mask
from pipeline.io.png import FILTER_NONE, FILTER_SUB, FILTER_UP
from xray_test_paths import SAMPLE_DIR as SAMPLE

FILTERS = (FILTER_NONE, FILTER_SUB, FILTER_UP)
STRATEGIES = (zlib.Z_DEFAULT_STRATEGY, zlib.Z_RLE, zlib.Z_HUFFMAN_ONLY)


def decode(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()  # decodes every row and checks every chunk's CRC
    return picture


@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (53, 1), (97, 131)])
@pytest.mark.parametrize("row_filter", FILTERS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_greyscale_reads_back_exactly(shape, row_filter, strategy):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    picture = decode(encode_png(pixels, row_filter=row_filter, strategy=strategy))
    assert picture.mode == "L" and picture.size == (shape[1], shape[0])
    assert np.array_equal(np.asarray(picture), pixels)


@pytest.mark.parametrize("row_filter", FILTERS)
def test_palette_and_transparency_read_back_exactly(row_filter):
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    indices = rng.integers(0, 40, (64, 48), dtype=np.uint8)
    picture = decode(encode_png(indices, palette, transparent=3, row_filter=row_filter))
    assert picture.mode == "P" and np.array_equal(np.asarray(picture), indices)
    assert np.array_equal(np.asarray(picture.getpalette()[: 40 * 3], dtype=np.uint8).reshape(-1, 3), palette)
    rgba = np.asarray(picture.convert("RGBA"))
    assert np.array_equal(rgba[..., 3], np.where(indices == 3, 0, 255))
    assert np.array_equal(rgba[..., :3], palette[indices])


def test_bad_arguments_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="2D uint8"):
        encode_png(np.zeros((4, 4), dtype=np.uint16))
    with pytest.raises(ValueError, match="2D uint8"):
        encode_png(np.zeros((0, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="palette"):
        encode_png(np.zeros((4, 4), dtype=np.uint8), np.zeros((300, 3)))
    with pytest.raises(ValueError, match="outside the palette"):
        encode_png(np.zeros((4, 4), dtype=np.uint8), np.zeros((2, 3)), transparent=2)
    with pytest.raises(ValueError, match="needs a palette"):
        encode_png(np.zeros((4, 4), dtype=np.uint8), transparent=0)
    with pytest.raises(ValueError, match="row_filter"):
        encode_png(np.zeros((4, 4), dtype=np.uint8), row_filter=4)


def test_a_real_mask_is_0_255_greyscale_and_small(tmp_path):
    mask = read_mask(sorted((SAMPLE / "masks").glob("*.png"))[0]) > 127
    big = np.kron(mask, np.ones((8, 8), dtype=bool))  # a 2048² mask from a 256² one
    data = encode_mask_png(big)
    picture = decode(data)
    assert picture.mode == "L" and np.array_equal(np.asarray(picture), np.where(big, 255, 0))
    assert len(data) < 40_000  # run-length deflate: tens of KB, not the 4 MB of raw pixels
    labels = np.zeros((30, 20), dtype=np.uint8)
    labels[5:10, 5:15], labels[15:25, 2:8] = 1, 2
    assert np.array_equal(np.asarray(decode(encode_mask_png(labels, binary=False))), labels)


def test_the_overlay_draws_what_overlay_rgb_draws():
    image = read_mask(sorted((SAMPLE / "images").glob("*.png"))[0]).astype(np.float32)
    mask = read_mask(sorted((SAMPLE / "masks").glob("*.png"))[0]) > 127
    big_image, big_mask = np.kron(image, np.ones((6, 6), np.float32)), np.kron(mask, np.ones((6, 6), dtype=bool))
    display = display_image(big_image, 1024)
    assert display.shape == (1024, 1024) and display.dtype == np.uint8
    drawn = np.asarray(decode(encode_overlay_png(display, big_mask)).convert("RGB")).astype(int)
    expected = overlay_rgb(display, big_mask).astype(int)
    assert np.abs(drawn - expected).max() <= 2  # the palette keeps 128 grey levels: a step of 2 at most
    tinted = drawn[expected[..., 0] != expected[..., 1]]
    assert len(tinted) > 0.1 * display.size  # the lungs are drawn in colour


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int64, np.float32])
def test_bilevel_masks_read_back_as_0_255(dtype):
    from pipeline.io.png import encode_bilevel_png

    rng = np.random.default_rng(3)
    for shape in ((1, 1), (1, 9), (9, 1), (70, 45)):
        mask = (rng.random(shape) > 0.5) * rng.integers(1, 5, shape)  # any non-zero value is foreground
        picture = decode(encode_bilevel_png(mask.astype(dtype)))
        assert picture.mode == "L" and np.array_equal(np.asarray(picture), np.where(mask != 0, 255, 0))
    with pytest.raises(ValueError, match="2D mask"):
        encode_bilevel_png(np.zeros((3, 3, 3)))
