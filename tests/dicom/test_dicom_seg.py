"""DICOM SEG for radiographs: round trip through highdicom.segread, required content, the PixelSpacing trap."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from pipeline.dicom import (
    FIXTURE_VARIANTS,
    AlgorithmInfo,
    build_segmentation,
    make_fixture_set,
    read_segmentation_mask,
    write_segmentation,
)
from pipeline.dicom import seg as seg_module

ALGORITHM = AlgorithmInfo(name="chest-xray-lung-seg", version="7")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_fixture_set(tmp_path_factory.mktemp("dicom"), size=96)


def header(path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def lung_mask(rows: int, cols: int) -> np.ndarray:
    yy, xx = np.mgrid[:rows, :cols]
    left = ((yy - rows * 0.5) / (rows * 0.3)) ** 2 + ((xx - cols * 0.3) / (cols * 0.12)) ** 2 < 1
    right = ((yy - rows * 0.5) / (rows * 0.3)) ** 2 + ((xx - cols * 0.7) / (cols * 0.12)) ** 2 < 1
    return (left | right).astype(np.uint8)


@pytest.mark.parametrize("variant", [v.name for v in FIXTURE_VARIANTS])
def test_binary_seg_round_trip(fixtures, tmp_path, variant):
    source = header(fixtures[variant])
    mask = lung_mask(source.Rows, source.Columns)
    path = write_segmentation(source, mask, tmp_path, ALGORITHM)
    assert path.name == f"{source.SOPInstanceUID}.dcm"
    np.testing.assert_array_equal(read_segmentation_mask(path), mask)
    seg = hd.seg.segread(path)
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    assert "not for clinical use" in seg.SeriesDescription.lower()
    assert [uid for *_, uid in seg.get_source_image_uids()] == [source.SOPInstanceUID]
    assert seg.PatientID == source.PatientID


def test_seg_content(fixtures, tmp_path):
    source = header(fixtures["cr_mono1_12bit_explicit"])  # a MONOCHROME1 CR source
    seg = hd.seg.segread(write_segmentation(source, lung_mask(source.Rows, source.Columns), tmp_path, ALGORITHM))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.SegmentationType == "BINARY"
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "Lung" and segment.SegmentAlgorithmType == "AUTOMATIC"
    prop = segment.SegmentedPropertyTypeCodeSequence[0]
    cat = segment.SegmentedPropertyCategoryCodeSequence[0]
    assert (prop.CodeValue, prop.CodingSchemeDesignator) == ("39607008", "SCT")
    assert (cat.CodeValue, cat.CodeMeaning) == ("91723000", "Anatomical Structure")
    algo = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("chest-xray-lung-seg", "7")
    family = algo.AlgorithmFamilyCodeSequence[0]
    assert (family.CodeValue, family.CodeMeaning) == ("123110", "Artificial Intelligence")  # DCM; 123109 = Manual
    assert seg.Manufacturer == "xray-seg-pipeline" and seg.ManufacturerModelName == "chest-xray-lung-seg"
    assert any(v.startswith("highdicom") for v in seg.SoftwareVersions)
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_fractional_seg_carries_probabilities(fixtures, tmp_path):
    source = header(fixtures["dx_mono2_16bit_jpeg2000"])
    rng = np.random.default_rng(0)
    prob = rng.random((source.Rows, source.Columns)).astype(np.float32)
    path = write_segmentation(source, prob > 0.5, tmp_path, ALGORITHM, prob=prob, fractional=True)
    back = read_segmentation_mask(path)
    assert back.dtype == np.float32
    assert np.abs(back - prob).max() <= 0.5 / 255 + 1e-6
    assert hd.seg.segread(path).SegmentationType == "FRACTIONAL"


@pytest.mark.parametrize("variant", ["dx_mono2_12bit_pixelspacing_nofor", "dx_mono2_12bit_pixelspacing_for"])
def test_pixel_spacing_trap(fixtures, tmp_path, monkeypatch, variant):
    """PixelSpacing without SliceThickness (with or without a FoR) breaks segread unless handled."""
    source = header(fixtures[variant])
    assert "PixelSpacing" in source and "SliceThickness" not in source
    mask = lung_mask(source.Rows, source.Columns)
    fixed = write_segmentation(source, mask, tmp_path / "fixed", ALGORITHM)
    np.testing.assert_array_equal(read_segmentation_mask(fixed), mask)
    assert "PixelSpacing" in source  # the caller's dataset is untouched
    monkeypatch.setattr(seg_module, "_source_for_highdicom", lambda ds: ds)  # highdicom as is
    broken = write_segmentation(source, mask, tmp_path / "raw", ALGORITHM)
    with pytest.raises(AttributeError, match="Pixel Measures"):
        hd.seg.segread(broken)


def test_empty_mask_deterministic_uids_and_shape_check(fixtures, tmp_path):
    source = header(fixtures["dx_mono2_12bit_explicit"])
    empty = np.zeros((source.Rows, source.Columns), np.uint8)
    first = write_segmentation(source, empty, tmp_path / "a", ALGORITHM)
    second = write_segmentation(source, empty, tmp_path / "b", ALGORITHM)
    assert read_segmentation_mask(first).sum() == 0
    a, b = pydicom.dcmread(first), pydicom.dcmread(second)
    assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)
    with pytest.raises(ValueError, match="does not match"):
        build_segmentation(source, empty[:-1], ALGORITHM)
    with pytest.raises(ValueError, match="not for clinical use"):
        AlgorithmInfo(series_description="Lung segmentation")
