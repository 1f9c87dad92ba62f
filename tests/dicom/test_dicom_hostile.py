"""Hostile and odd DICOM input, file by file: no file meta, impossible sizes, invalid header values, links, SEG
conformance (PatientOrientation, checked with dicom3tools' ``dciodvfy`` when installed) and stable SEG UIDs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipeline.dicom import (
    AlgorithmInfo,
    SelectionRules,
    build_segmentation,
    default_source_images,
    discover_inputs,
    load_source_image,
    make_radiograph_dicom,
    one_line,
    read_dicom,
    read_segmentation_mask,
    redact,
    select_file,
    write_segmentation,
)
from pipeline.io.limits import DEFAULT_PIXEL_LIMIT, PIXEL_LIMIT_ENV, PixelLimitError, check_pixel_count

BIRTH_DATE = "1965-03-12"
NAME = "Hostile^Wilhelmina"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return load_source_image(default_source_images()[0], 96)


def write_without_file_meta(source: Path, out: Path) -> Path:
    """The bare implicit-VR little-endian dataset some archives write: no preamble, no DICM, no group 0002."""
    ds = pydicom.dcmread(source)
    bare = pydicom.Dataset()
    bare.update(ds)
    pydicom.dcmwrite(out, bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert out.read_bytes()[128:132] != b"DICM" and b"\x02\x00\x10\x00" not in out.read_bytes()[:256]
    return out


def write_huge_claim(tmp: Path, image: np.ndarray, side: int = 20000) -> Path:
    """A tiny RLE file whose header claims ``side``² pixels (the pixel data is that of a small image)."""
    path = make_radiograph_dicom(image, tmp / "huge_claim.dcm", transfer_syntax="rle")
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = side
    ds.save_as(path)
    assert path.stat().st_size < 64_000
    return path


# ---- item 4: files without a file meta group ----------------------------------------------------------------------
def test_dataset_without_file_meta_is_read(tmp_path, image):
    good = make_radiograph_dicom(image, tmp_path / "good.dcm", bits_stored=12)
    bare = write_without_file_meta(good, tmp_path / "bare")
    expected = read_dicom(good)
    got = read_dicom(bare)
    np.testing.assert_array_equal(got.pixels, expected.pixels)
    assert got.meta["TransferSyntaxUID"] == "1.2.840.10008.1.2"  # implicit VR little endian, as detected
    scan = select_file(bare, SelectionRules())
    assert (scan.status, scan.format) == ("selected", "dicom")


# ---- item 7: the pixel limit ----------------------------------------------------------------------------------------
def test_check_pixel_count_default_env_and_argument(monkeypatch):
    monkeypatch.delenv(PIXEL_LIMIT_ENV, raising=False)
    assert check_pixel_count(4300, 4300) == 4300 * 4300 < DEFAULT_PIXEL_LIMIT
    with pytest.raises(PixelLimitError, match="20000 x 20000.*64.0 Mpx"):
        check_pixel_count(20000, 20000)
    with pytest.raises(PixelLimitError, match="frames"):
        check_pixel_count(4000, 4000, frames=10)
    assert check_pixel_count(20000, 20000, limit=0) == 400_000_000  # 0 = off
    with pytest.raises(PixelLimitError):
        check_pixel_count(300, 300, limit=50_000)
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "50000")
    with pytest.raises(PixelLimitError, match=PIXEL_LIMIT_ENV):
        check_pixel_count(300, 300)
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match=PIXEL_LIMIT_ENV):
        check_pixel_count(300, 300)


def test_huge_claim_is_refused_before_decoding(tmp_path, image):
    path = write_huge_claim(tmp_path, image)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(PixelLimitError, match="20000 x 20000"):
            read_dicom(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB allocated: the decoder ran"  # decoding would allocate 800 MB
    assert time.perf_counter() - t0 < 5
    assert read_dicom(make_radiograph_dicom(image, tmp_path / "ok.dcm", transfer_syntax="rle")).shape == (96, 96)


# ---- item 3: header values highdicom refuses ---------------------------------------------------------------------
def test_invalid_header_values_are_repaired_without_naming_them(tmp_path, image, caplog):
    with pytest.warns(UserWarning):  # pydicom itself warns (with the value) when the test *writes* the bad values
        path = make_radiograph_dicom(image, tmp_path / "bad.dcm", patient_name=NAME,
                                     extra={"PatientBirthDate": BIRTH_DATE, "StudyTime": "10:15:00",
                                            "PatientSex": "female, probably"})
    header = pydicom.dcmread(path, stop_before_pixels=True)
    mask = (image > 128).astype(np.uint8)
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    out = write_segmentation(header, mask, tmp_path / "seg", AlgorithmInfo(name="m", version="1"))
    np.testing.assert_array_equal(read_segmentation_mask(out), mask)
    seg = pydicom.dcmread(out)
    assert seg.PatientBirthDate == "19650312" and seg.StudyTime == "101500"  # repaired
    assert seg.PatientSex == ""  # not repairable: left empty (Type 2)
    assert "PatientBirthDate" in caplog.text and "PatientSex" in caplog.text
    for secret in (BIRTH_DATE, "19650312", "female", NAME, "Wilhelmina", "10:15:00"):
        assert secret not in caplog.text


# ---- item 9: PatientOrientation (General Image module, Type 2C) ----------------------------------------------------
def _dciodvfy(path: Path) -> str:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


@pytest.mark.parametrize("orientation", [["L", "F"], None])
def test_seg_has_patient_orientation(tmp_path, image, orientation):
    path = make_radiograph_dicom(image, tmp_path / "src.dcm")
    if orientation is None:
        ds = pydicom.dcmread(path)
        del ds.PatientOrientation
        ds.save_as(path)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    out = write_segmentation(header, (image > 128).astype(np.uint8), tmp_path / "seg.dcm", AlgorithmInfo())
    seg = pydicom.dcmread(out)
    assert "PatientOrientation" in seg
    assert list(seg.PatientOrientation or []) == (orientation or [])
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed: checked by pydicom read-back only")
    report = _dciodvfy(out)
    assert "PatientOrientation" not in report, report
    assert "Error" not in report or all("PatientOrientation" not in line for line in report.splitlines())


# ---- (b): one SEG identity per source image, model version and output settings -----------------------------------
def test_seg_uids_are_deterministic(tmp_path, image):
    header = pydicom.dcmread(make_radiograph_dicom(image, tmp_path / "src.dcm"), stop_before_pixels=True)
    mask = (image > 128).astype(np.uint8)
    prob = image.astype(np.float32) / 255
    v1, v2 = AlgorithmInfo(name="m", version="1"), AlgorithmInfo(name="m", version="2")
    first = build_segmentation(header, mask, v1)
    again = build_segmentation(header, 1 - mask, v1)  # a retry (even with another result) replaces the same SEG
    assert first.SOPInstanceUID == again.SOPInstanceUID and first.SeriesInstanceUID == again.SeriesInstanceUID
    assert build_segmentation(header, mask, v2).SOPInstanceUID != first.SOPInstanceUID
    assert build_segmentation(header, mask, v1, prob=prob, fractional=True).SOPInstanceUID != first.SOPInstanceUID


# ---- item 8: links -----------------------------------------------------------------------------------------------
def test_discovery_lists_dangling_links_and_loops(tmp_path, image):
    root = tmp_path / "export"
    (root / "sub").mkdir(parents=True)
    good = make_radiograph_dicom(image, root / "sub" / "good.dcm")
    os.symlink(root / "gone.dcm", root / "dangling.dcm")
    os.symlink(root / "self", root / "self")  # a link to itself: ELOOP
    os.symlink(root, root / "sub" / "up")  # a link to an ancestor folder: a loop if followed
    os.symlink(good, root / "alias.dcm")  # a working link: resolved to its target (one row, de-duplicated)
    found = {str(p) for p in discover_inputs([root])}
    expected = {str(good.resolve()), str(root / "dangling.dcm"), str(root / "self"), str(root / "sub" / "up")}
    assert found == expected
    codes = {Path(p).name: (select_file(p, SelectionRules()).status, select_file(p, SelectionRules()).code)
             for p in found}
    assert codes == {"good.dcm": ("selected", "selected"), "dangling.dcm": ("error", "broken_link"),
                     "self": ("error", "link_loop"), "up": ("skipped", "link_to_folder")}
    assert [str(p) for p in discover_inputs([root / "dangling.dcm"])] == [str(root / "dangling.dcm")]


# ---- item 10: one-line reasons without header values ---------------------------------------------------------------
def test_one_line_and_redact(tmp_path, image):
    text = "Unable to decode:\n  handler A: missing\n\thandler B: missing"
    assert one_line(text) == "Unable to decode: handler A: missing handler B: missing"
    assert len(one_line("x" * 1000)) == 240
    with pytest.warns(UserWarning):
        path = make_radiograph_dicom(image, tmp_path / "a.dcm", patient_name=NAME,
                                     extra={"PatientBirthDate": BIRTH_DATE})
    header = pydicom.dcmread(path, stop_before_pixels=True)
    message = f"Unable to convert '{BIRTH_DATE}' to 'DA' for {NAME} (Wilhelmina) at /data/x.dcm"
    cleaned = redact(message, header, ["/data/x.dcm"])
    for secret in (BIRTH_DATE, NAME, "Wilhelmina", "/data/x.dcm"):
        assert secret not in cleaned
    assert "Unable to convert" in cleaned and "'DA'" in cleaned
