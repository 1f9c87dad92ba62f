"""Realistic DX/CR DICOM files made from ordinary radiograph images, for tests, benchmarks and demos.

The public test corpora hold almost no chest radiographs in DICOM (pydicom ships three 16 x 16 C-spine CRs), yet a
hospital batch sees every variant: MONOCHROME1 and MONOCHROME2, 12- and 16-bit, uncompressed and JPEG-LS, JPEG 2000
or RLE, with ``ImagerPixelSpacing`` and/or ``PixelSpacing``, with or without a Frame of Reference. This module writes
such files from PNG radiographs (the sample embedded in the package, or the JSRT films of a shared data folder), with synthetic
patient identity and deterministic UIDs, so every fixture is reproducible and none carries real patient data.

The stored values are chosen so that the project's reader (:func:`pipeline.dicom.read_dicom`) returns the *same*
pixels for the MONOCHROME1 and the MONOCHROME2 version of one image: a MONOCHROME1 file stores
``2**BitsStored - 1 - v`` where the MONOCHROME2 file stores ``v``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dicom.naming import derived_uid
from pipeline.io.writers import atomic_path

__all__ = [
    "FIXTURE_VARIANTS",
    "TRANSFER_SYNTAXES",
    "FixtureVariant",
    "default_source_images",
    "load_source_image",
    "make_fixture_set",
    "make_radiograph_dicom",
]

#: Short names of the transfer syntaxes :func:`make_radiograph_dicom` can write (encoders checked with pydicom 3.0.2:
#: native RLE, JPEG-LS via pyjpegls, JPEG 2000 via pylibjpeg-openjpeg).
TRANSFER_SYNTAXES: dict[str, str] = {
    "explicit": "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "implicit": "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "deflate": "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "jpeg-ls": "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "jpeg2000": "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "rle": "1.2.840.10008.1.2.5",  # RLE Lossless
}

_SOP_CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
}

def _stored_values(pixels: np.ndarray, bits_stored: int, raw: bool) -> np.ndarray:
    top = 2**bits_stored - 1
    arr = np.asarray(pixels)
    if arr.ndim != 2:
        raise ValueError(f"pixels must be a 2D array (rows, cols), got shape {arr.shape}.")
    if raw:
        if arr.min() < 0 or arr.max() > top:
            raise ValueError(f"raw pixels must lie in [0, {top}] for BitsStored={bits_stored}.")
        return arr.astype(np.uint16)
    if arr.dtype == np.uint8:
        scaled = arr.astype(np.float64) * (top / 255.0)
    else:
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr.astype(np.float64) - lo) * (top / (hi - lo) if hi > lo else 0.0)
    return np.clip(np.rint(scaled), 0, top).astype(np.uint16)


def make_radiograph_dicom(
    pixels: np.ndarray,
    path: str | Path,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    transfer_syntax: str = "explicit",
    modality: str = "DX",
    spacing: tuple[float, float] | None = (0.35, 0.35),
    spacing_attributes: Sequence[str] = ("ImagerPixelSpacing",),
    frame_of_reference: bool = False,
    view_position: str | None = "PA",
    body_part: str | None = "CHEST",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY"),
    presentation_intent: str = "FOR PRESENTATION",
    patient_name: str = "SYNTHETIC^PATIENT",
    patient_id: str = "SYN-0001",
    uid_seed: str | None = None,
    study_instance_uid: str | None = None,
    preamble: bool = True,
    raw: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a single-frame DX or CR image from a 2D array.

    Args:
        pixels: 2D array in display polarity (bright = dense). ``uint8`` is scaled from [0, 255] to
            [0, 2**bits_stored - 1]; other dtypes are min-max scaled to that range; ``raw=True`` stores the values
            as they are.
        path: output file (written atomically; parent folders are created).
        photometric: ``"MONOCHROME2"`` or ``"MONOCHROME1"`` (stored values inverted, PresentationLUTShape INVERSE).
        bits_stored: 12 or 16 (any value in 8-16 works; BitsAllocated is 16).
        transfer_syntax: a key of :data:`TRANSFER_SYNTAXES` (``explicit``, ``implicit``, ``deflate``, ``jpeg-ls``,
            ``jpeg2000``, ``rle``) or a transfer syntax UID.
        modality: ``"DX"`` (Digital X-Ray For Presentation) or ``"CR"`` (Computed Radiography).
        spacing: ``(row, col)`` pixel spacing in mm, or ``None`` for none.
        spacing_attributes: which attributes carry ``spacing``: ``ImagerPixelSpacing`` (detector plane, usual for
            DX/CR) and/or ``PixelSpacing`` (calibrated). ``PixelSpacing`` without a Frame of Reference reproduces the
            highdicom SEG trap the batch writer must handle.
        frame_of_reference: add ``FrameOfReferenceUID`` and ``PositionReferenceIndicator``.
        view_position: ``ViewPosition`` (``"PA"``, ``"AP"``, ``"LL"``, ...) or ``None`` to leave it out.
        body_part: ``BodyPartExamined`` or ``None``.
        image_type: ``ImageType`` values.
        presentation_intent: ``PresentationIntentType`` (DX only).
        patient_name: synthetic patient name (used by tests that check logs never show it).
        patient_id: synthetic patient id.
        uid_seed: seed of the deterministic Study/Series/SOP Instance UIDs (defaults to the file name).
        study_instance_uid: share a study between several files.
        preamble: write the 128-byte preamble and ``DICM`` prefix (some exports omit both).
        raw: store ``pixels`` unscaled (they must fit in ``bits_stored``).
        extra: further attributes by keyword, e.g. ``{"PatientSex": "F"}``.

    Returns:
        The written path.

    Raises:
        ValueError: unsupported photometric, modality or transfer syntax.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID

    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}.")
    if modality not in _SOP_CLASSES:
        raise ValueError(f"modality must be one of {sorted(_SOP_CLASSES)}, got {modality!r}.")
    ts = UID(TRANSFER_SYNTAXES.get(transfer_syntax, transfer_syntax))
    if not ts.is_transfer_syntax:
        raise ValueError(f"unknown transfer syntax {transfer_syntax!r}; use one of {sorted(TRANSFER_SYNTAXES)}.")
    path = Path(path)
    seed = uid_seed or path.name
    stored = _stored_values(pixels, bits_stored, raw)
    top = 2**bits_stored - 1
    if photometric == "MONOCHROME1":
        stored = (top - stored).astype(np.uint16)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASSES[modality]
    meta.MediaStorageSOPInstanceUID = derived_uid("synthetic-sop", seed)
    meta.TransferSyntaxUID = UID(TRANSFER_SYNTAXES["explicit"])
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128 if preamble else None)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.ImageType = list(image_type)
    ds.StudyDate, ds.StudyTime = "20240115", "101500"
    ds.SeriesDate, ds.SeriesTime = ds.StudyDate, ds.StudyTime
    ds.ContentDate, ds.ContentTime = ds.StudyDate, "101512"
    ds.AccessionNumber = "SYN" + derived_uid("acc", seed)[-8:]
    ds.Modality = modality
    ds.Manufacturer = "xray-seg synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "XR CHEST"
    ds.SeriesDescription = f"Chest {view_position or ''}".strip()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    if body_part:
        ds.BodyPartExamined = body_part
    if view_position:
        ds.ViewPosition = view_position
    ds.StudyInstanceUID = study_instance_uid or derived_uid("synthetic-study", seed)
    ds.SeriesInstanceUID = derived_uid("synthetic-series", seed)
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    if frame_of_reference:
        ds.FrameOfReferenceUID = derived_uid("synthetic-for", seed)
        ds.PositionReferenceIndicator = ""
    if modality == "DX":
        ds.PresentationIntentType = presentation_intent
        ds.ImageLaterality = "U"
        ds.DetectorType = "DIRECT"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = int(bits_stored)
    ds.HighBit = int(bits_stored) - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = (top + 1) // 2, top + 1
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.LossyImageCompression = "00"
    if spacing is not None:
        for keyword in spacing_attributes:
            setattr(ds, keyword, [float(spacing[0]), float(spacing[1])])
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.tobytes()
    if ts.is_compressed:
        # RLE natively, JPEG-LS with pyjpegls, JPEG 2000 with pylibjpeg-openjpeg; keep the deterministic UID
        ds.compress(ts, stored, generate_instance_uid=False)
    else:
        meta.TransferSyntaxUID = ts
    with atomic_path(path) as tmp:
        # without a preamble pydicom writes the file meta group but no 128-byte preamble and no "DICM" prefix
        ds.save_as(tmp, enforce_file_format=preamble)
    return path


def default_source_images(shared_data: str | Path | None = None) -> list[Path]:
    """PNG radiographs to make fixtures from.

    The 12 JSRT films at 1024² in ``jsrt_scr_hires/images`` of a shared data folder, when one is given
    (``shared_data``, else ``$XRAY_SHARED_DATA``) and holds them; otherwise the 256² sample embedded in the package
    (``pipeline/data/sample/jsrt30/images``, read through :mod:`importlib.resources`; upsample with
    :func:`load_source_image`), so callers never lack sources and nothing outside the package is searched unasked.

    Args:
        shared_data: a shared data folder. Defaults to ``$XRAY_SHARED_DATA`` (unset: the embedded sample).
    """
    folder = shared_data if shared_data is not None else os.environ.get("XRAY_SHARED_DATA")
    if folder:
        hires = sorted((Path(folder) / "jsrt_scr_hires" / "images").glob("*.png"))
        if hires:
            return hires
    sample = resources.files("pipeline").joinpath("data", "sample", "jsrt30", "images")
    return sorted(Path(str(p)) for p in sample.iterdir() if p.name.endswith(".png"))


def load_source_image(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read a grayscale PNG/JPEG as ``uint8`` ``(rows, cols)``, resized (bilinear, Pillow) when ``size`` is given."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L")
        if size is not None:
            target = (size, size) if isinstance(size, int) else (int(size[1]), int(size[0]))
            if img.size != target:
                img = img.resize(target, Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).copy()


@dataclass(frozen=True)
class FixtureVariant:
    """One kind of fixture file: the keyword arguments of :func:`make_radiograph_dicom` under a name."""

    name: str
    kwargs: dict[str, Any]
    source: int = 0


def _variants() -> list[FixtureVariant]:
    out = []
    pairs = [(bits, syntax) for syntax in ("explicit", "jpeg-ls", "jpeg2000", "rle") for bits in (12, 16)]
    for source, (bits, syntax) in enumerate(pairs):  # a MONOCHROME1/2 pair shares its source image
        for photometric in ("MONOCHROME1", "MONOCHROME2"):
            modality = "CR" if photometric == "MONOCHROME1" and source % 2 == 0 else "DX"
            name = f"{modality.lower()}_mono{photometric[-1]}_{bits}bit_{syntax}"
            kwargs = dict(photometric=photometric, bits_stored=bits, transfer_syntax=syntax, modality=modality)
            out.append(FixtureVariant(name, kwargs, source))
    # the highdicom trap: PixelSpacing without SliceThickness, without and with a Frame of Reference
    both = ("PixelSpacing", "ImagerPixelSpacing")
    out += [
        FixtureVariant("dx_mono2_12bit_pixelspacing_nofor", dict(spacing_attributes=("PixelSpacing",)), 0),
        FixtureVariant("cr_mono1_12bit_pixelspacing_nofor",
                       dict(modality="CR", photometric="MONOCHROME1", spacing_attributes=both), 1),
        FixtureVariant("dx_mono2_12bit_pixelspacing_for", dict(spacing_attributes=both, frame_of_reference=True), 2),
        FixtureVariant("dx_mono2_16bit_nospacing_noview", dict(bits_stored=16, spacing=None, view_position=None), 3),
        FixtureVariant("dx_mono2_12bit_nopreamble", dict(preamble=False), 4),
        FixtureVariant("dx_mono2_12bit_lateral", dict(view_position="LL"), 5),
    ]
    return out


#: The standard fixture set: every photometric x bit depth x transfer syntax (MONOCHROME1/2 pairs share a source image),
#: the PixelSpacing-without-FoR trap, a FoR case, no spacing / no view, no preamble, and a lateral (to be skipped).
FIXTURE_VARIANTS: tuple[FixtureVariant, ...] = tuple(_variants())


def make_fixture_set(
    out_dir: str | Path,
    size: int = 256,
    sources: Sequence[str | Path] | None = None,
    variants: Sequence[FixtureVariant] = FIXTURE_VARIANTS,
    spacing_mm_at_1024: float = 0.35,
) -> dict[str, Path]:
    """Write one DICOM file for each variant into ``out_dir`` (``<variant name>.dcm``).

    Args:
        out_dir: destination folder.
        size: side of the written images (the sources are resized; spacing is scaled to keep the film 358 mm wide).
        sources: PNG radiographs; defaults to :func:`default_source_images`.
        variants: the variants to write.
        spacing_mm_at_1024: pixel spacing of a 1024-pixel film (JSRT: about 0.35 mm).

    Returns:
        ``{variant name: path}``.
    """
    out_dir = Path(out_dir)
    paths = list(sources) if sources is not None else default_source_images()
    if not paths:
        raise FileNotFoundError("no source images found for the DICOM fixtures.")
    spacing = round(spacing_mm_at_1024 * 1024 / size, 4)
    cache: dict[int, np.ndarray] = {}
    written: dict[str, Path] = {}
    for variant in variants:
        index = variant.source % len(paths)
        if index not in cache:
            cache[index] = load_source_image(paths[index], size)
        kwargs = {"spacing": (spacing, spacing), **variant.kwargs}
        path = out_dir / f"{variant.name}.dcm"
        written[variant.name] = make_radiograph_dicom(cache[index], path, uid_seed=variant.name, **kwargs)
    return written
