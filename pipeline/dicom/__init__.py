"""DICOM input and output: decoding with owned photometrics, selection rules, DICOM SEG writing, batch manifests."""

from pipeline.dicom.discovery import IMAGE_LIKE_SUFFIXES, discover_inputs, sniff_input
from pipeline.dicom.errors import READ_ERROR_CODES, classify_read_error, one_line, redact, strip_path
from pipeline.dicom.manifest import Journal, load_journal, manifest_columns, read_manifest, write_manifest
from pipeline.dicom.naming import derived_uid, file_id, is_valid_uid, path_uid, uid_to_filename
from pipeline.dicom.reader import dicom_to_image, dicom_value_range, read_dicom, read_dicom_dataset
from pipeline.dicom.seg import (
    NOT_FOR_CLINICAL_USE,
    AlgorithmInfo,
    build_segmentation,
    lung_segment_description,
    read_segmentation_mask,
    repair_header_values,
    seg_filename,
    write_segmentation,
)
from pipeline.dicom.selection import (
    DEFAULT_RULES,
    DEFAULT_RULES_FILE,
    FileSelection,
    Selection,
    SelectionRules,
    select_file,
)
from pipeline.dicom.synthesize import (
    FIXTURE_VARIANTS,
    TRANSFER_SYNTAXES,
    FixtureVariant,
    default_source_images,
    load_source_image,
    make_fixture_set,
    make_radiograph_dicom,
)

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_RULES_FILE",
    "FIXTURE_VARIANTS",
    "IMAGE_LIKE_SUFFIXES",
    "NOT_FOR_CLINICAL_USE",
    "READ_ERROR_CODES",
    "TRANSFER_SYNTAXES",
    "AlgorithmInfo",
    "FileSelection",
    "FixtureVariant",
    "Journal",
    "Selection",
    "SelectionRules",
    "build_segmentation",
    "classify_read_error",
    "default_source_images",
    "derived_uid",
    "dicom_to_image",
    "dicom_value_range",
    "discover_inputs",
    "file_id",
    "is_valid_uid",
    "load_journal",
    "load_source_image",
    "lung_segment_description",
    "make_fixture_set",
    "make_radiograph_dicom",
    "manifest_columns",
    "one_line",
    "path_uid",
    "read_dicom",
    "read_dicom_dataset",
    "read_manifest",
    "read_segmentation_mask",
    "redact",
    "repair_header_values",
    "seg_filename",
    "select_file",
    "sniff_input",
    "strip_path",
    "uid_to_filename",
    "write_manifest",
    "write_segmentation",
]
