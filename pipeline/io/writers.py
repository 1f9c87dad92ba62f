"""Atomic writers for masks and small artefacts: write to a temporary name in the target folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "write_png", "write_mask_png", "write_mask_nifti"]


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``, on error removed.

    A crash never leaves a half-written file under the final name, so a rerun can trust what it finds.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a 2D uint8/uint16 array (or an ``(rows, cols, 3)`` uint8 RGB array) as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    return Path(path)


def write_mask_png(path: str | Path, mask: np.ndarray, binary: bool = True) -> Path:
    """Write a mask as an 8-bit PNG: binary masks as 0/255 (visible in any viewer), class maps as indices."""
    data = (mask > 0).astype(np.uint8) * 255 if binary else mask.astype(np.uint8)
    return write_png(path, data)


def write_mask_nifti(path: str | Path, mask: np.ndarray, spacing: tuple[float, float] | None = None) -> Path:
    """Write a mask as NIfTI (``.nii.gz``) with x = columns, y = rows (MONAI's layout) and the pixel spacing."""
    import nibabel as nib

    row, col = spacing if spacing else (1.0, 1.0)
    affine = np.diag([col, row, 1.0, 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(mask.T.astype(np.uint8)), affine)
    img.header.set_zooms((col, row))
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with atomic_path(path) as tmp:
        target = tmp.with_name(tmp.name + suffix)  # nibabel picks compression from the suffix
        nib.save(img, str(target))
        os.replace(target, tmp)
    return Path(path)
