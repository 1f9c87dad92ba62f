"""``xray-seg predict`` over pydicom test files, generated DX/CR files and broken files: statuses, reasons, outputs."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_files

from pipeline.cli import build_parser, main
from pipeline.dicom import (
    load_source_image,
    default_source_images,
    make_fixture_set,
    make_radiograph_dicom,
    read_segmentation_mask,
)
from pipeline.inference import BatchRunner, load_predictor
from pipeline.networks import get_network

from xray_test_paths import TINY_BASIC_UNET

TINY = TINY_BASIC_UNET
OVERRIDES = ["--override", "image_size=64", "--override", f"network_kwargs={TINY}"]
PATIENT_NAMES = ("SYNTHETIC^PATIENT", "Doe^Archibald")


def make_bad_files(folder: Path, image: np.ndarray) -> None:
    """One file for each way a PACS export goes wrong."""
    folder.mkdir(parents=True)
    (folder / "zero.dcm").write_bytes(b"")
    (folder / "text.dcm").write_text("Patient list, not a DICOM file\n")
    path = make_radiograph_dicom(image, folder / "truncated.dcm", bits_stored=16)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - image.size])  # cut inside the pixel data, as an interrupted transfer does
    ds = pydicom.dcmread(make_radiograph_dicom(image, folder / "nopixels.dcm"))
    del ds.PixelData
    ds.save_as(folder / "nopixels.dcm")
    ds = pydicom.dcmread(make_radiograph_dicom(image, folder / "rgb.dcm"))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.repeat(image[..., None], 3, axis=2).tobytes()
    ds.save_as(folder / "rgb.dcm")
    ds = pydicom.dcmread(make_radiograph_dicom(image, folder / "multiframe.dcm"))
    ds.NumberOfFrames = 2
    ds.PixelData = np.stack([image, image]).astype(np.uint16).tobytes()
    ds.save_as(folder / "multiframe.dcm")
    ds = pydicom.dcmread(make_radiograph_dicom(image, folder / "mpeg2.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: no decoder for a radiograph
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds.save_as(folder / "mpeg2.dcm")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(get_network("basic_unet", **TINY).state_dict(), path)
    return path


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(scope="module")
def batch(tmp_path_factory, checkpoint):
    root = tmp_path_factory.mktemp("batch")
    inputs = root / "inputs"
    fixtures = make_fixture_set(inputs / "fixtures", size=128)
    image = load_source_image(default_source_images()[0], 96)
    make_bad_files(inputs / "bad", image)
    (inputs / "zz_dup").mkdir()
    shutil.copy(fixtures["dx_mono2_12bit_explicit"], inputs / "zz_dup" / "copy.dcm")  # same SOPInstanceUID
    (inputs / "plain").mkdir()
    Image.fromarray(image).save(inputs / "plain" / "film.png")
    Image.fromarray(image).save(inputs / "plain" / "film.jpg", quality=95)
    (inputs / "notes").mkdir()
    (inputs / "notes" / "README.txt").write_text("export notes\n")
    out = root / "out"
    pydicom_inputs = get_testdata_files()  # files *and* folders: every file must still get exactly one row
    records = _Records()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the DataLoader workers decode on the other core
    root_logger, pipeline_logger = logging.getLogger(), logging.getLogger("pipeline")
    old_levels = root_logger.level, pipeline_logger.level
    root_logger.addHandler(records)
    root_logger.setLevel(logging.INFO)
    pipeline_logger.setLevel(logging.DEBUG)
    try:
        rc = main([
            "predict", str(inputs), *pydicom_inputs, "--out", str(out), "--model", str(checkpoint), *OVERRIDES,
            "--outputs", "seg,png,nifti,overlay", "--batch-size", "4", "--workers", "2", "--strict",
        ])
    finally:
        torch.set_num_threads(threads)
        root_logger.removeHandler(records)
        root_logger.setLevel(old_levels[0])
        pipeline_logger.setLevel(old_levels[1])
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    unique_files = {str(Path(p).resolve()) for p in pydicom_inputs if os.path.isfile(p)}
    unique_files |= {str(p.resolve()) for p in inputs.rglob("*") if p.is_file()}
    return {"rc": rc, "out": out, "inputs": inputs, "rows": rows, "by_path": {r["path"]: r for r in rows},
            "files": unique_files, "logs": "\n".join(records.lines), "fixtures": fixtures}


def rel(batch, row) -> str:
    path = Path(row["path"])
    return path.relative_to(batch["inputs"]).as_posix() if batch["inputs"] in path.parents else path.name


def test_exactly_one_row_per_input_file(batch):
    paths = [r["path"] for r in batch["rows"]]
    assert len(paths) == len(set(paths))
    assert set(paths) == batch["files"]
    with open(batch["out"] / "manifest.csv", newline="") as f:
        assert [r["path"] for r in csv.DictReader(f)] == paths
    assert {r["status"] for r in batch["rows"]} <= {"ok", "skipped", "error"}
    assert batch["rc"] == 3  # --strict: some files are broken on purpose


def test_generated_and_broken_files_get_the_right_status(batch):
    got = {rel(batch, r): (r["status"], r["code"]) for r in batch["rows"] if batch["inputs"] in Path(r["path"]).parents}
    for name in batch["fixtures"]:
        expected = ("skipped", "lateral") if "lateral" in name else ("ok", "selected")
        assert got[f"fixtures/{name}.dcm"] == expected, name
    assert got["bad/zero.dcm"] == ("error", "empty")
    assert got["bad/text.dcm"] == ("error", "not_dicom")
    assert got["bad/truncated.dcm"] == ("error", "truncated")
    assert got["bad/nopixels.dcm"] == ("error", "no_pixel_data")
    assert got["bad/rgb.dcm"] == ("error", "colour")
    assert got["bad/multiframe.dcm"] == ("error", "multi_frame")
    assert got["bad/mpeg2.dcm"] == ("error", "unsupported_syntax")
    assert got["zz_dup/copy.dcm"] == ("skipped", "duplicate")
    assert got["plain/film.png"] == ("ok", "selected") and got["plain/film.jpg"] == ("ok", "selected")
    assert got["notes/README.txt"] == ("skipped", "not_image")
    assert all(r["reason"] for r in batch["rows"])


def test_pydicom_test_files_get_the_right_status(batch):
    rows = {r["path"].split("test_files/", 1)[1]: r for r in batch["rows"] if "test_files/" in r["path"]}
    assert len(rows) == len([p for p in get_testdata_files() if os.path.isfile(p)])
    expected = {
        "no_meta.dcm": ("error", "not_dicom"),  # starts with a stray byte: not parseable
        "dicomdirtests/77654033/CR1/6154": ("skipped", "body_part"),  # CR, but a C-spine
        "dicomdirtests/77654033/CR2/6247": ("skipped", "body_part"),
        "CT_small.dcm": ("skipped", "modality"),  # TIFF header in the preamble, still DICOM
        "MR_small_RLE.dcm": ("skipped", "modality"),
        "MR_truncated.dcm": ("skipped", "modality"),
        "dicomdirtests/DICOMDIR": ("skipped", "not_image"),
        "liver_1frame.dcm": ("skipped", "not_image"),  # a SEG
        "reportsi.dcm": ("skipped", "not_image"),
        "waveform_ecg.dcm": ("skipped", "not_image"),
        "rtplan.dcm": ("skipped", "not_image"),
        "SC_rgb_jpeg.dcm": ("skipped", "secondary"),
        "JPEG2000.dcm": ("skipped", "secondary"),
        "README.txt": ("skipped", "not_image"),
        "zipMR.gz": ("skipped", "not_image"),
    }
    for name, status_code in expected.items():
        assert (rows[name]["status"], rows[name]["code"]) == status_code, (name, rows[name]["reason"])
    for name, row in rows.items():
        if name != "no_meta.dcm":
            assert row["status"] == "skipped", (name, row["reason"])  # nothing else is a chest radiograph


def test_every_seg_reads_back_equal_to_the_mask(batch):
    out = batch["out"]
    ok = [r for r in batch["rows"] if r["status"] == "ok"]
    assert len(ok) == len(batch["fixtures"]) - 1 + 2  # all fixtures but the lateral, plus PNG and JPEG
    for row in ok:
        mask = np.asarray(Image.open(out / row["mask_png"])) // 255
        assert mask.shape == (row["rows"], row["cols"])
        assert int(mask.sum()) == row["lung_area_px"]
        nifti = np.asarray(nib.load(out / row["mask_nifti"]).dataobj).T
        np.testing.assert_array_equal(nifti, mask)
        assert (out / row["overlay"]).is_file()
        assert 0.5 <= row["confidence"] <= 1.0 and isinstance(row["qc_flags"], list)
        if row["format"] == "dicom":
            np.testing.assert_array_equal(read_segmentation_mask(out / row["seg"], row["sop_instance_uid"]), mask)
        else:
            assert not row["seg"]
        if row["spacing_mm"]:
            sy, sx = row["spacing_mm"]
            assert row["lung_area_cm2"] == pytest.approx(row["lung_area_px"] * sy * sx / 100)
        else:  # PNG/JPEG, or a DICOM without pixel spacing
            assert row["lung_area_cm2"] is None


def test_monochrome1_and_monochrome2_give_the_same_mask(batch):
    ok = [r for r in batch["rows"] if r["status"] == "ok"]
    masks = {rel(batch, r): np.asarray(Image.open(batch["out"] / r["mask_png"])) for r in ok}
    pairs = [n for n in batch["fixtures"] if "mono1" in n and "pixelspacing" not in n]
    assert len(pairs) == 8
    for name in pairs:
        twin = name.replace("mono1", "mono2").replace("cr_", "dx_")
        np.testing.assert_array_equal(masks[f"fixtures/{name}.dcm"], masks[f"fixtures/{twin}.dcm"])


def test_outputs_are_named_by_uid_and_logs_hold_no_names(batch):
    out = batch["out"]
    uids = {r["sop_instance_uid"] for r in batch["rows"] if r["status"] == "ok"}
    for folder in ("seg", "masks", "overlays"):
        for path in (out / folder).iterdir():
            assert path.name.split(".dcm")[0].split(".png")[0].split(".nii.gz")[0] in uids, path.name
    assert not list(out.rglob("*.partial*"))
    logs = batch["logs"]
    assert "error [truncated]" in logs  # the log does report problems ...
    for secret in PATIENT_NAMES + ("dx_mono2", "truncated.dcm", str(batch["inputs"])):
        assert secret not in logs  # ... by file hash and UID only


def test_real_cr_files_with_permissive_rules(tmp_path, checkpoint):
    """pydicom's 16x16 MONOCHROME1 CRs (C-spine) go through when the body-part rule is lifted."""
    crs = sorted(p for p in get_testdata_files() if "/CR" in p and os.path.isfile(p))
    predictor = load_predictor(checkpoint, overrides={"image_size": 64, "network_kwargs": TINY}, device="cpu")
    summary = BatchRunner(predictor, tmp_path, selection={"body_parts": []}, workers=0, writers=0).run(crs)
    got = {Path(r["path"]).name: (r["status"], r["code"]) for r in summary.rows}
    assert got == {"6154": ("skipped", "lateral"), "6247": ("ok", "selected"), "6278": ("ok", "selected")}
    for row in summary.rows:
        if row["status"] == "ok":
            mask = np.asarray(Image.open(tmp_path / row["mask_png"])) // 255
            np.testing.assert_array_equal(read_segmentation_mask(tmp_path / row["seg"]), mask)
            assert row["lung_area_cm2"] == pytest.approx(row["lung_area_px"] * 0.01 / 100)  # 0.1 mm pixels


def test_fractional_seg_and_rerun_skips_finished(batch, tmp_path, checkpoint):
    predictor = load_predictor(checkpoint, overrides={"image_size": 64, "network_kwargs": TINY}, device="cpu")
    files = [batch["fixtures"]["dx_mono1_16bit_jpeg-ls"], batch["fixtures"]["cr_mono1_12bit_rle"]]
    runner = BatchRunner(predictor, tmp_path, outputs=("seg", "png"), fractional=True, workers=0, writers=0)
    first = runner.run(files)
    assert first.counts["ok"] == 2 and first.n_segmented == 2
    for row in first.rows:
        prob = read_segmentation_mask(tmp_path / row["seg"])  # FRACTIONAL: probabilities in [0, 1]
        mask = np.asarray(Image.open(tmp_path / row["mask_png"])) // 255
        assert prob.dtype == np.float32 and 0.0 <= prob.min() and prob.max() <= 1.0
        decided = np.abs(prob - predictor.threshold) > 1 / 255  # 8-bit quantisation can flip the borderline
        np.testing.assert_array_equal((prob > predictor.threshold)[decided], mask.astype(bool)[decided])
    second = runner.run(files)  # same settings, same files: nothing to redo
    assert (second.n_segmented, second.n_resumed, second.counts["ok"]) == (0, 2, 2)


def test_help_explains_every_option():
    parser = build_parser()
    predict = parser._subparsers._group_actions[0].choices["predict"]  # noqa: SLF001 - argparse has no public way
    text = predict.format_help()
    for action in predict._actions:  # noqa: SLF001
        assert action.help, action.dest
        for option in action.option_strings:
            assert option in text
    for word in ("manifest", "torchrun", "SOPInstanceUID", "resume", "exit status"):
        assert word.lower() in text.lower()
