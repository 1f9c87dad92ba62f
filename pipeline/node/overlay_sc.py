"""A Secondary Capture of the review overlay, for PACS viewers that cannot display DICOM SEG.

The picture is the batch runner's overlay PNG (image, translucent mask, contour) with a banner burned in reading
"AI lung segmentation, not for clinical use"; the same words go into the Series Description and Image Comments. The
instance joins the source image's study, in a series of its own; its UIDs are derived from the source instance and
the model, so sending it again after a restart is deduplicated by the PACS like the SEG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.dicom.naming import derived_uid
from pipeline.node.spool import durable_write

__all__ = ["OVERLAY_LABEL", "write_overlay_sc"]

#: The label burned into the picture and written into the header.
OVERLAY_LABEL = "AI lung segmentation, not for clinical use"


def _with_banner(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(rgb).convert("RGB")
    height = max(14, img.height // 24)
    try:
        font = ImageFont.load_default(size=max(10, int(height * 0.7)))
    except TypeError:  # Pillow without sized default fonts
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, height + 4], fill=(0, 0, 0))
    draw.text((4, 2), OVERLAY_LABEL, fill=(255, 255, 0), font=font)
    return np.asarray(img, dtype=np.uint8)


def write_overlay_sc(source_path: str | Path, overlay_png: str | Path, out_path: str | Path, model_name: str,
                     model_version: str) -> Path:
    """Write the overlay of one source image as a Secondary Capture in the source's study.

    Args:
        source_path: the received instance (its patient and study attributes are copied by highdicom).
        overlay_png: the batch runner's overlay of it.
        out_path: where to write the SC (atomically, durably).
        model_name: recorded in the UIDs' derivation, as for the SEG.
        model_version: likewise.
    """
    import highdicom as hd
    import pydicom
    from PIL import Image

    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    with Image.open(overlay_png) as img:
        rgb = _with_banner(np.asarray(img.convert("RGB"), dtype=np.uint8))
    uid = str(source.SOPInstanceUID)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=derived_uid("xray-seg:overlay-series", str(source.StudyInstanceUID), model_name,
                                        model_version),
        series_number=9902,
        sop_instance_uid=derived_uid("xray-seg:overlay", uid, model_name, model_version),
        instance_number=int(source.get("InstanceNumber") or 1),
        manufacturer="xray-seg",
        patient_orientation=("L", "F"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    sc.SeriesDescription = OVERLAY_LABEL
    sc.ImageComments = OVERLAY_LABEL
    sc.BurnedInAnnotation = "YES"
    sc.ReferencedImageSequence = [pydicom.Dataset()]
    sc.ReferencedImageSequence[0].ReferencedSOPClassUID = source.SOPClassUID
    sc.ReferencedImageSequence[0].ReferencedSOPInstanceUID = uid
    from io import BytesIO

    buffer = BytesIO()
    sc.save_as(buffer, enforce_file_format=True)
    return durable_write(out_path, buffer.getvalue())
