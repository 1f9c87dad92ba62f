"""Read a radiograph from DICOM with explicit, owned photometrics.

MONAI's ``PydicomReader`` does not invert MONOCHROME1 and its ``ITKReader`` does, so the pipeline does this step
itself: decode (pydicom with the pylibjpeg / gdcm plugins for compressed syntaxes), mask to ``BitsStored``, apply the
modality LUT (rescale slope / intercept or a LUT sequence), optionally the VOI LUT or window, then invert
MONOCHROME1 so that every image leaves here in MONOCHROME2 polarity (bright = dense), as a radiologist sees it.

Two steps come before any pixel is decoded: files without a file meta group (a bare implicit-VR dataset, as some
exports and old archives write) get one stating the encoding pydicom detected, and the size the header claims is
checked against the pixel limit (:func:`pipeline.io.limits.check_pixel_count`), so a tiny compressed file claiming
20000² pixels is refused instead of making the decoder allocate gigabytes.

:func:`read_dicom` does both steps and the decoding in one call; the batch uses the two halves,
:func:`read_dicom_dataset` and :func:`dicom_to_image`, to read each file once and keep its header for the SEG.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.image import ImageReadError, UnsupportedImageError, XRayImage
from pipeline.io.limits import check_pixel_count
from pipeline.io.readers import register_reader

__all__ = ["dicom_to_image", "dicom_value_range", "read_dicom", "read_dicom_dataset"]

_GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")


def dicom_value_range(ds: Any, voi_applied: bool = False) -> tuple[float, float]:
    """The range of values after the modality LUT (and, if applied, the VOI LUT or window).

    Follows the output-range rules that pydicom's ``apply_windowing`` uses (DICOM PS3.3 C.11.1.1.1 / C.11.2.1.2):
    the stored range from ``BitsStored`` and ``PixelRepresentation``, mapped through the rescale, or the bit depth
    of a LUT when a LUT sequence is used.
    """
    if voi_applied and ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    lo, hi = lo * slope + intercept, hi * slope + intercept
    return (min(lo, hi), max(lo, hi))


def _spacing(ds: Any) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if row > 0 and col > 0:
                return (row, col)
    return None


def _add_file_meta(ds: Any) -> None:
    """Give a dataset read without a file meta group the transfer syntax of the encoding pydicom detected."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = bool(getattr(ds, "is_implicit_VR", True)), bool(getattr(ds, "is_little_endian", True))
    if implicit:
        syntax = ImplicitVRLittleEndian
    else:
        syntax = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    new_meta = meta if meta is not None else FileMetaDataset()
    new_meta.TransferSyntaxUID = syntax
    if "SOPClassUID" in ds and "MediaStorageSOPClassUID" not in new_meta:
        new_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" not in new_meta:
        new_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = new_meta


def read_dicom_dataset(path: str | Path, stop_before_pixels: bool = False) -> Any:
    """Parse a DICOM file into a pydicom ``Dataset`` without decoding its pixel data.

    Files without the 128-byte preamble, and bare datasets without a file meta group, are accepted: the latter get a
    file meta group with the transfer syntax of the encoding pydicom detected (implicit or explicit VR).

    Args:
        path: the file.
        stop_before_pixels: leave out the pixel data (header only).

    Returns:
        The dataset (with ``file_meta.TransferSyntaxUID`` set).

    Raises:
        ImageReadError: the file is missing, truncated or not DICOM.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    caught: list[warnings.WarningMessage] = []
    try:
        # pydicom reports a file cut short inside an undefined-length element (encapsulated pixel data) only as a
        # warning and returns what it could parse; record warnings so such a file is called truncated, not empty
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
        except Exception as err:  # noqa: BLE001 - any parser failure means "not DICOM"
            raise ImageReadError(f"{path}: not a DICOM file ({type(err).__name__}).") from err
        if "SOPClassUID" not in ds and "PixelData" not in ds and "Rows" not in ds:
            raise ImageReadError(f"{path}: not a DICOM file (no DICOM header found).")
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: file not found.") from err
    except Exception as err:  # noqa: BLE001 - truncated headers raise many kinds of errors
        raise ImageReadError(f"{path}: unreadable DICOM ({type(err).__name__}: {err}).") from err

    for warning in caught:
        if "end of file" in str(warning.message).lower():
            raise ImageReadError(f"{path}: truncated DICOM file ({warning.message}).")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno, module="pydicom")
    _add_file_meta(ds)
    return ds


def _meta(ds: Any) -> dict[str, Any]:
    return {
        "SOPInstanceUID": str(ds.get("SOPInstanceUID", "")),
        "SOPClassUID": str(ds.get("SOPClassUID", "")),
        "StudyInstanceUID": str(ds.get("StudyInstanceUID", "")),
        "SeriesInstanceUID": str(ds.get("SeriesInstanceUID", "")),
        "Modality": str(ds.get("Modality", "")),
        "PhotometricInterpretation": str(ds.get("PhotometricInterpretation", "")),
        "BitsStored": int(ds.get("BitsStored", 0) or 0),
        "TransferSyntaxUID": str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "")),
    }


def read_dicom(
    path: str | Path, voi: bool = False, stop_before_pixels: bool = False, pixel_limit: int | None = None
) -> XRayImage:
    """Read a single-frame grayscale radiograph from a DICOM file.

    Args:
        path: the DICOM file (any extension or none; files without the 128-byte preamble, and bare datasets without
            a file meta group, are accepted).
        voi: apply the VOI LUT, or the first window centre/width, when the file has one. Defaults to False, which
            keeps the full modality range (the model sees all the information; scaling happens later).
        stop_before_pixels: read only the header (``pixels`` is then an empty array); used by selection rules.
        pixel_limit: largest accepted ``Rows x Columns x NumberOfFrames`` (see :mod:`pipeline.io.limits`; ``None``:
            ``$XRAY_SEG_MAX_PIXELS`` or 64 Mpx), checked before decoding.

    Returns:
        An :class:`~pipeline.io.image.XRayImage` in MONOCHROME2 polarity with ``spacing`` from ``PixelSpacing``
        or ``ImagerPixelSpacing`` and the UIDs in ``meta``.

    Raises:
        ImageReadError: the file is missing, empty, truncated, not DICOM, has no pixel data, or cannot be decoded
            (for example a compressed transfer syntax whose decoder plugin is not installed).
        PixelLimitError: the header claims more pixels than ``pixel_limit`` (an :class:`ImageReadError`).
        UnsupportedImageError: colour or multi-frame images, which the pipeline refuses with a reason.
    """
    ds = read_dicom_dataset(path, stop_before_pixels=stop_before_pixels)
    if stop_before_pixels:
        return XRayImage(np.zeros((0, 0), np.float32), str(path), "dicom", _spacing(ds), None, _meta(ds))
    return dicom_to_image(ds, path, voi=voi, pixel_limit=pixel_limit)


def dicom_to_image(ds: Any, path: str | Path, voi: bool = False, pixel_limit: int | None = None) -> XRayImage:
    """Decode a parsed dataset (see :func:`read_dicom_dataset`) into an :class:`XRayImage`; see :func:`read_dicom`.

    Args:
        ds: the dataset, with its pixel data.
        path: the file it came from (for messages and ``XRayImage.source``).
        voi: apply the VOI LUT or window.
        pixel_limit: the pixel limit (see :func:`read_dicom`).
    """
    from pydicom.pixels import apply_voi_lut

    meta = _meta(ds)
    spacing = _spacing(ds)
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM object has no pixel data (SOP class {meta['SOPClassUID'] or 'unknown'}).")
    try:
        check_pixel_count(int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0),
                          int(ds.get("NumberOfFrames", 1) or 1), pixel_limit)
    except (TypeError, ValueError) as err:  # a malformed size element: nothing safe to decode
        raise ImageReadError(f"{path}: malformed image size in the header ({type(err).__name__}).") from err
    photometric = meta["PhotometricInterpretation"]
    if photometric not in _GRAYSCALE:
        raise UnsupportedImageError(
            f"{path}: photometric interpretation {photometric or 'missing'} is not supported; "
            "only grayscale radiographs (MONOCHROME1/MONOCHROME2) can be segmented."
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise UnsupportedImageError(f"{path}: multi-frame image ({frames} frames); only single-frame radiographs are supported.")
    try:
        raw = ds.pixel_array
    except Exception as err:  # noqa: BLE001 - decoder errors vary by plugin
        hint = ""
        if "plugins are missing" in str(err) or "missing required dependencies" in str(err):
            # only a missing plugin is fixed by installing one; truncated or corrupt data is not
            hint = (
                " Install the decoders with"
                " `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg python-gdcm`."
            )
        raise ImageReadError(
            f"{path}: pixel data could not be decoded (transfer syntax {meta['TransferSyntaxUID'] or 'unknown'}): "
            f"{err}.{hint}"
        ) from err
    if raw.ndim != 2:
        raise UnsupportedImageError(f"{path}: pixel array has shape {raw.shape}; expected a single 2D frame.")

    bits_stored = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0 and bits_stored < raw.dtype.itemsize * 8:
        # ignore overlay bits above BitsStored (in place: the decoded array is ours, no second full-size copy)
        keep = np.asarray((1 << bits_stored) - 1, dtype=raw.dtype)
        raw = np.bitwise_and(raw, keep, out=raw if raw.flags.writeable else None)
    pixels = _modality_values(raw, ds)
    voi_applied = False
    if voi and (ds.get("VOILUTSequence") or ("WindowCenter" in ds and "WindowWidth" in ds)):
        pixels = np.asarray(apply_voi_lut(pixels.astype(np.float64), ds, prefer_lut=True), dtype=np.float32)
        voi_applied = True
        meta["voi_applied"] = True
    lo, hi = dicom_value_range(ds, voi_applied)
    if photometric == "MONOCHROME1":
        # DICOM shows MONOCHROME1 white-at-minimum after the VOI step; mirror within the output range
        owned = pixels is not raw and pixels.base is None  # a fresh array of ours: mirror it in place
        pixels = np.subtract(lo + hi, pixels, out=pixels if owned else None)
        meta["inverted"] = True
    return XRayImage(np.asarray(pixels, dtype=np.float32), str(path), "dicom", spacing, (lo, hi), meta)


def _modality_values(raw: np.ndarray, ds: Any) -> np.ndarray:
    """The stored values through the Modality LUT or rescale, as a fresh ``float32`` array.

    pydicom's ``apply_modality_lut`` computes the rescale in float64 (8 bytes per pixel, then a float32 copy); float32
    holds every 16-bit stored value exactly and the rescaled ones to 1e-7 relative, at half the memory, so the rescale
    is done here and pydicom's function is used only for a Modality LUT Sequence.
    """
    from pydicom.pixels import apply_modality_lut

    if ds.get("ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    pixels = raw.astype(np.float32)  # always a copy: the caller may mirror it in place
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        if slope != 1.0:
            pixels *= np.float32(slope)
        if intercept != 0.0:
            pixels += np.float32(intercept)
    return pixels


register_reader("dicom", read_dicom)  # pipeline.io.read_image reads DICOM through this module (io stays below dicom)
