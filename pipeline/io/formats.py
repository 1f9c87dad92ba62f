"""Recognise image formats by content, never by file name."""

from __future__ import annotations

import gzip
from pathlib import Path

__all__ = ["sniff_format", "IMAGE_SUFFIXES"]

#: Suffixes the folder scanners consider; files without a suffix are sniffed too (DICOM often has none).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz", "")


def _is_nifti_header(head: bytes) -> bool:
    return len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00", b"n+2\x00")


def sniff_format(path: str | Path) -> str | None:
    """Tell the format of a file from its first bytes.

    Args:
        path: the file.

    Returns:
        ``"png"``, ``"jpeg"``, ``"tiff"``, ``"dicom"``, ``"nifti"``, or ``None`` when the content is none of them
        (including empty files). DICOM files without the 128-byte preamble are recognised by a plausible first
        group tag (0002 or 0008).
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(352)
    if not head:
        return None
    # DICOM first: the 128-byte preamble may itself hold a TIFF header (dual-personality files)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if _is_nifti_header(head):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as g:
                if _is_nifti_header(g.read(352)):
                    return "nifti"
        except OSError:
            return None
        return None
    # DICOM without preamble: little-endian group 0x0002 or 0x0008 tag at offset 0
    if len(head) >= 8 and head[1:2] == b"\x00" and head[0:1] in (b"\x02", b"\x08") and head[2:4] != b"\x00\x00":
        return "dicom"
    return None
