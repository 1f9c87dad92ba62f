"""What the detail page shows for one radiograph, whether it was just uploaded or comes from a batch folder.

:class:`CaseView` is plain data for the ``case.html`` template and the JSON API: the pictures as ``data:`` URLs (or
URLs of files in the batch folder), the numbers, the QC flags, the model and the downloads. :func:`build_case_view`
makes one from an image, its mask and (when known) its probability map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.io import XRayImage
from pipeline.web.images import (
    contour_layer_png,
    data_url,
    display_window,
    mask_layer_png,
    mask_png_bytes,
    overlay_png_bytes,
    png_bytes,
    probability_png_bytes,
)

__all__ = [
    "LOW_CONFIDENCE",
    "QC_FLAG_TEXT",
    "SCORE_HELP",
    "CaseView",
    "Download",
    "build_case_view",
    "download_stem",
    "is_low_confidence",
]

#: Confidence (mean max-probability at network resolution) below which a case is marked for review. A trained lung
#: model is uncertain only along the lung borders (about 3 % of the pixels), which keeps its confidence above 0.95.
LOW_CONFIDENCE: float = 0.90

#: What each QC flag of :func:`pipeline.metrics.qc.qc_flags` means, in the reader's words.
QC_FLAG_TEXT: dict[str, str] = {
    "high_entropy": "the model is unsure over large regions",
    "empty_mask": "no lung was found",
    "components": "the mask is not two lungs",
    "area_fraction": "implausible lung area for the image",
    "lr_imbalance": "left and right lungs very unequal",
}


#: One line per number on the page: what it measures and what is normal.
SCORE_HELP: dict[str, str] = {
    "confidence": "mean of the larger class probability per pixel at the network's resolution; 1 = certain "
                  f"everywhere, below {LOW_CONFIDENCE} the case is marked for review",
    "mean entropy": "average uncertainty (binary entropy, 0-1 bit) of every pixel at the network's resolution; "
                    "a good lung mask is uncertain only along its border (typically below 0.05)",
    "uncertainty": "share of pixels whose probability is between 0.25 and 0.75 (neither lung nor background); "
                   "typically below 0.03",
    "components": "connected lung regions of the mask at the network's resolution (small specks removed); two "
                  "lungs = 2",
    "components (full size)": "connected regions of the mask at the film's size, every speck counted",
    "area fraction": "share of the image covered by lung; chest films usually 0.15-0.45",
    "lung area": "mask pixels times the pixel area (cm² only when the DICOM states the pixel spacing)",
}


def download_stem(name: str) -> str:
    """A download file stem derived from the input's (already reduced) name: ``"Chest 01.dcm"`` -> ``"Chest_01"``."""
    import re

    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    return stem[:60] or "radiograph"


def is_low_confidence(confidence: float | None) -> bool:
    """True when a confidence is known and below :data:`LOW_CONFIDENCE`."""
    return confidence is not None and math.isfinite(confidence) and confidence < LOW_CONFIDENCE


@dataclass
class Download:
    """One download link.

    Attributes:
        key: stable identifier (``mask_png``, ``overlay_png``, ``seg``), used by the page's element ids.
        label: link text.
        filename: name the browser saves the file under (never derived from a client path).
        href: a ``data:`` URL (uploads: nothing stays on the server) or a URL under ``/batch/files/``.
        size: size in bytes when known.
    """

    key: str
    label: str
    filename: str
    href: str
    size: int | None = None


@dataclass
class CaseView:
    """Everything the detail view shows for one case.

    Attributes:
        title: heading (an upload's sanitised file name, or the batch file name).
        origin: ``"upload"`` or ``"batch"``.
        status: ``ok``, ``skipped`` or ``error``.
        reason: why a batch file was skipped or failed (empty for ``ok``).
        format: content type (``dicom``, ``png``, ``jpeg``, ``tiff``).
        rows: image rows.
        cols: image columns.
        spacing_mm: ``(row, col)`` pixel spacing, when the file states it.
        window: how the radiograph is windowed for display.
        image_url: the radiograph (display polarity and window).
        mask_url: opaque RGBA mask layer (the page sets its opacity).
        contour_url: RGBA outline layer.
        probability_url: coloured probability map, when known.
        overlay_url: composited overlay (radiograph + translucent mask), for a thumbnail.
        lung_area_px: foreground pixels at the original size.
        lung_area_cm2: foreground area in cm² (when the spacing is known).
        confidence: mean max-probability at the network's resolution.
        low_confidence: ``confidence`` is below :data:`LOW_CONFIDENCE`.
        flags: raised QC flags (:data:`pipeline.metrics.qc.QC_FLAGS`).
        scores: QC scores shown beside the flags (entropy, uncertainty, components, area fraction).
        model_name: model name.
        model_version: model version.
        sop_instance_uid: the DICOM SOP Instance UID (or the batch's stand-in UID for PNG/JPEG).
        downloads: mask PNG, overlay PNG and (DICOM input, binary model) DICOM SEG.
        notes: remarks (e.g. the batch selection rules would skip this file, SEG not possible).
        seconds: timings.
        index: manifest row index (batch cases).
        prev_index: previous case in review order (batch cases).
        next_index: next case in review order (batch cases).
        pixels_url: the full-bit-depth pixels for the viewer (:func:`pipeline.web.pixels.pixel_payload`).
        pixels_meta: their size, value mapping and window presets.
        mask_full_url: the mask at the film's size (what the editor loads).
        context: patient ID, study date, modality, view, series description (DICOM; on the page only).
        score_help: one line per score saying what it measures.
        qc_reasons: the QC's own sentences about the flags, when the QC provides them.
        review: the reader's latest decision, comment and whether a correction was saved (batch cases).
        download_stem: the stem of download file names, derived from the input's name.
    """

    title: str
    origin: str = "upload"
    status: str = "ok"
    reason: str = ""
    format: str = ""
    rows: int | None = None
    cols: int | None = None
    spacing_mm: tuple[float, float] | None = None
    window: str = ""
    image_url: str = ""
    mask_url: str = ""
    contour_url: str = ""
    probability_url: str = ""
    overlay_url: str = ""
    lung_area_px: int | None = None
    lung_area_cm2: float | None = None
    confidence: float | None = None
    low_confidence: bool = False
    flags: list[str] = field(default_factory=list)
    scores: dict[str, float | int | None] = field(default_factory=dict)
    model_name: str = ""
    model_version: str = ""
    sop_instance_uid: str = ""
    downloads: list[Download] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    index: int | None = None
    prev_index: int | None = None
    next_index: int | None = None
    pixels_url: str = ""
    pixels_meta: dict[str, Any] = field(default_factory=dict)
    mask_full_url: str = ""
    context: dict[str, str] = field(default_factory=dict)
    score_help: dict[str, str] = field(default_factory=dict)
    qc_reasons: list[str] = field(default_factory=list)
    review: dict[str, Any] = field(default_factory=dict)
    download_stem: str = "radiograph"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN and infinities become ``None``)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            return value

        return clean(asdict(self))


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def build_case_view(
    title: str,
    image: XRayImage,
    mask: np.ndarray | None,
    prob: np.ndarray | None = None,
    binary: bool = True,
    quality: dict[str, Any] | None = None,
    pixel_sink: Callable[[bytes], str] | None = None,
    **fields: Any,
) -> CaseView:
    """Render the pictures and numbers of one case.

    Args:
        title: heading of the page.
        image: the radiograph (display polarity).
        mask: label map at the image's size (0 = background), or ``None`` when unknown.
        prob: foreground probability at the image's size, or ``None``.
        binary: the mask is a 0/1 lung mask (PNG download as 0/255) rather than a class map.
        quality: confidence and QC as the batch computes them (``confidence``, ``qc_flags``, ``mean_entropy``,
            ``uncertainty``, ``n_components``, ``area_fraction``).
        pixel_sink: takes the compressed full-bit-depth pixels and returns the URL the page fetches them from;
            ``None`` embeds them as a ``data:`` URL (uploads keep nothing on the server).
        fields: other :class:`CaseView` attributes (``model_name``, ``downloads``, ``notes``, ...).

    Returns:
        The view; mask and overlay downloads are added as ``data:`` URLs.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.web.pixels import pixel_payload

    display, window = display_window(image)
    shape = (int(display.shape[0]), int(display.shape[1]))
    fields.setdefault("download_stem", download_stem(title))
    view = CaseView(title=title, format=image.format, rows=image.shape[0], cols=image.shape[1],
                    spacing_mm=image.spacing, window=window, score_help=dict(SCORE_HELP), **fields)
    # the full-bit-depth pixels are mostly zlib, which releases the GIL: compressed on a second core while the
    # pictures below are drawn (a 2048² film: ~80 ms off the page's time on 2 cores)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixels") as pool:
        pixels_job = pool.submit(pixel_payload, image, stored_8bit=window.startswith("8-bit"))
        _draw_pictures(view, image, display, shape, mask, prob, binary)
        payload, view.pixels_meta = pixels_job.result()
    view.pixels_url = pixel_sink(payload) if pixel_sink else data_url(payload, "application/octet-stream")
    if quality:
        view.confidence = _finite(quality.get("confidence"))
        view.low_confidence = is_low_confidence(view.confidence)
        view.flags = list(quality.get("qc_flags") or [])
        view.scores = {
            "mean entropy": _finite(quality.get("mean_entropy")),
            "uncertainty": _finite(quality.get("uncertainty")),
            "components": _finite(quality.get("n_components")),
            "area fraction": _finite(quality.get("area_fraction")),
            **view.scores,
        }
        reasons = quality.get("qc_reasons")
        if isinstance(reasons, dict):
            view.qc_reasons = [f"{k}: {v}" for k, v in reasons.items()]
        elif isinstance(reasons, (list, tuple)):
            view.qc_reasons = [str(r) for r in reasons]
        elif isinstance(reasons, str) and reasons:
            view.qc_reasons = [r for r in reasons.split(";") if r]
    return view


def _draw_pictures(view: CaseView, image: XRayImage, display: np.ndarray, shape: tuple[int, int],
                   mask: np.ndarray | None, prob: np.ndarray | None, binary: bool) -> None:
    """The radiograph, probability map, mask layers, overlay and mask downloads of ``view`` (in place)."""
    view.image_url = data_url(png_bytes(display))
    if prob is not None:
        view.probability_url = data_url(probability_png_bytes(prob, shape))
    if mask is not None:
        view.mask_url = data_url(mask_layer_png(mask, shape))
        view.contour_url = data_url(contour_layer_png(mask, shape))
        overlay = overlay_png_bytes(display, mask)
        view.overlay_url = data_url(overlay)
        area = int(np.count_nonzero(mask))
        view.lung_area_px = area
        if image.spacing:
            view.lung_area_cm2 = area * image.spacing[0] * image.spacing[1] / 100.0
        mask_png = mask_png_bytes(mask, binary=binary)
        view.mask_full_url = view.mask_full_url or data_url(mask_png)
        stem = view.download_stem
        view.downloads[:0] = [
            Download("mask_png", "Mask (PNG, original size)", f"{stem}_lung_mask.png", data_url(mask_png),
                     len(mask_png)),
            Download("overlay_png", "Overlay (PNG)", f"{stem}_lung_overlay.png", view.overlay_url, len(overlay)),
        ]
        try:
            from scipy import ndimage

            view.scores["components (full size)"] = int(ndimage.label(np.asarray(mask) > 0)[1])
        except Exception:  # noqa: BLE001 - an extra number, never worth failing the page
            pass
