"""DICOM Segmentation (SEG) objects for projection radiographs, written with highdicom.

A SEG made here references its source image, stays in the source's Study, opens a new Series described as
"not for clinical use", identifies the algorithm (model name and version; family "Artificial Intelligence", DCM
123110 in CID 7162, where DCM 123109 is "Manual Processing") and carries one lung segment coded with SNOMED CT
(property category "Anatomical Structure" 91723000, property type "Lung" 39607008). It is BINARY by default;
FRACTIONAL stores the lung probability (0-255).

Projection radiographs need care (highdicom #99, #159, PR #183): DX and CR images usually have no patient coordinate
system (no Frame of Reference, or one without ``ImagePositionPatient``), and highdicom then writes no plane position
or orientation. **The trap**: when such a source carries ``PixelSpacing`` (but, being a projection, no
``SliceThickness``), highdicom copies it into a Pixel Measures Sequence without ``SliceThickness`` and
``highdicom.seg.segread`` later refuses the file ("Sequence does not have the required attributes for a Pixel
Measures Sequence"). This happens with *and* without a ``FrameOfReferenceUID`` (checked with highdicom 0.28.2).
:func:`build_segmentation` therefore hands highdicom a header copy without ``PixelSpacing`` (and without patient
position/orientation, which a projection image cannot use) whenever the source has no ``SliceThickness``. Inventing
a slice thickness, as some tools do, would put a false physical claim into the object. The pixel spacing stays
available in the source and in the batch manifest (lung area in cm²).

Source headers from the field hold values that break the standard (``PatientBirthDate`` ``1965-03-12``, a time with
colons): highdicom copies the patient and study attributes and refuses such a value, which used to cost the whole
image. The header copy handed to highdicom is therefore checked first: dates and times in a common wrong spelling are
repaired, any other invalid value is left empty (the attributes highdicom copies are Type 2: empty is valid), and a
warning names the attribute, never its value. ``PatientOrientation`` (Type 2C in the General Image module, required
because a projection SEG has no Image Orientation (Patient)) is copied from the source, or left empty.

UIDs are deterministic (:func:`pipeline.dicom.naming.derived_uid` of the source SOP Instance UID, the model name and
version and the output settings), so running the same model again, or retrying after a failure, rewrites the same
SEG instance instead of adding a second one to the PACS; all SEGs made by one model from one source series share one
SEG series.

Examples::

    >>> algorithm = AlgorithmInfo(name="chest-xray-lung-seg", version="3")
    >>> write_segmentation(header, mask, "out/seg", algorithm)           # out/seg/<SOPInstanceUID>.dcm
    >>> read_segmentation_mask("out/seg/1.2.3.dcm").shape == mask.shape
    True
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dicom.naming import derived_uid, uid_to_filename
from pipeline.io.writers import atomic_path

__all__ = [
    "NOT_FOR_CLINICAL_USE",
    "AlgorithmInfo",
    "build_segmentation",
    "lung_segment_description",
    "repair_header_values",
    "read_segmentation_mask",
    "seg_filename",
    "write_segmentation",
]

#: Series description of every SEG (LO, at most 64 characters).
NOT_FOR_CLINICAL_USE = "AI lung segmentation, not for clinical use"

_LO_MAX = 64

logger = logging.getLogger(__name__)

# pydicom's reading validation is a global setting; it is switched off only while a header copy is decoded (pydicom
# would otherwise log and warn each invalid value *with the value*), one copy at a time
_DECODE_LOCK = threading.Lock()

#: Value representations whose values :func:`repair_header_values` checks (text; binary and sequences are left alone).
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}

_DATE_RE = re.compile(r"^\s*(\d{4})[-./](\d{2})[-./](\d{2})\s*$")
_TIME_RE = re.compile(r"^\s*(\d{2}):?(\d{2})(?::?(\d{2}(?:\.\d{1,6})?))?\s*$")


def _lo(text: str) -> str:
    """Clip a string to the 64 characters of the LO value representation."""
    return str(text)[:_LO_MAX]


def _software_versions() -> tuple[str, ...]:
    import highdicom
    import pydicom

    from pipeline import __version__

    versions = [
        f"xray-seg-pipeline {__version__}",
        f"highdicom {highdicom.__version__}",
        f"pydicom {pydicom.__version__}",
    ]
    try:
        import monai

        versions.append(f"monai {monai.__version__}")
    except ImportError:  # pragma: no cover - monai is a core dependency
        pass
    return tuple(versions)


@dataclass(frozen=True)
class AlgorithmInfo:
    """Who made the segmentation: recorded in the Algorithm Identification and equipment attributes.

    Args:
        name: model name (e.g. the registered MLflow model name); LO, clipped to 64 characters.
        version: model version (registry version, or a checkpoint hash).
        manufacturer: equipment ``Manufacturer``.
        model_name: equipment ``ManufacturerModelName``; defaults to ``name``.
        software_versions: ``SoftwareVersions``; defaults to the pipeline, highdicom, pydicom and MONAI versions.
        device_serial_number: ``DeviceSerialNumber`` (a software device has none; a fixed id is recorded).
        series_description: ``SeriesDescription``; must say the result is not for clinical use.
        series_number_offset: the SEG series number is the source's ``SeriesNumber`` plus this offset.
    """

    name: str = "xray-seg"
    version: str = "unversioned"
    manufacturer: str = "xray-seg-pipeline"
    model_name: str = ""
    software_versions: tuple[str, ...] = field(default_factory=_software_versions)
    device_serial_number: str = "xray-seg"
    series_description: str = NOT_FOR_CLINICAL_USE
    series_number_offset: int = 9000

    def __post_init__(self) -> None:
        if "not for clinical use" not in self.series_description.lower():
            raise ValueError("series_description must state 'not for clinical use'.")


def lung_segment_description(algorithm: AlgorithmInfo) -> Any:
    """The ``highdicom.seg.SegmentDescription`` of the lung segment (segment number 1, SNOMED CT coded)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    identification = hd.AlgorithmIdentificationSequence(
        name=_lo(algorithm.name or "xray-seg"),
        version=_lo(algorithm.version or "unversioned"),
        family=codes.cid7162.ArtificialIntelligence,  # DCM 123110 (123109 would be Manual Processing)
    )
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lung",
        segmented_property_category=codes.SCT.AnatomicalStructure,  # SCT 91723000
        segmented_property_type=codes.SCT.Lung,  # SCT 39607008
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=identification,
        tracking_id="lung",
        tracking_uid=derived_uid("xray-seg:segment", "lung", algorithm.name, algorithm.version),
    )


def seg_filename(source: Any) -> str:
    """The SEG's file name: the sanitised source SOP Instance UID plus ``.dcm`` (never the input path)."""
    return uid_to_filename(str(source.get("SOPInstanceUID", "")), ".dcm")


def _repaired(vr: str, value: str) -> str | None:
    """A standard spelling of a wrongly written date or time, or ``None`` when there is none."""
    if vr == "DA":
        match = _DATE_RE.match(value)
        return "".join(match.groups()) if match else None
    if vr == "TM":
        match = _TIME_RE.match(value)
        return "".join(g for g in match.groups() if g) if match else None
    return None


def repair_header_values(header: Any, label: str = "") -> list[str]:
    """Repair or empty the invalid values of a header copy, in place; returns the keywords changed.

    Every top-level element (sequences excepted) is checked with pydicom's validator for its value representation.
    A date or time in a common wrong spelling (``1965-03-12``, ``10:15:00``) is rewritten; any other invalid value
    is emptied. Each change is logged as a warning naming the attribute, never the value.

    Args:
        header: a pydicom ``Dataset`` (changed in place; pass a copy).
        label: how the log line names the image (e.g. its SOP Instance UID).
    """
    from pydicom import config
    from pydicom.valuerep import validate_value

    changed = []
    for elem in header:
        if elem.VR not in _TEXT_VRS or elem.value is None or elem.value == "":
            continue
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        fixed: list[Any] = []
        bad = False
        for value in values:
            try:
                validate_value(elem.VR, value if isinstance(value, bytes) else str(value), config.RAISE)
                fixed.append(value)
                continue
            except (ValueError, TypeError):
                bad = True
            repaired = _repaired(elem.VR, str(value))
            fixed.append(repaired if repaired is not None else "")
        if not bad:
            continue
        action = "repaired" if all(v != "" for v in fixed) else "left empty in the SEG"
        keep = [v for v in fixed if v != ""]
        elem.value = (keep if len(keep) > 1 else keep[0]) if keep and action == "repaired" else None
        name = elem.keyword or str(elem.tag)
        logger.warning("%s: %s is not a valid %s value in the source header; %s", label or "SEG", name, elem.VR,
                       action)
        changed.append(name)
    return changed


def _source_for_highdicom(source: Any) -> Any:
    """A header copy highdicom can turn into a *readable* SEG (see the module docstring on the PixelSpacing trap).

    The copy is a new ``Dataset`` holding the source's (decoded) elements, so removing attributes from it never
    touches the caller's dataset, and the pixel data is never copied. Invalid values are repaired or emptied
    (:func:`repair_header_values`).
    """
    from pydicom import config
    from pydicom.dataset import Dataset

    drop = {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}
    if "SliceThickness" not in source:
        drop |= {"PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient"}
    header = Dataset()
    with _DECODE_LOCK:
        mode = config.settings.reading_validation_mode
        config.settings.reading_validation_mode = config.IGNORE
        try:
            for elem in source:  # iterating decodes raw elements with the source's own encoding
                if elem.keyword not in drop:
                    header.add(elem)
        finally:
            config.settings.reading_validation_mode = mode
    if hasattr(source, "file_meta"):
        header.file_meta = source.file_meta
    repair_header_values(header, f"SEG of {str(source.get('SOPInstanceUID', '') or 'unknown uid')}")
    return header


def build_segmentation(
    source: Any,
    mask: np.ndarray,
    algorithm: AlgorithmInfo,
    prob: np.ndarray | None = None,
    fractional: bool = False,
) -> Any:
    """Build the SEG of one single-frame radiograph.

    Args:
        source: the source image's header (``pydicom.Dataset``; pixel data is not needed and is not copied).
        mask: ``(Rows, Columns)`` binary lung mask of the source (any integer or bool dtype; non-zero = lung).
        algorithm: model identification and equipment.
        prob: ``(Rows, Columns)`` lung probability in [0, 1]; required when ``fractional``.
        fractional: write a FRACTIONAL (probability, 8-bit) SEG instead of a BINARY one.

    Returns:
        The ``highdicom.seg.Segmentation`` dataset.

    Raises:
        ValueError: the mask does not match the source size, the source is multi-frame, or ``prob`` is missing.
    """
    import highdicom as hd

    rows, cols = int(source.Rows), int(source.Columns)
    if int(source.get("NumberOfFrames", 1) or 1) != 1:
        raise ValueError("only single-frame source images are supported.")
    if tuple(mask.shape) != (rows, cols):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the source image ({rows}, {cols}).")
    if fractional:
        if prob is None or tuple(prob.shape) != (rows, cols):
            raise ValueError("fractional SEG needs prob with the source image's shape.")
        pixel_array = np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0)
        seg_type = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:
        pixel_array = (np.asarray(mask) > 0).astype(np.uint8)
        seg_type = hd.seg.SegmentationTypeValues.BINARY
    source_uid = str(source.SOPInstanceUID)
    algo_key = (algorithm.name, algorithm.version, "fractional" if fractional else "binary")
    series_uid = derived_uid("xray-seg:series", str(source.get("StudyInstanceUID", "")),
                             str(source.get("SeriesInstanceUID", "")), *algo_key)
    header = _source_for_highdicom(source)
    try:
        source_series = int(header.get("SeriesNumber", 0) or 0)
    except (TypeError, ValueError):
        source_series = 0
    seg = hd.seg.Segmentation(
        source_images=[header],
        pixel_array=pixel_array,
        segmentation_type=seg_type,
        segment_descriptions=[lung_segment_description(algorithm)],
        series_instance_uid=series_uid,
        series_number=source_series + algorithm.series_number_offset,
        sop_instance_uid=derived_uid("xray-seg:instance", source_uid, *algo_key),
        instance_number=1,
        manufacturer=_lo(algorithm.manufacturer),
        manufacturer_model_name=_lo(algorithm.model_name or algorithm.name),
        software_versions=[_lo(v) for v in algorithm.software_versions],  # type: ignore[arg-type]
        device_serial_number=_lo(algorithm.device_serial_number),
        series_description=_lo(algorithm.series_description),
        content_description=_lo(f"Lung segmentation by {algorithm.name} {algorithm.version}"),
        content_label="LUNG",
        omit_empty_frames=False,  # an empty result is still a result: keep the frame
        max_fractional_value=255,
    )
    # General Image module, Type 2C: required when Image Orientation (Patient) is not (a projection image). The SEG
    # shares the source's pixel grid, so the source's row/column directions hold for it too.
    seg.PatientOrientation = header.get("PatientOrientation", None) or ""
    return seg


def write_segmentation(
    source: Any,
    mask: np.ndarray,
    out: str | Path,
    algorithm: AlgorithmInfo,
    prob: np.ndarray | None = None,
    fractional: bool = False,
) -> Path:
    """Build the SEG (see :func:`build_segmentation`) and write it atomically.

    Args:
        source: the source image's header.
        mask: ``(Rows, Columns)`` binary lung mask.
        out: a folder (the file is named by :func:`seg_filename`) or a file path ending in ``.dcm``.
        algorithm: model identification and equipment.
        prob: lung probability for ``fractional``.
        fractional: write a FRACTIONAL SEG.

    Returns:
        The path written.
    """
    out = Path(out)
    path = out if out.suffix.lower() == ".dcm" else out / seg_filename(source)
    seg = build_segmentation(source, mask, algorithm, prob=prob, fractional=fractional)
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path


def read_segmentation_mask(path: str | Path, source_sop_instance_uid: str | None = None) -> np.ndarray:
    """Read a SEG written here back with ``highdicom.seg.segread`` as a ``(Rows, Columns)`` array.

    Args:
        path: the SEG file.
        source_sop_instance_uid: the referenced source image; defaults to the SEG's only referenced instance.

    Returns:
        ``uint8`` 0/1 for a BINARY SEG; ``float32`` probabilities in [0, 1] for a FRACTIONAL one.
    """
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    if source_sop_instance_uid is None:
        refs = seg.get_source_image_uids()
        if len(refs) != 1:
            raise ValueError(f"{path}: expected exactly one referenced source image, found {len(refs)}.")
        source_sop_instance_uid = refs[0][2]
    fractional = seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    pixels = seg.get_pixels_by_source_instance(
        [source_sop_instance_uid], combine_segments=not fractional, dtype=np.float32 if fractional else np.uint8
    )
    return pixels[0, ..., 0] if fractional else pixels[0]
