"""The radiograph at full bit depth for the page's window/level, and what the page shows about the study.

The viewer windows the image in the browser: :func:`pixel_payload` sends the pixel values at the original size as
little-endian ``uint16`` (zlib-compressed; the page inflates them with the browser's ``DecompressionStream``), with
the mapping back to the image's own units and the window presets. Values that already are integers in 0..65535 (a
12-bit DICOM, 8/16-bit PNG) are sent as they are, so a window of width 4 on a 12-bit film really shows 4 grey
steps; other images are mapped linearly onto 0..65535.

Presets, computed from the image's histogram (radiographs have no Hounsfield scale, so fixed numbers would not fit
every detector): ``default`` the robust 0.5-99.5th percentile window the batch overlays use (8-bit files as stored),
``lung`` the darker part of the film (1st-65th percentile: contrast inside the lung fields), ``bone`` the denser
part (35th-99.9th percentile: ribs, spine, mediastinum), ``full`` the whole stored range.

:func:`dicom_context` reads what identifies the study (patient ID, study date, modality, view, series
description) for the page only; these values are the reader's own data on a local page and never go to a log.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import XRayImage

__all__ = ["PRESETS", "dicom_context", "pixel_payload"]

#: Pixels converted at a time (bounds the temporaries of a 64 Mpx upload to a few MB).
_BLOCK_PIXELS = 1 << 20

#: Window presets as (low, high) percentiles of the image's values.
PRESETS: dict[str, tuple[float, float]] = {"lung": (1.0, 65.0), "bone": (35.0, 99.9)}


def pixel_payload(image: XRayImage, stored_8bit: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The pixels as zlib-compressed little-endian ``uint16`` and their description.

    Args:
        image: the radiograph (display polarity).
        stored_8bit: an 8-bit file shown as stored: the default window is its full 0-255 range.

    Returns:
        ``(data, meta)``; ``meta`` has ``rows``, ``cols``, ``offset`` and ``scale`` (value = u16 * scale + offset),
        ``bits`` (significant bits of the u16 values) and ``presets`` (name -> [low, high] in u16 units).
    """
    pixels = np.asarray(image.pixels, dtype=np.float32)
    low, high = float(pixels.min(initial=0.0)), float(pixels.max(initial=0.0))
    rows_per_block = max(1, _BLOCK_PIXELS // max(1, pixels.shape[1]))  # temporaries of one block, not of the image
    blocks = [slice(r, r + rows_per_block) for r in range(0, pixels.shape[0], rows_per_block)]
    integral = all(np.array_equal(pixels[b], np.rint(pixels[b])) for b in blocks)
    if integral and low >= 0 and high <= 65535:
        offset, scale = 0.0, 1.0
    elif integral and high - low <= 65535:
        offset, scale = low, 1.0
    else:
        offset, scale = low, max(high - low, 1e-6) / 65535.0
    values = np.empty(pixels.shape, dtype="<u2")
    for b in blocks:
        block = pixels[b] - np.float32(offset)
        if scale != 1.0:
            block /= np.float32(scale)
        values[b] = np.clip(np.rint(block, out=block), 0, 65535, out=block)
    sample = values.ravel()[:: max(1, values.size // 1_000_000)]
    u_low, u_high = int(values.min(initial=0)), int(values.max(initial=0))
    presets: dict[str, list[float]] = {}
    wanted = [0.5, 99.5] + [q for pair in PRESETS.values() for q in pair]
    levels = dict(zip(wanted, (float(v) for v in np.percentile(sample, wanted))))  # one sort for every preset
    presets["default"] = [0.0, 255.0] if stored_8bit else [levels[0.5], levels[99.5]]
    for name, (a, b) in PRESETS.items():
        presets[name] = [levels[a], float(max(levels[b], levels[a] + 1))]
    presets["full"] = [float(u_low), float(max(u_high, u_low + 1))]
    meta = {
        "rows": int(values.shape[0]),
        "cols": int(values.shape[1]),
        "offset": offset,
        "scale": scale,
        "bits": int(max(1, u_high).bit_length()),
        "presets": presets,
    }
    return zlib.compress(values.tobytes(), 1), meta


def dicom_context(path: str | Path) -> dict[str, str]:
    """Patient ID, study date, modality, view and series description of a DICOM file (empty for other files)."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - context is optional
        return {}
    if "SOPClassUID" not in ds and "Rows" not in ds:
        return {}
    date = str(ds.get("StudyDate", "") or "")
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    def text(keyword: str) -> str:
        value = ds.get(keyword, "")
        if value is None or value == "":
            return ""
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "/".join(str(v) for v in value)
        return str(value)

    out = {
        "Patient ID": text("PatientID"),
        "Study date": date,
        "Modality": text("Modality"),
        "View": " ".join(v for v in (text("ViewPosition"), text("PatientOrientation")) if v),
        "Series": text("SeriesDescription"),
    }
    return out
