"""Batch review: the rows of a batch output folder (``xray-seg predict --out DIR``), worst first.

:class:`BatchResults` reads the folder's ``manifest.jsonl`` (or ``manifest.csv``; while a batch is still running,
its journal), orders the rows for review and opens single cases. The client only ever names a case by its manifest
row index; every file served comes from a manifest column, is resolved inside the results folder and must be one
of the output kinds the batch writes (:data:`FILE_KINDS`), so no client text reaches the file system.

Review order (:func:`review_order`):

1. segmented cases with QC flags, lowest confidence first;
2. segmented cases without flags but with low confidence (below :data:`pipeline.web.case.LOW_CONFIDENCE`);
3. the other segmented cases, lowest confidence first;
4. errors, then skipped files (with their reasons).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from pipeline.dicom.manifest import read_manifest
from pipeline.inference.outputs import REVIEW_FILES
from pipeline.inference.predictor import Predictor
from pipeline.web.case import CaseView, Download, build_case_view, download_stem, is_low_confidence
from pipeline.web.errors import WebError

__all__ = ["FILE_KINDS", "PAGE_SIZE", "BatchResults", "ReviewRow", "filter_rows", "review_order"]

#: Files a case may serve: URL kind -> (manifest column, media type, download label), from the one table of output
#: kinds (:data:`pipeline.inference.outputs.REVIEW_FILES`).
FILE_KINDS: dict[str, tuple[str, str, str]] = {
    name: (kind.column, kind.media_type, kind.label) for name, kind in REVIEW_FILES.items()
}

#: Rows per page of the listing.
PAGE_SIZE: int = 100

_STATUS_RANK = {"error": 3, "skipped": 4}


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _flags(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [v for v in str(value or "").split(";") if v]


@dataclass
class ReviewRow:
    """One manifest row, as the listing shows it.

    Attributes:
        index: position in the manifest (the case's id in URLs).
        status: ``ok``, ``skipped`` or ``error``.
        code: reason code.
        reason: reason text.
        name: the input's file name (base name only).
        format: content type.
        sop_instance_uid: SOP Instance UID (or the stand-in UID of PNG/JPEG inputs).
        confidence: mean max-probability, when segmented.
        flags: raised QC flags.
        lung_area_cm2: lung area in cm², when the spacing is known.
        lung_area_px: lung area in pixels.
        has_overlay: the batch wrote an overlay (thumbnail).
        data: the raw manifest row.
        decision: the reader's latest decision (:data:`pipeline.web.decisions.DECISIONS`), filled by the app.
        comment: its comment.
        corrected: a corrected mask was saved for this case.
    """

    index: int
    status: str
    code: str
    reason: str
    name: str
    format: str
    sop_instance_uid: str
    confidence: float | None
    flags: list[str]
    lung_area_cm2: float | None
    lung_area_px: float | None
    has_overlay: bool
    data: dict[str, Any] = field(repr=False, default_factory=dict)
    decision: str = ""
    comment: str = ""
    corrected: bool = False

    @property
    def low_confidence(self) -> bool:
        """Confidence known and below :data:`~pipeline.web.case.LOW_CONFIDENCE`."""
        return is_low_confidence(self.confidence)

    @property
    def needs_review(self) -> bool:
        """A segmented case with QC flags or low confidence."""
        return self.status == "ok" and (bool(self.flags) or self.low_confidence)

    @property
    def priority(self) -> int:
        """0 flagged, 1 low confidence, 2 other segmented, 3 error, 4 skipped (lower = reviewed first)."""
        if self.status == "ok":
            return 0 if self.flags else (1 if self.low_confidence else 2)
        return _STATUS_RANK.get(self.status, 3)

    @classmethod
    def from_manifest(cls, index: int, row: dict[str, Any]) -> ReviewRow:
        """Build from a manifest row (JSONL values, or CSV strings with ``;``-joined lists)."""
        path = str(row.get("path") or "")
        return cls(
            index=index,
            status=str(row.get("status") or "error"),
            code=str(row.get("code") or ""),
            reason=str(row.get("reason") or ""),
            name=PurePath(path.replace("\\", "/")).name or f"file {row.get('file_id', index)}",
            format=str(row.get("format") or ""),
            sop_instance_uid=str(row.get("sop_instance_uid") or ""),
            confidence=_float(row.get("confidence")),
            flags=_flags(row.get("qc_flags")),
            lung_area_cm2=_float(row.get("lung_area_cm2")),
            lung_area_px=_float(row.get("lung_area_px")),
            has_overlay=bool(row.get("overlay")),
            data=dict(row),
        )


def review_order(rows: Sequence[ReviewRow]) -> list[ReviewRow]:
    """Rows in review order: flagged, low-confidence, other segmented cases (each lowest confidence first), errors,
    skipped files; ties keep the manifest order."""
    return sorted(rows, key=lambda r: (r.priority, r.confidence if r.confidence is not None else -1.0, r.index))


def filter_rows(rows: Sequence[ReviewRow], status: str = "", review: bool = False, text: str = "",
                decision: str = "") -> list[ReviewRow]:
    """Keep the rows that match every given filter.

    Args:
        rows: rows (order kept).
        status: ``ok``, ``skipped``, ``error``, or empty for all.
        review: only segmented cases that need review (QC flags or low confidence).
        text: case-insensitive text searched in the file name, UID, status, code, reason, flags and comment.
        decision: a decision (``accept``, ``reject``, ``needs_correction``), ``undecided``, ``corrected``, or
            empty for all.
    """
    needle = text.strip().lower()
    out = []
    for row in rows:
        if status and row.status != status:
            continue
        if review and not row.needs_review:
            continue
        if decision == "undecided" and row.decision:
            continue
        if decision == "corrected" and not row.corrected:
            continue
        if decision not in ("", "undecided", "corrected") and row.decision != decision:
            continue
        if needle:
            haystack = " ".join([row.name, row.sop_instance_uid, row.status, row.code, row.reason, *row.flags,
                                 row.comment]).lower()
            if needle not in haystack:
                continue
        out.append(row)
    return out


class BatchResults:
    """A batch output folder opened for review.

    Args:
        folder: the ``--out`` folder of ``xray-seg predict`` (holding ``manifest.jsonl`` or ``manifest.csv``).

    Raises:
        FileNotFoundError: the folder does not exist.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{folder}: results folder not found (expected the --out folder of "
                                    "`xray-seg predict`).")
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._rows: list[ReviewRow] = []
        self.source = ""

    # ---- reading ------------------------------------------------------------------------------------------------
    def _read(self) -> tuple[list[dict[str, Any]], str]:
        return read_manifest(self.folder)

    def _stamp(self) -> tuple[Any, ...]:
        stamp = []
        for name in ("manifest.jsonl", "manifest.csv", ".journal"):
            try:
                st = (self.folder / name).stat()
                stamp.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                stamp.append((name, None, None))
        if (self.folder / ".journal").is_dir():
            stamp.extend((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in (self.folder / ".journal").glob("*"))
        return tuple(stamp)

    def rows(self) -> list[ReviewRow]:
        """Every row, in manifest order (re-read when the manifest changes)."""
        with self._lock:
            stamp = self._stamp()
            if stamp != self._key:
                raw, self.source = self._read()
                self._rows = [ReviewRow.from_manifest(i, r) for i, r in enumerate(raw)]
                self._key = stamp
            return list(self._rows)

    def row(self, index: int) -> ReviewRow:
        """The row at ``index``.

        Raises:
            WebError: 404 when there is no such row.
        """
        rows = self.rows()
        if not 0 <= index < len(rows):
            raise WebError(404, f"There is no case {index} in this batch ({len(rows)} rows).", "Case not found")
        return rows[index]

    def counts(self) -> dict[str, int]:
        """Rows by status, plus ``review`` (segmented cases with flags or low confidence) and ``total``."""
        rows = self.rows()
        out = {s: sum(r.status == s for r in rows) for s in ("ok", "skipped", "error")}
        out["review"] = sum(r.needs_review for r in rows)
        out["total"] = len(rows)
        return out

    # ---- files --------------------------------------------------------------------------------------------------
    def file_path(self, index: int, kind: str) -> Path:
        """The output file ``kind`` (:data:`FILE_KINDS`) of case ``index``, checked to lie inside the folder.

        Raises:
            WebError: 404 for an unknown kind, a missing file or a manifest entry pointing outside the folder.
        """
        if kind not in FILE_KINDS:
            raise WebError(404, f"Unknown file kind; expected one of {', '.join(FILE_KINDS)}.", "Not found")
        rel = str(self.row(index).data.get(FILE_KINDS[kind][0]) or "")
        if not rel:
            raise WebError(404, f"The batch wrote no {kind} file for case {index}.", "Not found")
        path = (self.folder / rel).resolve()
        if not path.is_relative_to(self.folder) or not path.is_file():
            raise WebError(404, f"The {kind} file of case {index} is not in the results folder.", "Not found")
        return path

    def _optional(self, index: int, kind: str) -> Path | None:
        try:
            return self.file_path(index, kind)
        except WebError:
            return None

    def _stored_mask(self, index: int) -> tuple[np.ndarray | None, bool]:
        """The stored mask (PNG, else SEG) as a label map, and whether it is binary."""
        png = self._optional(index, "mask")
        if png is not None:
            from PIL import Image

            with Image.open(png) as img:
                labels = np.asarray(img.convert("L"))
            binary = int(labels.max(initial=0)) in (0, 255)
            return ((labels > 0).astype(np.uint8) if binary else labels.astype(np.uint8)), binary
        seg = self._optional(index, "seg")
        if seg is not None:
            from pipeline.dicom.seg import read_segmentation_mask

            try:
                return (np.asarray(read_segmentation_mask(seg)) > 0).astype(np.uint8), True
            except Exception:  # noqa: BLE001 - a damaged SEG only costs the overlay layer
                return None, True
        return None, True

    def stored_mask(self, index: int) -> tuple[np.ndarray | None, bool]:
        """The mask the batch stored for case ``index`` (PNG, else SEG) as a label map, and whether it is binary."""
        return self._stored_mask(index)

    def image_shape(self, index: int) -> tuple[int, int]:
        """``(rows, cols)`` of case ``index``'s input image (from its header; the input is not decoded).

        Raises:
            WebError: 404 when the input is gone or unreadable.
        """
        from pipeline.io import sniff_format
        from pipeline.web.capacity import claimed_pixels

        path = Path(str(self.row(index).data.get("path") or ""))
        try:
            rows, cols, _ = claimed_pixels(path, sniff_format(path) or "")
        except (WebError, OSError) as err:
            raise WebError(404, f"The input image of case {index} is no longer readable.", "Input gone") from err
        return rows, cols

    # ---- one case -----------------------------------------------------------------------------------------------
    def case_view(self, index: int, predictor: Predictor | None = None,
                  pixel_sink: Any = None) -> CaseView:
        """The detail view of case ``index``: the stored mask and manifest numbers over the input image.

        The radiograph is read again from the input path the manifest records (a server-side path, never a client
        one); when it is gone, the stored overlay is shown instead. With a ``predictor``, the probability map is
        recomputed (the batch does not store it), and the page says which model made it.

        Raises:
            WebError: 404 when there is no such row.
        """
        from pipeline.io import read_image

        row = self.row(index)
        data = row.data
        fields: dict[str, Any] = {
            "origin": "batch",
            "status": row.status,
            "reason": row.reason,
            "model_name": str(data.get("model_name") or ""),
            "model_version": str(data.get("model_version") or ""),
            "sop_instance_uid": row.sop_instance_uid,
            "index": index,
            "notes": [],
            "download_stem": download_stem(row.name),
        }
        downloads = []
        for kind, (_, _, label) in FILE_KINDS.items():
            stored = self._optional(index, kind)
            if stored is not None:  # stored names are UID-based (the batch never uses input names)
                name = f"{download_stem(row.name)}_{'lung_' if kind != 'seg' else ''}{kind}{stored.suffix}"
                downloads.append(Download(kind, label, name, f"/batch/files/{index}/{kind}", stored.stat().st_size))
        if row.status != "ok":
            return CaseView(title=row.name, format=row.format, downloads=downloads, **fields)

        quality = {k: data.get(k) for k in ("confidence", "mean_entropy", "uncertainty", "n_components",
                                            "area_fraction")}
        quality["qc_flags"] = row.flags
        image = None
        try:
            image = read_image(str(data.get("path") or ""), voi=bool(predictor.voi) if predictor else False)
        except Exception:  # noqa: BLE001 - moved, deleted or unreadable since the batch ran
            fields["notes"].append("The input file is no longer readable; showing the overlay stored by the batch.")
        if image is None:
            view = CaseView(title=row.name, format=row.format, downloads=downloads, **fields)
            view.image_url = view.overlay_url = f"/batch/files/{index}/overlay" if row.has_overlay else ""
            view.lung_area_px = int(row.lung_area_px) if row.lung_area_px is not None else None
            view.lung_area_cm2 = row.lung_area_cm2
            view.confidence, view.low_confidence, view.flags = row.confidence, row.low_confidence, row.flags
            return view

        mask, binary = self._stored_mask(index)
        foreground = None
        if predictor is not None:
            from pipeline.web.inference import segment_image

            foreground = segment_image(predictor, image).foreground
            made_by = f"{predictor.model_name or 'the loaded model'} {predictor.model_version}".strip()
            same = (predictor.model_name, predictor.model_version) == (fields["model_name"], fields["model_version"])
            fields["notes"].append(f"Probability map recomputed by {made_by}" + (
                "." if same else "; the batch used another model, so it may differ from the stored mask."))
        from pipeline.web.pixels import dicom_context

        if image.format == "dicom":
            fields["context"] = dicom_context(str(data.get("path") or ""))
        if self._optional(index, "mask") is not None:
            fields["mask_full_url"] = f"/batch/files/{index}/mask"
        quality["qc_reasons"] = data.get("qc_reasons")
        view = build_case_view(row.name, image, mask, foreground, binary=binary, quality=quality,
                               pixel_sink=pixel_sink, **fields)
        view.downloads = downloads
        if row.has_overlay:
            view.overlay_url = f"/batch/files/{index}/overlay"
        if row.lung_area_px is not None:
            view.lung_area_px = int(row.lung_area_px)
            view.lung_area_cm2 = row.lung_area_cm2
        return view
