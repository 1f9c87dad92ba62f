"""Pair ``images/`` and ``masks/`` of a dataset folder by file stem, reporting every file that cannot be used."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.io.files import file_stem, list_image_files
from pipeline.io.formats import sniff_format

__all__ = ["PairingReport", "pair_folder", "file_stem", "image_size", "list_image_files"]

logger = logging.getLogger(__name__)

_MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_seg")


def image_size(path: str | Path) -> tuple[int, int]:
    """``(rows, cols)`` of an image file, read from its header where possible (PNG/JPEG/TIFF fully verified).

    Raises:
        pipeline.io.ImageReadError: the file is empty, corrupt or not a supported image.
    """
    from pipeline.io import ImageReadError, read_image

    path = Path(path)
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes).")
    fmt = sniff_format(path)
    if fmt in ("png", "jpeg", "tiff"):
        from PIL import Image

        try:
            with Image.open(path) as img:
                img.verify()  # checks chunk integrity (truncation, CRC) without decoding
            with Image.open(path) as img:
                cols, rows = img.size
            return rows, cols
        except Exception as err:  # noqa: BLE001 - PIL raises many error types for corrupt files
            raise ImageReadError(f"{path}: corrupt or truncated {fmt.upper()} ({err}).") from err
    if fmt == "dicom":
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception as err:  # noqa: BLE001 - truncated headers raise many kinds of errors
            raise ImageReadError(f"{path}: unreadable DICOM header ({err}).") from err
        if "Rows" not in ds or "Columns" not in ds:
            raise ImageReadError(f"{path}: DICOM object without Rows/Columns (not an image).")
        return int(ds.Rows), int(ds.Columns)
    return read_image(path).shape


@dataclass
class PairingReport:
    """What :func:`pair_folder` found.

    Attributes:
        pairs: ``{"image": path, "label": path, "id": stem}`` dictionaries, sorted by id.
        missing_mask: image files without a mask partner.
        missing_image: mask files without an image partner.
        unreadable: ``(path, reason)`` for files that are not readable images.
        size_mismatch: ``(id, image (rows, cols), mask (rows, cols))`` for pairs whose sizes differ.
    """

    pairs: list[dict[str, str]] = field(default_factory=list)
    missing_mask: list[str] = field(default_factory=list)
    missing_image: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    size_mismatch: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        """Number of files or pairs left out."""
        return len(self.missing_mask) + len(self.missing_image) + len(self.unreadable) + len(self.size_mismatch)

    def log(self, log: logging.Logger = logger) -> None:
        """Log every skipped file by name and a one-line count."""
        for path in self.missing_mask:
            log.warning("skipped %s: no mask with the same name in masks/", path)
        for path in self.missing_image:
            log.warning("skipped %s: no image with the same name in images/", path)
        for path, reason in self.unreadable:
            log.warning("skipped %s: %s", path, reason)
        for stem, isz, msz in self.size_mismatch:
            log.warning("skipped pair %s: image is %sx%s but mask is %sx%s", stem, *isz, *msz)
        log.info(
            "paired %d image/mask files; skipped %d (%d without mask, %d without image, %d unreadable, %d size mismatch)",
            len(self.pairs),
            self.num_skipped,
            len(self.missing_mask),
            len(self.missing_image),
            len(self.unreadable),
            len(self.size_mismatch),
        )


def pair_folder(
    dataset_dir: str | Path, images: str = "images", masks: str = "masks", check: bool = True
) -> PairingReport:
    """Pair ``dataset_dir/images`` with ``dataset_dir/masks`` by file stem.

    Masks may carry a ``_mask``/``_label``/``_seg`` suffix (``JPC001.png`` ↔ ``JPC001_mask.png``). Images may be
    PNG, JPEG, TIFF, DICOM (with or without extension) or NIfTI; masks PNG, TIFF or NIfTI.

    Args:
        dataset_dir: folder holding ``images/`` and ``masks/``.
        images: name of the image sub-folder. Defaults to ``"images"``.
        masks: name of the mask sub-folder. Defaults to ``"masks"``.
        check: read each header to drop unreadable files and size mismatches. Defaults to True.

    Returns:
        A :class:`PairingReport`; call ``.log()`` to report what was skipped.

    Raises:
        FileNotFoundError: ``images/`` or ``masks/`` is missing; the message says what layout is expected.
    """
    from pipeline.io import ImageReadError

    root = Path(dataset_dir)
    image_dir, mask_dir = root / images, root / masks
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: folder not found. A dataset is a folder with '{images}/' and '{masks}/' sub-folders whose "
                "files pair by name (e.g. images/case1.png and masks/case1.png)."
            )
    image_files = {file_stem(p): p for p in list_image_files(image_dir)}
    mask_files: dict[str, Path] = {}
    for p in list_image_files(mask_dir):
        stem = file_stem(p)
        if stem not in image_files:
            for suffix in _MASK_SUFFIXES:
                if stem.lower().endswith(suffix) and stem[: -len(suffix)] in image_files:
                    stem = stem[: -len(suffix)]
                    break
        mask_files[stem] = p

    report = PairingReport()
    report.missing_mask = [str(image_files[s]) for s in sorted(set(image_files) - set(mask_files))]
    report.missing_image = [str(mask_files[s]) for s in sorted(set(mask_files) - set(image_files))]
    for stem in sorted(set(image_files) & set(mask_files)):
        img, msk = image_files[stem], mask_files[stem]
        if check:
            sizes = []
            for path in (img, msk):
                try:
                    sizes.append(image_size(path))
                except (ImageReadError, OSError) as err:
                    report.unreadable.append((str(path), str(err).removeprefix(f"{path}: ")))
            if len(sizes) < 2:
                continue
            if sizes[0] != sizes[1]:
                report.size_mismatch.append((stem, sizes[0], sizes[1]))
                continue
        report.pairs.append({"image": str(img.resolve()), "label": str(msk.resolve()), "id": stem})
    return report
