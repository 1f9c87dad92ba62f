"""Issue 14, batch items 1-10 and the node's contracts, on real files through the real batch runner.

One hostile export is segmented once (module fixture) and each test checks one promise on the result: duplicates
resolved by decoding (1), invalid header values repaired with nothing leaked (3), a file without file meta (4), a
20000² claim refused before decoding (7), links with rows (8), one-line reasons (10). Separate tests run the
command as a user would where the point needs it: a real full file system (2), ``kill -9`` (5), a read-only output
folder (6); and the manifest that stays cumulative over batches into one folder (the DICOM node's contract).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from pipeline.dicom import (
    FixtureVariant,
    load_journal,
    load_source_image,
    default_source_images,
    make_fixture_set,
    make_radiograph_dicom,
    read_manifest,
    read_segmentation_mask,
)
from pipeline.inference import BatchRunner, load_predictor
from pipeline.networks import get_network

from xray_test_paths import TINY_BASIC_UNET

TINY = TINY_BASIC_UNET
OVERRIDES = ["--override", "image_size=64", "--override", f"network_kwargs={TINY}"]
BIRTH_DATE = "1965-03-12"
NAME = "Planted^Ottoline"
SECRETS = (BIRTH_DATE, "19650312", NAME, "Ottoline", "Planted", "SECRET-ID-77")
SAMPLE_PNG = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample" / "jsrt30"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(get_network("basic_unet", **TINY).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return load_predictor(checkpoint, overrides={"image_size": 64, "network_kwargs": TINY}, device="cpu")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return load_source_image(default_source_images()[0], 96)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {self.format(record)}")


def make_hostile_export(root: Path, image: np.ndarray) -> dict[str, Path]:
    """The hostile export: each file one way an export goes wrong."""
    root.mkdir(parents=True)
    files: dict[str, Path] = {}
    # item 1: a truncated copy sorts *before* the good file with the same SOPInstanceUID, a good copy after it
    good = make_radiograph_dicom(image, root / "b_good.dcm", uid_seed="shared", bits_stored=16)
    data = good.read_bytes()
    (root / "a_truncated.dcm").write_bytes(data[: len(data) - image.size])
    shutil.copy(good, root / "c_copy.dcm")
    files.update(good=good, truncated=root / "a_truncated.dcm", copy=root / "c_copy.dcm")
    # item 3: a birth date highdicom refuses, a planted name and ID
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns (with the value) while the *test* writes it
        files["bad_header"] = make_radiograph_dicom(image, root / "bad_header.dcm", patient_name=NAME,
                                                    patient_id="SECRET-ID-77", extra={"PatientBirthDate": BIRTH_DATE})
    # item 4: a bare implicit-VR dataset without file meta
    ds = pydicom.dcmread(make_radiograph_dicom(image, root / "tmp_meta.dcm", uid_seed="bare"))
    bare = pydicom.Dataset()
    bare.update(ds)
    pydicom.dcmwrite(root / "bare_no_meta", bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    (root / "tmp_meta.dcm").unlink()
    files["bare"] = root / "bare_no_meta"
    # item 7: a tiny RLE file claiming 20000 x 20000 pixels
    huge = make_radiograph_dicom(image, root / "huge_claim.dcm", transfer_syntax="rle", uid_seed="huge")
    ds = pydicom.dcmread(huge)
    ds.Rows = ds.Columns = 20000
    ds.save_as(huge)
    files["huge"] = huge
    # item 8: a dangling link and a link loop
    os.symlink(root / "vanished.dcm", root / "dangling.dcm")
    os.symlink(root / "loop", root / "loop")
    files.update(dangling=root / "dangling.dcm", loop=root / "loop")
    # item 10: pydicom's multi-line "no decoder" message
    ds = pydicom.dcmread(make_radiograph_dicom(image, root / "mpeg2.dcm", uid_seed="mpeg"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds.save_as(root / "mpeg2.dcm")
    files["mpeg2"] = root / "mpeg2.dcm"
    # a real PNG from the embedded sample
    png = sorted(SAMPLE_PNG.rglob("*.png"))[0]
    shutil.copy(png, root / "film.png")
    files["png"] = root / "film.png"
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, predictor, image):
    root = tmp_path_factory.mktemp("hostile")
    files = make_hostile_export(root / "export", image)
    out = root / "out"
    records = _Records()
    root_logger, pipeline_logger = logging.getLogger(), logging.getLogger("pipeline")
    old = root_logger.level, pipeline_logger.level
    root_logger.addHandler(records)
    root_logger.setLevel(logging.DEBUG)  # everything, library debug included
    try:
        runner = BatchRunner(predictor, out, workers=0, writers=1, batch_size=4, progress=False)
        summary = runner.run([root / "export"])
        again = runner.run([root / "export"])
    finally:
        root_logger.removeHandler(records)
        root_logger.setLevel(old[0])
        pipeline_logger.setLevel(old[1])
    by_name = {Path(r["path"]).name: r for r in summary.rows}
    return {"files": files, "out": out, "summary": summary, "again": again, "rows": by_name,
            "logs": "\n".join(records.lines), "manifest": (out / "manifest.jsonl").read_text()
            + (out / "manifest.csv").read_text()}


def test_every_path_gets_exactly_one_row(hostile):
    names = sorted(hostile["rows"])
    assert names == sorted(p.name for p in hostile["files"].values())
    assert hostile["summary"].n_manifest_rows == len(names)


def test_1_decodable_copy_wins_over_a_truncated_one(hostile):
    rows, files = hostile["rows"], hostile["files"]
    assert (rows["b_good.dcm"]["status"], rows["b_good.dcm"]["code"]) == ("ok", "selected")
    assert (rows["a_truncated.dcm"]["status"], rows["a_truncated.dcm"]["code"]) == ("error", "truncated")
    copy = rows["c_copy.dcm"]
    assert (copy["status"], copy["code"], copy["duplicate_of"]) == ("skipped", "duplicate", str(files["good"]))
    assert rows["b_good.dcm"]["file_id"] in copy["reason"]
    seg = hostile["out"] / rows["b_good.dcm"]["seg"]
    mask = np.asarray(Image.open(hostile["out"] / rows["b_good.dcm"]["mask_png"])) // 255
    np.testing.assert_array_equal(read_segmentation_mask(seg), mask)
    again = hostile["again"]  # the rerun finds everything finished: the good file is not redone, nor the others
    assert (again.n_segmented, again.n_resumed) == (0, len(hostile["rows"]) - 2)  # the two links are re-checked


def test_3_invalid_header_value_repaired_and_never_shown(hostile):
    row = hostile["rows"]["bad_header.dcm"]
    assert (row["status"], row["code"]) == ("ok", "selected")
    out = hostile["out"]
    seg = pydicom.dcmread(out / row["seg"])
    assert seg.PatientBirthDate == "19650312"
    assert (out / row["mask_png"]).is_file() and (out / row["overlay"]).is_file()
    assert "PatientBirthDate" in hostile["logs"]  # the warning names the attribute ...
    for secret in SECRETS:  # ... never the value, at any level, nor in the manifest
        assert secret not in hostile["logs"], secret
        assert secret not in hostile["manifest"], secret


def test_4_dataset_without_file_meta_is_segmented(hostile):
    row = hostile["rows"]["bare_no_meta"]
    assert (row["status"], row["format"]) == ("ok", "dicom"), row["reason"]
    mask = np.asarray(Image.open(hostile["out"] / row["mask_png"])) // 255
    np.testing.assert_array_equal(read_segmentation_mask(hostile["out"] / row["seg"]), mask)


def test_7_huge_claim_refused_before_decoding(hostile):
    row = hostile["rows"]["huge_claim.dcm"]
    assert (row["status"], row["code"]) == ("error", "too_large")
    assert "20000 x 20000" in row["reason"] and "--max-pixels" in row["reason"]
    assert row["seconds_read"] < 5


def test_8_links_get_rows(hostile):
    rows = hostile["rows"]
    assert (rows["dangling.dcm"]["status"], rows["dangling.dcm"]["code"]) == ("error", "broken_link")
    assert (rows["loop"]["status"], rows["loop"]["code"]) == ("error", "link_loop")


def test_10_reasons_and_log_lines_are_one_line(hostile):
    row = hostile["rows"]["mpeg2.dcm"]
    assert (row["status"], row["code"]) == ("error", "unsupported_syntax")
    for r in hostile["rows"].values():
        assert r["reason"] and "\n" not in r["reason"] and len(r["reason"]) <= 240, r["reason"]
    warnings_up = [line for line in hostile["logs"].splitlines() if line.startswith(("WARNING", "ERROR", "INFO"))]
    assert any("unsupported_syntax" in line for line in warnings_up)
    assert "Traceback" not in hostile["logs"]
    with open(hostile["out"] / "manifest.csv", newline="") as f:
        assert len(f.read().splitlines()) == len(hostile["rows"]) + 1  # no cell spans lines


# ---- (a) the manifest stays cumulative: one folder, batch after batch ----------------------------------------------
def test_manifest_is_cumulative_over_runs(tmp_path, predictor, image):
    paths = [make_radiograph_dicom(image, tmp_path / "in" / f"im{i}.dcm") for i in range(3)]
    out = tmp_path / "out"
    runner = BatchRunner(predictor, out, workers=0, writers=0, progress=False)
    first = runner.run(paths[:1])
    second = runner.run(paths[1:])
    assert (first.n_manifest_rows, second.n_manifest_rows) == (1, 3)
    assert [Path(r["path"]).name for r in second.rows] == ["im1.dcm", "im2.dcm"]  # the run's own inputs
    rows, source = read_manifest(out)
    assert source == "manifest.jsonl" and [Path(r["path"]).name for r in rows] == ["im0.dcm", "im1.dcm", "im2.dcm"]
    (out / "manifest.jsonl").unlink()
    rows, source = read_manifest(out)
    assert source == "manifest.csv" and len(rows) == 3 and rows[0]["status"] == "ok"
    (out / "manifest.csv").unlink()
    rows, source = read_manifest(out)
    assert source.startswith("journal") and len(rows) == 3
    seg_uids = {pydicom.dcmread(p).SOPInstanceUID for p in (out / "seg").iterdir()}
    BatchRunner(predictor, out, workers=0, writers=0, progress=False, resume=False).run(paths)  # a full redo
    assert {pydicom.dcmread(p).SOPInstanceUID for p in (out / "seg").iterdir()} == seg_uids  # the same SEGs


# ---- item 2: a real full disk; transient errors are redone, failed images leave no SEG ----------------------------
def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return result.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_2_full_disk_then_rerun_finishes(tmp_path, predictor, monkeypatch):
    variants = [FixtureVariant(f"film{i:02d}", {"bits_stored": 16}, source=i) for i in range(12)]
    make_fixture_set(tmp_path / "in", size=256, variants=variants)
    out = tmp_path / "out"
    mounted = _mount_tmpfs(out, "size=300k")
    if not mounted:
        print("WARNING: cannot mount a tmpfs here (needs root and mount): injecting ENOSPC at the overlay writer",
              file=sys.stderr)
        import errno

        from pipeline.inference import outputs as outputs_module

        kind = outputs_module.OUTPUT_KINDS["overlay"]
        calls = {"n": 0}

        def failing(path, data, _write=kind.write):
            calls["n"] += 1
            if calls["n"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return _write(path, data)

        monkeypatch.setitem(outputs_module.OUTPUT_KINDS, "overlay",
                            outputs_module.OutputKind(**{**kind.__dict__, "write": failing}))
    try:
        runner = BatchRunner(predictor, out, workers=0, writers=0, progress=False)
        try:
            first = runner.run([tmp_path / "in"])
            rows = first.rows
        except OSError:  # the manifest itself did not fit: the journal holds what was recorded
            rows = list(load_journal(out).values())
        failed = [r for r in rows if r["status"] == "error"]
        ok = [r for r in rows if r["status"] == "ok"]
        assert failed and all(r["code"] == "write_failed" for r in failed), [r["code"] for r in rows]
        assert len(ok) < 12
        segs = {p.name for p in (out / "seg").glob("*.dcm")} if (out / "seg").is_dir() else set()
        assert segs == {Path(r["seg"]).name for r in ok}  # no SEG outlives a failed image
        assert not list(out.rglob("*.partial*"))

        if mounted:
            subprocess.run(["mount", "-o", "remount,size=8m", str(out)], check=True)
        else:
            monkeypatch.undo()
        second = BatchRunner(predictor, out, workers=0, writers=0, progress=False).run([tmp_path / "in"])
        assert second.counts == {"ok": 12, "skipped": 0, "error": 0}
        assert second.n_segmented == 12 - len(ok)  # the failures are redone, the finished files are not
        assert len(list((out / "seg").glob("*.dcm"))) == 12
    finally:
        if mounted:
            _umount(out)


# ---- item 5: kill -9 of the command: its DataLoader workers die with it --------------------------------------------
def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has died (its reaper may be slow)


@pytest.mark.slow
@pytest.mark.timeout(480)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_5_workers_die_with_a_killed_parent(tmp_path, checkpoint):
    variants = [FixtureVariant(f"film{i:02d}", {}, source=i % 4) for i in range(40)]
    make_fixture_set(tmp_path / "in", size=192, variants=variants)
    args = [sys.executable, "-m", "pipeline.cli", "predict", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
            "--model", str(checkpoint), *OVERRIDES, "--workers", "2", "--batch-size", "1", "--no-progress"]
    proc = subprocess.Popen(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400  # python + torch start-up on a loaded 2-core machine
        workers: list[int] = []
        while len(workers) < 2:
            assert proc.poll() is None, "the command ended before its workers started"
            assert time.monotonic() < deadline, "no DataLoader workers appeared"
            workers = [p for p in _children(proc.pid) if _alive(p)]
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in workers if _alive(p)], "DataLoader workers outlived the killed command"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _children(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---- item 6: a read-only output folder: one clear line before the model loads ---------------------------------------
def test_6_read_only_output_folder_fails_fast(tmp_path, image):
    make_radiograph_dicom(image, tmp_path / "in" / "a.dcm")
    out = tmp_path / "ro"
    mounted = _mount_tmpfs(out, "ro,size=64k")
    if not mounted:
        out.mkdir(exist_ok=True)
        out.chmod(0o555)
        if os.access(out, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        # a model path that does not exist: if the command loaded the model first, it would complain about that
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "predict", str(tmp_path / "in"), "--out", str(out),
             "--model", str(tmp_path / "no-such-model.pt")],
            capture_output=True, text=True, timeout=300)
    finally:
        if mounted:
            _umount(out)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write to the output folder" in lines[0] and "--out" in lines[0], lines
    assert "read-only" in lines[0] or "permission" in lines[0]
    assert "Traceback" not in result.stderr and "no-such-model" not in result.stderr
