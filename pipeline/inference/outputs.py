"""The one table of output kinds: what ``--outputs`` may name, where each file goes, its manifest column, writer and
media type.

Every part of the project that touches batch outputs reads this table: the batch runner writes with it, the
manifest takes its output columns from it (:data:`MANIFEST_COLUMNS`), the review page serves files through it
(:data:`REVIEW_FILES`; it never opens a path that is not a manifest column of a listed kind), and the resume logic
checks that a finished file's outputs are still on disk with it.

=========  ==========  ==============  =====================  ===============================================
kind       folder      column          media type             file
=========  ==========  ==============  =====================  ===============================================
``seg``    seg/        ``seg``         application/dicom      ``<uid>.dcm``: DICOM SEG (DICOM inputs only)
``png``    masks/      ``mask_png``    image/png              ``<uid>.png``: 0/255 mask at the original size
``nifti``  masks/      ``mask_nifti``  application/gzip       ``<uid>.nii.gz``: the mask with the pixel spacing
``overlay``overlays/   ``overlay``     image/png              ``<uid>.png``: image + mask for review (<= 1024 px)
=========  ==========  ==============  =====================  ===============================================

Examples::

    >>> OUTPUT_KINDS["png"].path("out", "1.2.3")
    PosixPath('out/masks/1.2.3.png')
    >>> REVIEW_FILES["mask"].column
    'mask_png'
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dicom.manifest import JOURNAL_DIR, manifest_columns
from pipeline.dicom.seg import AlgorithmInfo, write_segmentation
from pipeline.inference.overlay import write_overlay_png
from pipeline.io.writers import write_mask_nifti, write_mask_png

__all__ = [
    "DEFAULT_OUTPUTS",
    "MANIFEST_COLUMNS",
    "OUTPUT_KINDS",
    "REVIEW_FILES",
    "OutputData",
    "OutputFolderError",
    "OutputKind",
    "check_output_dir",
    "parse_outputs",
    "remove_outputs",
]


@dataclass
class OutputData:
    """What the writers of one image need.

    Attributes:
        mask: ``(rows, cols)`` mask at the original size (0/1, or class indices for multi-class models).
        prob: ``(rows, cols)`` foreground probability (FRACTIONAL SEGs), or ``None``.
        header: the source DICOM header (pydicom ``Dataset`` without pixel data), or ``None`` for PNG/JPEG.
        display: the ``uint8`` display image for the overlay (already at most ``overlay_max_side``), or ``None``.
        spacing: ``(row, col)`` pixel spacing in mm, or ``None``.
        binary: the mask is binary (written 0/255) rather than class indices.
        algorithm: the SEG's algorithm identification.
        fractional: write a FRACTIONAL SEG.
    """

    mask: np.ndarray
    prob: np.ndarray | None = None
    header: Any = None
    display: np.ndarray | None = None
    spacing: tuple[float, float] | None = None
    binary: bool = True
    algorithm: AlgorithmInfo = field(default_factory=AlgorithmInfo)
    fractional: bool = False


def _write_seg(path: Path, data: OutputData) -> Path:
    return write_segmentation(data.header, data.mask, path, data.algorithm,
                              prob=data.prob if data.fractional else None, fractional=data.fractional)


def _write_png(path: Path, data: OutputData) -> Path:
    return write_mask_png(path, data.mask, binary=data.binary)


def _write_nifti(path: Path, data: OutputData) -> Path:
    return write_mask_nifti(path, data.mask, data.spacing)


def _write_overlay(path: Path, data: OutputData) -> Path:
    return write_overlay_png(path, data.display, data.mask, prepared=True)


@dataclass(frozen=True)
class OutputKind:
    """One kind of batch output.

    Attributes:
        name: what ``--outputs`` names (``seg``, ``png``, ``nifti``, ``overlay``).
        folder: sub-folder of the output folder.
        column: manifest column holding the file's path relative to the output folder.
        suffix: file name suffix after the sanitised SOP Instance UID.
        media_type: MIME type the review page serves it with.
        label: download label on the review page.
        review_name: the kind's name in review-page URLs (``/batch/files/<i>/<review_name>``); ``None``: not served.
        dicom_only: written only for DICOM inputs (the SEG needs the source header).
        write: ``write(path, data) -> path``; writes atomically.
    """

    name: str
    folder: str
    column: str
    suffix: str
    media_type: str
    label: str
    review_name: str | None
    dicom_only: bool
    write: Callable[[Path, OutputData], Path]

    def path(self, out_dir: str | Path, stem: str) -> Path:
        """Where this kind's file of the image named ``stem`` (a sanitised UID) goes."""
        return Path(out_dir) / self.folder / f"{stem}{self.suffix}"

    def applies(self, data: OutputData) -> bool:
        """Whether this kind is written for an image (a SEG needs a DICOM header, an overlay a display image)."""
        if self.dicom_only and data.header is None:
            return False
        return not (self.name == "overlay" and data.display is None)


#: Every output kind, in the order they are written and listed in the manifest.
OUTPUT_KINDS: dict[str, OutputKind] = {
    kind.name: kind
    for kind in (
        OutputKind("seg", "seg", "seg", ".dcm", "application/dicom", "DICOM SEG", "seg", True, _write_seg),
        OutputKind("png", "masks", "mask_png", ".png", "image/png", "Mask (PNG, original size)", "mask", False,
                   _write_png),
        OutputKind("nifti", "masks", "mask_nifti", ".nii.gz", "application/gzip", "Mask (NIfTI)", None, False,
                   _write_nifti),
        OutputKind("overlay", "overlays", "overlay", ".png", "image/png", "Overlay (PNG)", "overlay", False,
                   _write_overlay),
    )
}

#: What ``xray-seg predict`` writes unless told otherwise.
DEFAULT_OUTPUTS: tuple[str, ...] = ("seg", "png", "overlay")

#: The batch manifest's columns, in CSV order (the output columns come from :data:`OUTPUT_KINDS`).
MANIFEST_COLUMNS: tuple[str, ...] = manifest_columns(kind.column for kind in OUTPUT_KINDS.values())

#: Files the review page may serve, by their URL name.
REVIEW_FILES: dict[str, OutputKind] = {k.review_name: k for k in OUTPUT_KINDS.values() if k.review_name}


def parse_outputs(outputs: Sequence[str] | str) -> tuple[str, ...]:
    """Normalise ``outputs`` (a sequence or a comma-separated string) to known kinds, in the given order.

    Raises:
        ValueError: an unknown kind, or no kind at all.
    """
    items = outputs.split(",") if isinstance(outputs, str) else list(outputs)
    names = tuple(dict.fromkeys(str(o).strip().lower() for o in items if str(o).strip()))
    unknown = sorted(set(names) - set(OUTPUT_KINDS))
    if unknown or not names:
        raise ValueError(f"outputs must be a non-empty subset of {tuple(OUTPUT_KINDS)}, got {list(names)}.")
    return names


def remove_outputs(out_dir: str | Path, stem: str, kinds: Sequence[str] = tuple(OUTPUT_KINDS)) -> None:
    """Delete the output files of the image ``stem`` (after a failure: no SEG may outlive a failed image)."""
    for name in kinds:
        try:
            OUTPUT_KINDS[name].path(out_dir, stem).unlink(missing_ok=True)
        except OSError:  # a read-only or vanished folder: nothing more we can do here
            pass


class OutputFolderError(RuntimeError):
    """The output folder cannot be created or written (its message is one line that says what to do)."""


def check_output_dir(out_dir: str | Path) -> Path:
    """Create the output folder if needed and prove it is writable, before any expensive work starts.

    Writes and removes a small temporary file in the folder and in its journal folder, so a read-only mount, missing
    permissions or a full disk show up at once, as one line, instead of a traceback after the model has loaded.

    Args:
        out_dir: the output folder.

    Returns:
        The folder.

    Raises:
        OutputFolderError: it cannot be created or written.
    """
    out_dir = Path(out_dir)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputFolderError(f"{out_dir}: the output path exists and is not a folder; choose another --out.")
        for folder in (out_dir, out_dir / JOURNAL_DIR):
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=".partial")
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        what = {errno.EROFS: "it is on a read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full"}.get(
            err.errno, err.strerror or type(err).__name__)
        raise OutputFolderError(
            f"{out_dir}: cannot write to the output folder ({what}); choose a writable --out folder or fix its "
            "permissions."
        ) from None
    return out_dir
