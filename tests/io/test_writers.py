"""Result files get the mode the user's umask gives, are written atomically, and read back."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pipeline.io import atomic_path, read_image, write_mask_nifti, write_mask_png, write_png


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_result_files_follow_the_umask(tmp_path, umask):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 10:20] = 1
    written = [
        write_mask_png(tmp_path / "masks" / "a.png", mask),
        write_mask_nifti(tmp_path / "masks" / "a.nii.gz", mask, spacing=(0.2, 0.3)),
        write_png(tmp_path / "overlays" / "a.png", np.zeros((4, 5, 3), np.uint8)),
    ]
    with atomic_path(tmp_path / "manifest.csv") as tmp:
        tmp.write_text("file,status\n")
    written.append(tmp_path / "manifest.csv")
    for path in written:
        assert _mode(path) == 0o666 & ~umask, f"{path.name}: mode {oct(_mode(path))} under umask {oct(umask)}"
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []  # no temporary files left behind
    assert read_image(written[0]).pixels.max() == 255


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
