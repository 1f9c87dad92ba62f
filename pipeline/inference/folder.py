"""Masks for a research folder of images, named after the input files (what the bundles' ``inferring`` writes)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.inference.predictor import Predictor
from pipeline.io import ImageReadError, XRayImage, read_image, write_mask_nifti, write_mask_png

__all__ = ["predict_folder"]

logger = logging.getLogger(__name__)


def predict_folder(
    predictor: Predictor,
    input_dir: str | Path,
    output_dir: str | Path,
    formats: Sequence[str] = ("png",),
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Segment every image in a folder (recursively) and write masks at the original size, named after the inputs.

    Masks go to ``output_dir/<relative path>_mask.png`` (and ``.nii.gz`` when ``"nifti"`` is in ``formats``);
    files that cannot be read are listed with the reason and skipped. Hospital exports (DICOM SEG, manifests,
    resume, names from UIDs) are the batch command's job (``xray-seg predict``); both segment through
    :meth:`Predictor.predict_images`.

    Returns:
        One record per file: ``{"path", "status": "ok" | "error", "reason", "outputs"}``.
    """
    from tqdm.auto import tqdm

    from pipeline.io.files import file_stem, list_image_files

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: input folder not found.")
    files = list_image_files(input_dir)
    records: list[dict[str, Any]] = []
    pending: list[tuple[Path, XRayImage]] = []

    def flush() -> None:
        for (path, _), result in zip(pending, predictor.predict_images([im for _, im in pending])):
            rel = path.relative_to(input_dir)
            base = output_dir / rel.parent / file_stem(rel)
            outputs = []
            if "png" in formats:
                outputs.append(str(write_mask_png(f"{base}_mask.png", result.mask, binary=predictor.num_classes == 1)))
            if "nifti" in formats:
                outputs.append(str(write_mask_nifti(f"{base}_mask.nii.gz", result.mask, result.image.spacing)))
            records.append({"path": str(path), "status": "ok", "reason": "", "outputs": outputs})
        pending.clear()

    for path in tqdm(files, desc="predict", unit="image", disable=None):
        try:
            pending.append((path, read_image(path, voi=predictor.voi)))
        except ImageReadError as err:
            logger.warning("skipped %s", err)
            records.append({"path": str(path), "status": "error", "reason": str(err), "outputs": []})
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    n_ok = sum(r["status"] == "ok" for r in records)
    logger.info("wrote masks for %d of %d files to %s (%d errors)", n_ok, len(records), output_dir, len(records) - n_ok)
    return records
