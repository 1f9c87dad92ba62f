"""A small PNG encoder over :mod:`zlib`, for the pictures the project writes per image (masks, overlays, page layers).

Pillow's PNG encoder spends most of its time outside zlib: on a 2048² 8-bit mask it tries its five row filters on
every row and takes 31 ms, of which zlib needs 15; on a bilevel (mode ``"1"``) image it still takes 13 ms at
compression level 0. The batch writes a mask and an overlay for every film, so those milliseconds decided the
default command's speed (issue 14). PNG itself is simple (ISO/IEC 15948: a signature, an ``IHDR`` chunk, the rows
deflated in ``IDAT``, ``IEND``), so the project writes it directly: each row gets one fixed filter chosen for the
kind of picture, NumPy applies it to all rows at once, and zlib deflates the result in one call (releasing the GIL,
so writer threads encode in parallel with the model). Any PNG reader reads the files (the tests read them back
with Pillow, byte for byte); decoding stays with Pillow.

Examples::

    >>> import numpy as np
    >>> data = encode_png(np.zeros((4, 5), dtype=np.uint8))
    >>> data[:8] == PNG_SIGNATURE
    True
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["FILTER_NONE", "FILTER_SUB", "FILTER_UP", "PNG_SIGNATURE", "encode_bilevel_png", "encode_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: PNG row filter types (ISO/IEC 15948, 9.2) this encoder applies to every row.
FILTER_NONE, FILTER_SUB, FILTER_UP = 0, 1, 2

_GREY, _PALETTE = 0, 3  # IHDR colour types


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


#: Bytes of filtered rows handed to zlib at a time: small enough to stay in the CPU cache and to need no full-size
#: copy of the image, large enough that the per-call overhead does not count.
BLOCK_BYTES = 1 << 18


def _filter_rows(pixels: np.ndarray, r0: int, r1: int, row_filter: int, out: np.ndarray) -> None:
    """Rows ``r0:r1`` of ``pixels`` into ``out`` (``(r1 - r0, cols + 1)``), each prefixed with its filter byte and
    filtered (``uint8`` arithmetic wraps mod 256, as PNG's filters do)."""
    out[:, 0] = row_filter
    rows = pixels[r0:r1]
    if row_filter == FILTER_NONE:
        out[:, 1:] = rows
    elif row_filter == FILTER_SUB:  # each byte minus the one to its left
        out[:, 1] = rows[:, 0]
        np.subtract(rows[:, 1:], rows[:, :-1], out=out[:, 2:])
    elif row_filter == FILTER_UP:  # each byte minus the one above it (the first row of the image: as it is)
        if r0 == 0:
            out[0, 1:] = rows[0]
            np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
        else:
            np.subtract(rows, pixels[r0 - 1 : r1 - 1], out=out[:, 1:])
    else:
        raise ValueError(f"row_filter must be one of {FILTER_NONE}, {FILTER_SUB}, {FILTER_UP}, got {row_filter}.")


def _deflate_blocks(rows: int, cols: int, fill: Callable[[int, int, np.ndarray], None], level: int, strategy: int,
                    mem_level: int) -> bytes:
    """zlib stream of the filtered rows that ``fill(r0, r1, out)`` writes, one cache-sized block at a time."""
    step = max(1, BLOCK_BYTES // (cols + 1))
    buffer = np.empty((min(step, rows), cols + 1), dtype=np.uint8)
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, mem_level, strategy)
    parts = []
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        block = buffer[: r1 - r0]
        fill(r0, r1, block)
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    return b"".join(parts)


def encode_bilevel_png(mask: np.ndarray, mem_level: int = 4) -> bytes:
    """Encode a binary mask as an 8-bit greyscale PNG of 0 and 255 (non-zero = 255), the fastest way this module can.

    Same pixels as ``encode_png(np.where(mask, 255, 0), row_filter=FILTER_UP, strategy=zlib.Z_RLE)``, but the "up"
    filter is taken on the 0/1 mask directly, block by block (no full-size 0/255 copy): each row minus the row above
    is 0, 1 or 255 (mod 256), times 255 is the filtered 0/255 row. Most rows of a lung mask then hold a few non-zero
    bytes, which zlib's run-length strategy deflates fastest.

    Args:
        mask: ``(rows, cols)`` mask of any dtype.
        mem_level: zlib memory level (see :func:`encode_png`).
    """
    fg = np.asarray(mask)
    if fg.ndim != 2 or 0 in fg.shape:
        raise ValueError(f"encode_bilevel_png needs a non-empty 2D mask, got shape {fg.shape}.")
    fg = (fg if fg.dtype == np.bool_ else fg != 0).view(np.uint8)
    rows, cols = fg.shape

    def fill(r0: int, r1: int, out: np.ndarray) -> None:
        _filter_rows(fg, r0, r1, FILTER_UP, out)
        out[:, 1:] *= 255  # uint8 arithmetic: 1 -> 255 (foreground, or a row entering it), 255 -> 1 (leaving it)

    return _assemble(_header_chunks(cols, rows, None, None), _deflate_blocks(rows, cols, fill, 1, zlib.Z_RLE, mem_level))


def encode_png(
    pixels: np.ndarray,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
    transparent: int | None = None,
    row_filter: int = FILTER_NONE,
    level: int = 1,
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
    mem_level: int = 8,
) -> bytes:
    """Encode an 8-bit greyscale or indexed-colour image as PNG bytes.

    Args:
        pixels: ``uint8`` ``(rows, cols)``: grey levels, or palette indices when ``palette`` is given.
        palette: ``(n, 3)`` RGB colours of the indices (``n <= 256``; indices must be ``< n``); ``None``: greyscale.
        transparent: a palette index drawn fully transparent (``tRNS``); only with ``palette``.
        row_filter: :data:`FILTER_NONE` (masks, label maps: long runs), :data:`FILTER_SUB` or :data:`FILTER_UP`
            (photographs and radiographs: the differences are small numbers that code in fewer bits).
        level: zlib compression level (1 = fastest).
        strategy: zlib strategy, e.g. ``zlib.Z_RLE`` for masks, ``zlib.Z_HUFFMAN_ONLY`` for filtered photographs.
        mem_level: zlib's memory level (1-9). Run-length masks deflate twice as fast at 4 as at 8 or 9 (the symbol
            buffer then stays in the CPU cache: 8 vs 16 ms for a 2048² mask, 1 KB larger).

    Returns:
        The PNG file's bytes.

    Raises:
        ValueError: not a non-empty 2D ``uint8`` array, a palette of the wrong shape, or a misplaced ``transparent``.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise ValueError(f"encode_png needs a non-empty 2D uint8 array, got {pixels.dtype} {pixels.shape}.")
    if row_filter not in (FILTER_NONE, FILTER_SUB, FILTER_UP):
        raise ValueError(f"row_filter must be one of {FILTER_NONE}, {FILTER_SUB}, {FILTER_UP}, got {row_filter}.")
    rows, cols = pixels.shape
    head = _header_chunks(cols, rows, palette, transparent)  # checks the palette before the work
    idat = _deflate_blocks(rows, cols, lambda r0, r1, out: _filter_rows(pixels, r0, r1, row_filter, out), level,
                           strategy, mem_level)
    return _assemble(head, idat)


def _assemble(head: list[bytes], idat: bytes) -> bytes:
    """The PNG file: signature, ``head`` chunks, the deflated filtered rows ``idat``, end."""
    return PNG_SIGNATURE + b"".join(head) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _header_chunks(
    cols: int,
    rows: int,
    palette: np.ndarray | Sequence[Sequence[int]] | None,
    transparent: int | None,
) -> list[bytes]:
    """``IHDR`` (8-bit greyscale or indexed colour), and ``PLTE`` and ``tRNS`` when a palette is given."""
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, _GREY if palette is None else _PALETTE, 0, 0, 0))]
    if palette is not None:
        table = np.asarray(palette, dtype=np.uint8)
        if table.ndim != 2 or table.shape[1] != 3 or not 1 <= len(table) <= 256:
            raise ValueError(f"palette must be (n, 3) RGB with 1 <= n <= 256, got shape {table.shape}.")
        chunks.append(_chunk(b"PLTE", table.tobytes()))
        if transparent is not None:
            if not 0 <= transparent < len(table):
                raise ValueError(f"transparent index {transparent} is outside the palette of {len(table)} colours.")
            chunks.append(_chunk(b"tRNS", b"\xff" * transparent + b"\x00"))
    elif transparent is not None:
        raise ValueError("transparent needs a palette (greyscale transparency is not supported).")
    return chunks
