"""Corrected masks: saved into a dataset folder the lung bundle trains on, and (for DICOM inputs) a SEG revision.

A reader edits the mask in the browser at the film's resolution and saves it. :func:`save_correction` then writes,
in the corrections folder (default ``RESULTS/corrections``)::

    images/<UID>.png   the input image, losslessly: a DICOM's pixel values (display polarity, modality LUT applied)
                       as a 16-bit PNG, a PNG input copied byte for byte, other formats as decoded
    masks/<UID>.png    the corrected mask, 0/255, at the original size
    seg/<UID>_r<N>.dcm for DICOM inputs: a new SEG revision (new SOP Instance UID, in the batch SEG's series,
                       content description "corrected by reviewer", segment algorithm type SEMIAUTOMATIC)

``images/`` + ``masks/`` paired by name is the layout of :func:`pipeline.data.pair_folder`, so the folder can be
added to the training data as it is (``--dataset_dir "['/data/cxr', 'RESULTS/corrections']"``; see
``docs/web.md``). File names are UIDs, never the input's name. Every file is written atomically.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.web.errors import WebError

__all__ = ["CORRECTED_DESCRIPTION", "SavedCorrection", "corrected_stem", "decode_mask_png", "save_correction"]

logger = logging.getLogger(__name__)

#: Content description of a SEG revision made from a reader's correction.
CORRECTED_DESCRIPTION = "Lung segmentation corrected by reviewer"


@dataclass
class SavedCorrection:
    """What :func:`save_correction` wrote (paths relative to the corrections folder)."""

    image: str
    mask: str
    seg: str | None
    revision: int
    lung_pixels: int
    changed_pixels: int
    seg_sop_instance_uid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def corrected_stem(sop_instance_uid: str, index: int) -> str:
    """The file stem of a corrected case: its UID (digits and dots only), else ``case-<index>``."""
    uid = re.sub(r"[^0-9.]", "", sop_instance_uid or "")
    return uid if uid else f"case-{int(index)}"


def decode_mask_png(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The mask in a PNG sent by the page: bright (> 127 in any colour channel) and opaque = lung.

    Raises:
        WebError: 400 for something that is not a PNG, or a PNG of another size than the film.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise ValueError("not a PNG")
            if (img.height, img.width) != tuple(shape):
                raise WebError(400, f"The corrected mask is {img.width} x {img.height} px but the film is {shape[1]} "
                                    f"x {shape[0]} px; reload the case and correct it again.", "Wrong size")
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = np.asarray(img.convert("RGBA"))
                values = np.where(rgba[..., 3] > 127, rgba[..., :3].max(axis=-1), 0)
            else:
                values = np.asarray(img.convert("L"))
    except WebError:
        raise
    except Exception as err:  # noqa: BLE001
        raise WebError(400, f"The corrected mask is not a readable PNG ({type(err).__name__}).", "Bad mask") from err
    return (values > 127).astype(np.uint8)


def _lossless_image(source: Path, image: Any, target: Path) -> None:
    """Write the input image into ``target`` (PNG) without losing values."""
    from pipeline.io import sniff_format
    from pipeline.io.writers import atomic_path, write_png

    fmt = sniff_format(source)
    if fmt == "png":
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return
    pixels = np.asarray(image.pixels)
    if pixels.min(initial=0) >= 0 and pixels.max(initial=0) <= 255 and fmt in ("jpeg", "tiff") and \
            np.array_equal(pixels, np.rint(pixels)):
        write_png(target, pixels.astype(np.uint8))
        return
    integral = np.array_equal(pixels, np.rint(pixels))
    low = float(pixels.min(initial=0))
    if integral and low >= 0 and float(pixels.max(initial=0)) <= 65535:
        write_png(target, pixels.astype(np.uint16))
    elif integral and float(pixels.max(initial=0)) - low <= 65535:
        write_png(target, (pixels - low).astype(np.uint16))  # shifted, still lossless up to an offset
    else:
        logger.warning("corrected case image: non-integral pixel values, stored as 16-bit min-max (not lossless)")
        span = max(float(pixels.max(initial=0)) - low, 1e-6)
        write_png(target, np.rint((pixels - low) / span * 65535).astype(np.uint16))


def _seg_revision(source: Path, mask: np.ndarray, target_dir: Path, stem: str, revision: int,
                  model_name: str, model_version: str) -> tuple[str, str]:
    """Write a SEG revision of the corrected mask; returns (file name, SOP Instance UID)."""
    import pydicom
    from pydicom.uid import generate_uid

    from pipeline.dicom.seg import AlgorithmInfo, build_segmentation
    from pipeline.io.writers import atomic_path

    header = pydicom.dcmread(source, stop_before_pixels=True, force=True)
    algorithm = AlgorithmInfo(name=model_name or "xray-seg", version=model_version or "unversioned")
    seg = build_segmentation(header, mask, algorithm)
    uid = generate_uid()
    seg.SOPInstanceUID = uid
    seg.file_meta.MediaStorageSOPInstanceUID = uid
    seg.InstanceNumber = revision + 1  # the batch's SEG is instance 1 of the same series
    seg.ContentDescription = CORRECTED_DESCRIPTION[:64]
    seg.ContentLabel = "LUNG_CORRECTED"
    for segment in seg.SegmentSequence:
        segment.SegmentAlgorithmType = "SEMIAUTOMATIC"
    name = f"{stem}_r{revision}.dcm"
    with atomic_path(target_dir / name) as tmp:
        seg.save_as(tmp)
    return name, uid


def save_correction(source: Path, mask: np.ndarray, corrections_dir: Path, stem: str, revision: int,
                    previous: np.ndarray | None = None, model_name: str = "", model_version: str = "",
                    voi: bool = False) -> SavedCorrection:
    """Write a corrected case into the corrections dataset folder (see the module docstring).

    Args:
        source: the input image the batch segmented (a server-side path from the manifest).
        mask: ``(rows, cols)`` corrected mask (non-zero = lung) at the source's size.
        corrections_dir: the dataset folder (``images/``, ``masks/``, ``seg/`` are created).
        stem: file stem (:func:`corrected_stem`).
        revision: 1 for the first correction of the case, then 2, ...
        previous: the mask before the correction, to count the changed pixels.
        model_name: the model that made the original mask (recorded in the SEG).
        model_version: its version.
        voi: read a DICOM with its VOI LUT (as the predictor did).

    Raises:
        WebError: 404 when the input is gone, 400 when the mask does not match its size.
    """
    from pipeline.io import read_image, sniff_format
    from pipeline.io.writers import write_mask_png

    try:
        image = read_image(source, voi=voi)
    except Exception as err:  # noqa: BLE001
        raise WebError(404, "The input image of this case is no longer readable, so the correction cannot be "
                            "saved with it.", "Input gone") from err
    if tuple(image.shape) != tuple(mask.shape):
        raise WebError(400, f"The corrected mask ({mask.shape[1]} x {mask.shape[0]}) does not match the film "
                            f"({image.shape[1]} x {image.shape[0]}).", "Wrong size")
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    corrections_dir = Path(corrections_dir)
    image_rel, mask_rel = f"images/{stem}.png", f"masks/{stem}.png"
    _lossless_image(source, image, corrections_dir / image_rel)
    write_mask_png(corrections_dir / mask_rel, binary)
    seg_rel, seg_uid = None, None
    if sniff_format(source) == "dicom":
        try:
            name, seg_uid = _seg_revision(source, binary, corrections_dir / "seg", stem, revision, model_name,
                                          model_version)
            seg_rel = f"seg/{name}"
        except Exception as err:  # noqa: BLE001 - the mask and image are saved whatever happens to the SEG
            logger.warning("corrected SEG could not be built: %s", type(err).__name__)
    changed = int(np.count_nonzero(binary != (np.asarray(previous) > 0))) if previous is not None and \
        tuple(previous.shape) == binary.shape else -1
    return SavedCorrection(image_rel, mask_rel, seg_rel, revision, int(binary.sum()), changed, seg_uid)
