"""Image files in a folder and the name stem that pairs them (``case1.png`` ↔ ``case1_mask.png``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["IGNORED_NAMES", "file_stem", "list_image_files"]

#: File names that are never images (dataset notes, split files, desktop litter).
IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "splits.csv", "source.md", "readme.md"})


def file_stem(path: str | Path) -> str:
    """The name of a file without image suffixes (``.nii.gz`` and ``.dcm`` included)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_image_files(folder: str | Path) -> list[Path]:
    """Every regular, non-hidden file below ``folder`` (recursively), sorted; content is checked later."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name.lower() not in IGNORED_NAMES
    )
