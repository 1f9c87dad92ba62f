"""Find the inputs of a batch: files and folders, recursively, DICOM with or without an extension, PNG/JPEG.

Every regular file under the given folders is an input (a PACS export names its DICOM files ``IM000001``, ``6154`` or
``1.2.3.dcm``; non-images are listed in the manifest as skipped, never silently dropped). Paths are resolved,
de-duplicated and sorted, so every rank of a distributed run sees the same list in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.io.formats import sniff_format

__all__ = ["IMAGE_LIKE_SUFFIXES", "discover_inputs", "sniff_input"]

#: Suffixes that claim image content: such a file whose content is not recognised is an *error*, not a skip.
IMAGE_LIKE_SUFFIXES = (".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff")

_IGNORED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")


def _within(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def discover_inputs(inputs: Iterable[str | Path], exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Expand files and folders into the sorted list of input files.

    Folders are walked recursively (symbolic links to folders are not followed, so a loop cannot hang the batch);
    hidden files (``.name``, e.g. partial outputs) and OS clutter (``Thumbs.db``) are left out, everything else is an
    input, whatever its extension.

    Args:
        inputs: files and/or folders.
        exclude: folders whose contents are never inputs (the output folder, when it lies inside an input folder).

    Returns:
        Resolved, unique paths in sorted order.

    Raises:
        FileNotFoundError: an input does not exist (a typo should stop the run before any work is done).
    """
    excluded = [Path(e).resolve() for e in exclude]
    found: set[Path] = set()
    for item in inputs:
        root = Path(item)
        if not root.exists():
            raise FileNotFoundError(f"{root}: input not found.")
        root = root.resolve()
        if root.is_file():
            if not _within(root, excluded):
                found.add(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _within(here / d, excluded))
            for name in filenames:
                if name.startswith(".") or name in _IGNORED_NAMES:
                    continue
                path = here / name
                if path.is_file() and not _within(path, excluded):
                    found.add(path)
    return sorted(found)


def sniff_input(path: str | Path) -> str | None:
    """The content type of an input file: ``"dicom"``, ``"png"``, ``"jpeg"``, ``"tiff"``, ``"nifti"`` or ``None``.

    Checks the DICOM magic (``DICM`` at byte 128) *before* the other signatures: a DICOM preamble may legally hold a
    TIFF header (dual-personality files, e.g. pydicom's ``CT_small.dcm``), which a TIFF-first sniff misreads.
    Files without the preamble are recognised by :func:`pipeline.io.sniff_format`. Empty files give ``None``.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        return "dicom"
    return sniff_format(path)
