"""Kill a real ``xray-seg predict`` process midway (SIGKILL), rerun the same command, check it resumed cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.cli import main
from pipeline.dicom import FixtureVariant, make_fixture_set, read_segmentation_mask
from pipeline.dicom.manifest import JOURNAL_DIR
from pipeline.networks import get_network

from xray_test_paths import TINY_BASIC_UNET

TINY = TINY_BASIC_UNET
N_FILES = 30


def journal_rows(out: Path) -> list[dict]:
    rows = []
    for part in sorted((out / JOURNAL_DIR).glob("*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


@pytest.mark.timeout(240)
def test_resume_after_sigkill(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save(get_network("basic_unet", **TINY).state_dict(), checkpoint)
    variants = [FixtureVariant(f"film{i:02d}", {"bits_stored": 12 + 4 * (i % 2)}, source=i) for i in range(N_FILES)]
    make_fixture_set(tmp_path / "in", size=160, variants=variants)
    out = tmp_path / "out"
    args = [
        "predict", str(tmp_path / "in"), "--out", str(out), "--model", str(checkpoint),
        "--override", "image_size=64", "--override", f"network_kwargs={TINY}",
        "--batch-size", "1", "--workers", "0", "--writers", "0", "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while len(journal_rows(out)) < 3:  # the first outputs (and their journal rows) are on disk
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # a real kill: no cleanup handlers, files in flight stay as they are
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    before = journal_rows(out)
    assert 0 < len(before) < N_FILES, "the run was not interrupted midway"
    assert not (out / "manifest.csv").exists()  # the manifest is only written at the end
    # more damage a crash can leave: a half-written journal line, a stale temporary file, and an output gone missing
    with open(out / JOURNAL_DIR / "part-rank0.jsonl", "ab") as f:
        f.write(b'{"path": "/half/written", "sta')
    (out / "seg" / ".1.2.3.dcm.abcd.partial").write_bytes(b"partial")
    lost = before[0]
    (out / lost["mask_png"]).unlink()
    finished_seg_mtimes = {r["path"]: (out / r["seg"]).stat().st_mtime_ns for r in before[1:]}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocess; a shared 2-core machine thrashes with more
    try:
        assert main(args) == 0  # the same command again
    finally:
        torch.set_num_threads(threads)

    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == N_FILES and len({r["path"] for r in rows}) == N_FILES
    assert all(r["status"] == "ok" for r in rows)
    assert not list(out.rglob("*.partial*"))
    counts: dict[str, int] = {}
    for row in journal_rows(out):
        counts[row["path"]] = counts.get(row["path"], 0) + 1
    assert counts[lost["path"]] == 2  # redone: its PNG was missing
    for path in finished_seg_mtimes:
        assert counts[path] == 1  # finished before the kill: not redone ...
        assert (out / next(r["seg"] for r in rows if r["path"] == path)).stat().st_mtime_ns == finished_seg_mtimes[path]
    assert all(counts[r["path"]] == 1 for r in rows if r["path"] not in {b["path"] for b in before})
    for row in rows:  # ... and every output is complete
        mask = np.asarray(Image.open(out / row["mask_png"])) // 255
        np.testing.assert_array_equal(read_segmentation_mask(out / row["seg"]), mask)
        assert (out / row["overlay"]).is_file()
