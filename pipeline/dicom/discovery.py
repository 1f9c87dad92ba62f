"""Find the inputs of a batch: files and folders, recursively, DICOM with or without an extension, PNG/JPEG.

Every file under the given folders is an input (a PACS export names its DICOM files ``IM000001``, ``6154`` or
``1.2.3.dcm``; non-images are listed in the manifest as skipped, never silently dropped). So is every path the walk
sees that is *not* a regular file: a dangling symbolic link, a link loop, a link to a folder (not followed, so a
loop cannot hang the batch), a FIFO. :func:`pipeline.dicom.select_file` gives each of them a manifest row with the
reason. Paths of regular files are resolved; the others are kept as absolute, unresolved paths (a dangling link has
no target to resolve to). The list is de-duplicated and sorted, so every rank of a distributed run sees the same list
in the same order.
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


def _absolute(path: Path) -> Path:
    """The resolved path of an existing file; the absolute, unresolved path of anything a resolve could not follow."""
    try:
        if path.exists():
            return path.resolve()
    except (OSError, RuntimeError):  # a link loop: exists() or resolve() gives ELOOP / "Symlink loop"
        pass
    return Path(os.path.abspath(path))


def discover_inputs(inputs: Iterable[str | Path], exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Expand files and folders into the sorted list of input paths.

    Folders are walked recursively. Symbolic links to folders are not followed (a loop cannot hang the batch) but
    are listed, as are dangling links and link loops, so that each gets a manifest row. Hidden files (``.name``,
    e.g. partial outputs) and OS clutter (``Thumbs.db``) are left out; everything else is an input, whatever its
    extension.

    Args:
        inputs: files and/or folders.
        exclude: folders whose contents are never inputs (the output folder, when it lies inside an input folder).

    Returns:
        Unique paths in sorted order (regular files resolved).

    Raises:
        FileNotFoundError: an input does not exist (a typo should stop the run before any work is done); a given
            path that is a dangling link is listed instead, with its reason in the manifest.
    """
    excluded = [Path(e).resolve() for e in exclude]
    found: set[Path] = set()
    for item in inputs:
        root = Path(item)
        if not root.is_symlink() and not root.exists():
            raise FileNotFoundError(f"{root}: input not found.")
        root = _absolute(root)
        if not root.is_dir():
            if not _within(root, excluded):
                found.add(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            for name in dirnames:  # os.walk lists links to folders here but never descends into them
                if not name.startswith(".") and (here / name).is_symlink():
                    found.add(Path(os.path.abspath(here / name)))
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and not (here / d).is_symlink() and not _within(here / d, excluded)
            )
            for name in filenames:
                if name.startswith(".") or name in _IGNORED_NAMES:
                    continue
                path = _absolute(here / name)
                if not _within(path, excluded):
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
