"""Read any supported image or mask file into an :class:`XRayImage`, choosing the reader by content.

``io`` is the lowest layer: it reads PNG, JPEG, TIFF and NIfTI itself and keeps a small registry of readers for the
other formats. :mod:`pipeline.dicom.reader` registers the DICOM reader (``register_reader("dicom", read_dicom)``)
when it is imported, so DICOM support comes with ``import pipeline.dicom`` (which ``pipeline.transforms``,
``pipeline.inference`` and the web application import) and ``io`` never imports ``dicom``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.io.formats import sniff_format
from pipeline.io.image import ImageReadError, UnsupportedImageError, XRayImage

__all__ = ["ImageReader", "read_image", "read_mask", "register_reader", "registered_formats"]

#: A reader: ``reader(path, voi=...)`` returns the image (``voi`` only matters for DICOM).
ImageReader = Callable[..., XRayImage]

_READERS: dict[str, ImageReader] = {}


def register_reader(fmt: str, reader: ImageReader) -> None:
    """Make :func:`read_image` read files that :func:`~pipeline.io.sniff_format` calls ``fmt`` with ``reader``.

    Args:
        fmt: a format name :func:`~pipeline.io.sniff_format` returns (e.g. ``"dicom"``).
        reader: called as ``reader(path, voi=voi)``; returns an :class:`XRayImage` or raises
            :class:`ImageReadError` / :class:`UnsupportedImageError`.
    """
    _READERS[str(fmt)] = reader


def registered_formats() -> tuple[str, ...]:
    """The formats :func:`read_image` reads now (the built-in ones and the registered ones)."""
    return tuple(sorted(set(_READERS)))


def _read_pil(path: Path, fmt: str) -> XRayImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                if mode in ("RGB", "RGBA"):
                    arr = np.asarray(img.convert("RGB"))
                    if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
                        # a colour photo is not a radiograph, but screenshots of films are common: use luminance
                        pass
                img = img.convert("L")
                mode = "L"
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageReadError(f"{path}: unreadable {fmt.upper()} file ({err}).") from err
    if arr.ndim != 2:
        raise UnsupportedImageError(f"{path}: {fmt.upper()} image has shape {arr.shape}; expected a 2D grayscale image.")
    if arr.dtype == np.uint8:
        value_range = (0.0, 255.0)
    elif arr.dtype in (np.uint16, np.int32) and mode.startswith("I"):
        value_range = (0.0, 65535.0)
    else:
        value_range = None
    return XRayImage(arr.astype(np.float32), str(path), fmt, None, value_range, {"mode": mode})


def _read_nifti(path: Path) -> XRayImage:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as err:  # noqa: BLE001 - nibabel raises many error types for corrupt files
        raise ImageReadError(f"{path}: unreadable NIfTI file ({err}).") from err
    data = np.squeeze(data)
    if data.ndim != 2:
        raise UnsupportedImageError(f"{path}: NIfTI volume has shape {data.shape}; expected a single 2D slice.")
    zooms = img.header.get_zooms()[:2]
    # NIfTI stores (x = column, y = row): transpose to the pipeline's (rows, cols), as MONAI's writers lay it out
    spacing = (float(zooms[1]), float(zooms[0])) if all(z > 0 for z in zooms) else None
    return XRayImage(data.T.astype(np.float32), str(path), "nifti", spacing, None, {})


def read_image(path: str | Path, voi: bool = False) -> XRayImage:
    """Read a radiograph from PNG, JPEG, TIFF, DICOM (any extension) or NIfTI.

    The format is decided by the file's content, not its name. DICOM goes through the registered reader,
    :func:`pipeline.dicom.read_dicom` (modality LUT, optional VOI, MONOCHROME1 inversion). PNG/JPEG/TIFF go through Pillow (colour converted to
    luminance). NIfTI goes through nibabel and is transposed to rows x columns.

    Args:
        path: the file.
        voi: for DICOM, apply the VOI LUT / window if present. Defaults to False.

    Returns:
        The image with pixels of shape ``(rows, cols)``.

    Raises:
        ImageReadError: missing, empty, corrupt or unrecognised files; the message names the file.
        UnsupportedImageError: images the pipeline refuses (colour DICOM, multi-frame, 3D volumes).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes).")
    fmt = sniff_format(path)
    reader = _READERS.get(fmt)
    if reader is not None:
        return reader(path, voi=voi)
    if fmt == "dicom":
        raise ImageReadError(
            f"{path}: DICOM file, but no DICOM reader is registered; `import pipeline.dicom` (it registers "
            "pipeline.dicom.read_dicom) before reading DICOM through pipeline.io.read_image."
        )
    raise ImageReadError(
        f"{path}: not a recognised image (expected PNG, JPEG, TIFF, DICOM or NIfTI content, whatever the extension)."
    )


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask (PNG, TIFF or NIfTI) as an integer array of shape ``(rows, cols)``.

    Binary masks stored as 0/255 are kept as they are here; :class:`pipeline.transforms.NormalizeLabel` maps them to
    0/1 (or class indices) later.

    Raises:
        ImageReadError: unreadable or unrecognised files.
    """
    img = read_image(path)
    return img.pixels.astype(np.int64)


for _fmt in ("png", "jpeg", "tiff"):
    register_reader(_fmt, lambda path, voi=False, _fmt=_fmt: _read_pil(Path(path), _fmt))
register_reader("nifti", lambda path, voi=False: _read_nifti(Path(path)))
