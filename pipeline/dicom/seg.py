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

UIDs are deterministic (:func:`pipeline.dicom.naming.derived_uid` of the source UIDs and the algorithm), so running
the same model again rewrites the same SEG instance instead of adding a duplicate to the PACS; all SEGs made by one
model from one source series share one SEG series.

Examples::

    >>> algorithm = AlgorithmInfo(name="chest-xray-lung-seg", version="3")
    >>> write_segmentation(header, mask, "out/seg", algorithm)           # out/seg/<SOPInstanceUID>.dcm
    >>> read_segmentation_mask("out/seg/1.2.3.dcm").shape == mask.shape
    True
"""

from __future__ import annotations

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
    "read_segmentation_mask",
    "seg_filename",
    "write_segmentation",
]

#: Series description of every SEG (LO, at most 64 characters).
NOT_FOR_CLINICAL_USE = "AI lung segmentation, not for clinical use"

_LO_MAX = 64


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


def _source_for_highdicom(source: Any) -> Any:
    """A header copy highdicom can turn into a *readable* SEG (see the module docstring on the PixelSpacing trap).

    The copy is a new ``Dataset`` holding the source's (decoded) elements, so removing attributes from it never
    touches the caller's dataset, and the pixel data is never copied.
    """
    from pydicom.dataset import Dataset

    drop = {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}
    if "SliceThickness" not in source:
        drop |= {"PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient"}
    header = Dataset()
    for elem in source:  # iterating decodes raw elements with the source's own encoding
        if elem.keyword not in drop:
            header.add(elem)
    if hasattr(source, "file_meta"):
        header.file_meta = source.file_meta
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
    try:
        source_series = int(source.get("SeriesNumber", 0) or 0)
    except (TypeError, ValueError):
        source_series = 0
    return hd.seg.Segmentation(
        source_images=[_source_for_highdicom(source)],
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
