"""``torchrun --nproc_per_node 2`` (gloo, CPU) splits a folder across two processes; same result as one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from pipeline.cli import main
from pipeline.dicom import (
    FIXTURE_VARIANTS,
    default_source_images,
    load_source_image,
    make_fixture_set,
    read_segmentation_mask,
)
from pipeline.networks import get_network

from xray_test_paths import TINY_BASIC_UNET

TINY = TINY_BASIC_UNET
COMPARED = ("status", "code", "reason", "sop_instance_uid", "lung_area_px", "qc_flags", "seg", "mask_png", "overlay")


def manifest(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["path"] for r in rows})
    return {r["path"]: r for r in rows}


@pytest.mark.timeout(300)
def test_torchrun_two_processes_match_one(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "model.pt"
    torch.save(get_network("basic_unet", **TINY).state_dict(), checkpoint)
    inputs = tmp_path / "in"
    variants = [v for v in FIXTURE_VARIANTS if "16bit" in v.name or "lateral" in v.name]
    fixtures = make_fixture_set(inputs, size=96, variants=variants)
    shutil.copy(fixtures["dx_mono2_16bit_rle"], inputs / "zz_copy.dcm")  # a duplicate SOPInstanceUID
    (inputs / "empty.dcm").write_bytes(b"")
    Image.fromarray(load_source_image(default_source_images()[0], 80)).save(inputs / "film.png")
    common = [
        "predict", str(inputs), "--model", str(checkpoint), "--override", "image_size=64",
        "--override", f"network_kwargs={TINY}", "--batch-size", "1", "--workers", "0", "--no-progress",
        # fp32 in every process: the bf16 check runs on each process's first batch, so two ranks can choose
        # differently (with the embedded sample as fixture source, rank 1's first image passes it and rank 0's not)
        "--no-amp",
    ]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torchrun gives each rank one thread: same arithmetic, same masks
    try:
        assert main([*common, "--out", str(tmp_path / "single")]) == 0
    finally:
        torch.set_num_threads(threads)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "pipeline.cli", *common, "--out", str(tmp_path / "dist")],
        env=env, capture_output=True, text=True, timeout=280,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    single, dist = manifest(tmp_path / "single"), manifest(tmp_path / "dist")
    assert single.keys() == dist.keys()
    assert len(single) == len(fixtures) + 3
    for path, row in single.items():
        assert {k: row[k] for k in COMPARED} == {k: dist[path][k] for k in COMPARED}, Path(path).name
    assert {r["rank"] for r in dist.values()} == {0, 1}  # both ranks did work
    parts = sorted(p.name for p in (tmp_path / "dist" / ".journal").iterdir())
    assert parts == ["part-rank0.jsonl", "part-rank1.jsonl"]  # each rank its own manifest part
    assert dist[str((inputs / "zz_copy.dcm").resolve())]["code"] == "duplicate"

    for folder in ("seg", "masks", "overlays"):
        names = sorted(p.name for p in (tmp_path / "single" / folder).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "dist" / folder).iterdir())
        for name in names:
            a, b = tmp_path / "single" / folder / name, tmp_path / "dist" / folder / name
            if folder == "seg":  # same UIDs (derived deterministically), same pixels
                assert pydicom.dcmread(a).SOPInstanceUID == pydicom.dcmread(b).SOPInstanceUID
                np.testing.assert_array_equal(read_segmentation_mask(a), read_segmentation_mask(b))
            else:
                assert a.read_bytes() == b.read_bytes()
