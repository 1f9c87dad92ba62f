"""Uploads: size limit, content check, a per-request temporary folder, and segmentation through the Predictor.

The rules that keep an upload harmless:

* the body is counted as it arrives (:class:`UploadLimitMiddleware`); past the limit the request ends with 413 and a
  clear message, and a declared ``Content-Length`` over the limit is refused before anything is read;
* the file is written under a fixed name (``upload.bin``) in a fresh temporary folder that is removed when the
  request ends, whatever happens; the client's file name never reaches the file system (it is only shown, escaped,
  as the page title after :func:`display_name` has reduced it to a base name);
* the content decides what the file is (:func:`pipeline.io.sniff_format`), never the name: only PNG, JPEG, TIFF and
  DICOM are accepted (415 otherwise), and a file that claims a format but does not decode gets 400;
* every result goes back inline (``data:`` URLs, the DICOM SEG included), so nothing patient-related stays on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.inference.predictor import Predictor
from pipeline.io import ImageReadError, UnsupportedImageError, XRayImage, read_image, sniff_format
from pipeline.web.case import CaseView, Download, build_case_view, download_stem
from pipeline.web.errors import WebError, error_response, too_large_message
from pipeline.web.images import data_url
from pipeline.web.pixels import dicom_context
from pipeline.web.inference import segment_image

__all__ = [
    "ACCEPTED_FORMATS",
    "UPLOAD_NAME",
    "UploadLimitMiddleware",
    "UploadTooLarge",
    "check_content",
    "display_name",
    "segment_upload",
    "upload_folder",
]

logger = logging.getLogger(__name__)

#: Content types an upload may have (decided by :func:`pipeline.io.sniff_format`).
ACCEPTED_FORMATS: tuple[str, ...] = ("png", "jpeg", "tiff", "dicom")

#: The fixed name an upload is stored under inside its temporary folder.
UPLOAD_NAME = "upload.bin"

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]


class UploadTooLarge(WebError):
    """The request body grew past the upload limit while it was read (HTTP 413).

    Args:
        limit_bytes: the limit.
    """

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, too_large_message(limit_bytes))
        self.limit_bytes = int(limit_bytes)

class UploadLimitMiddleware:
    """ASGI middleware capping the request body of ``POST``/``PUT``/``PATCH`` requests, with a clear 413 answer.

    A declared ``Content-Length`` above the limit is answered at once, without reading the body or running the
    application. Otherwise the body is counted as the application reads it; the read that crosses the limit raises
    :class:`UploadTooLarge`, which the application's error handler answers with 413 (and, should the exception escape
    before a response started, this middleware answers itself). Starlette's own body limit answers a bare
    "Content Too Large" to the first case, which is why the web application uses this one.

    Args:
        app: the ASGI application.
        max_bytes: largest accepted body.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            declared = int(headers.get("content-length", "") or -1)
        except ValueError:
            declared = -1
        if declared > self.max_bytes:
            await self._refuse(scope, receive, send, headers)
            return
        received = 0
        started = False

        async def counting_receive() -> _Message:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: _Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except UploadTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, headers)

    async def _refuse(self, scope: _Scope, receive: _Receive, send: _Send, headers: dict[str, str]) -> None:
        from starlette.requests import Request

        if "app" in scope:  # inside the application: the error page with the site's layout
            response = error_response(Request(scope, receive), 413, too_large_message(self.max_bytes))
        else:
            response = error_response(None, 413, too_large_message(self.max_bytes), path=str(scope.get("path", "")),
                                      accept=headers.get("accept", ""))
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


@contextlib.contextmanager
def upload_folder(root: str | Path | None = None) -> Iterator[Path]:
    """A private temporary folder for one request, removed (with everything in it) when the block ends.

    Args:
        root: parent folder; ``None`` for the system's temporary folder.
    """
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xray-seg-upload-", dir=root) as folder:
        os.chmod(folder, 0o700)
        yield Path(folder)


def display_name(filename: str | None, max_length: int = 80) -> str:
    """The client's file name reduced to something safe to *show*: the base name, printable, at most ``max_length``.

    It is never used as a path. ``"../../etc/passwd"`` becomes ``"passwd"``; ``"C:\\scans\\chest.dcm"`` becomes
    ``"chest.dcm"``; an empty or unprintable name becomes ``"upload"``.
    """
    text = str(filename or "").replace("\\", "/").split("/")[-1]
    text = "".join(ch for ch in unicodedata.normalize("NFC", text) if ch.isprintable()).strip().lstrip(".")
    return text[:max_length] or "upload"


def check_content(path: Path) -> str:
    """The upload's format, decided by its content.

    Raises:
        WebError: 400 for an empty file, 415 for content that is not PNG, JPEG, TIFF or DICOM.
    """
    if path.stat().st_size == 0:
        raise WebError(400, "The file is empty (0 bytes). Choose a PNG, JPEG or DICOM radiograph.", "Empty file")
    fmt = sniff_format(path)
    if fmt not in ACCEPTED_FORMATS:
        found = f"{fmt.upper()} content" if fmt else "content that is not an image"
        raise WebError(
            415,
            f"The file holds {found}. Only PNG, JPEG, TIFF and DICOM radiographs are accepted; the type is decided "
            "by the file's content, not by its name or extension.",
        )
    return fmt


def _read(path: Path, voi: bool) -> XRayImage:
    from pipeline.dicom.errors import strip_path

    try:
        image = read_image(path, voi=voi)
    except UnsupportedImageError as err:
        raise WebError(415, strip_path(str(err), path).rstrip(".") + ". Upload a single-frame grayscale radiograph.",
                       "Unsupported image") from err
    except ImageReadError as err:
        raise WebError(400, "The file could not be read: " + strip_path(str(err), path), "Unreadable file") from err
    except Exception as err:  # decoders raise many types (e.g. Pillow's DecompressionBombError)
        raise WebError(400, f"The file could not be decoded ({type(err).__name__}).", "Unreadable file") from err
    if image.pixels.ndim != 2 or min(image.shape) < 2:
        raise WebError(415, f"The image has shape {image.pixels.shape}; a 2D radiograph is needed.",
                       "Unsupported image")
    return image


def _seg_download(path: Path, mask: np.ndarray, predictor: Predictor, notes: list[str],
                  display: str = "") -> Download | None:
    """The DICOM SEG of an uploaded DICOM, built in memory; ``None`` (and a note) when it cannot be made."""
    import io

    import pydicom

    from pipeline.dicom.seg import AlgorithmInfo, build_segmentation, seg_filename

    if predictor.num_classes != 1:
        notes.append("No DICOM SEG: the model is multi-class; SEG output needs the binary lung model.")
        return None
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        algorithm = AlgorithmInfo(name=predictor.model_name or "xray-seg",
                                  version=predictor.model_version or "unversioned")
        seg = build_segmentation(header, mask, algorithm)
        buffer = io.BytesIO()
        seg.save_as(buffer)
    except Exception as err:  # noqa: BLE001 - an odd header must not cost the user the rest of the result
        logger.warning("DICOM SEG could not be built: %s", type(err).__name__)
        notes.append(f"No DICOM SEG: it could not be built from this file's header ({type(err).__name__}).")
        return None
    data = buffer.getvalue()
    return Download("seg", "DICOM SEG", f"{download_stem(display)}_seg.dcm" if display else seg_filename(header),
                    data_url(data, "application/dicom"), len(data))


def _selection_note(path: Path) -> str | None:
    """A note when the batch command's selection rules would skip this DICOM (lateral view, other modality, ...)."""
    try:
        import pydicom

        from pipeline.dicom.selection import SelectionRules

        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        selected, reason = SelectionRules.load(None).evaluate(header)
    except Exception:  # noqa: BLE001 - a note is optional
        return None
    return None if selected else f"The batch command would skip this file ({reason}); the model may not fit it."


def segment_upload(predictor: Predictor, path: Path, title: str, max_pixels: int | None = None) -> CaseView:
    """Segment an uploaded file (already saved at ``path``) and render its detail view.

    The file is read by :func:`pipeline.io.read_image` (owned DICOM photometrics) and segmented by
    :func:`pipeline.web.inference.segment_image` (the batch's road and QC).

    Args:
        predictor: the Predictor.
        path: the saved upload.
        title: page heading (the sanitised client file name).
        max_pixels: pixel limit checked on the header before decoding (``None``: the batch's default).

    Returns:
        The view, with every picture and download inline.

    Raises:
        WebError: 400/415 for empty, unrecognised, unreadable or unsupported files; 413 for images whose header
            claims more pixels than ``max_pixels``.
    """
    from pipeline.web.capacity import check_upload_pixels

    fmt = check_content(path)
    check_upload_pixels(path, fmt, max_pixels)
    t0 = time.perf_counter()
    image = _read(path, bool(predictor.voi))
    t1 = time.perf_counter()
    result = segment_image(predictor, image)
    t2 = time.perf_counter()
    notes: list[str] = []
    downloads: list[Download] = []
    if fmt == "dicom":
        note = _selection_note(path)
        if note:
            notes.append(note)
        seg = _seg_download(path, result.mask, predictor, notes, title)
        if seg is not None:
            downloads.append(seg)
    view = build_case_view(
        title,
        image,
        result.mask,
        result.foreground,
        binary=predictor.num_classes == 1,
        quality=result.quality,
        origin="upload",
        model_name=predictor.model_name,
        model_version=predictor.model_version,
        sop_instance_uid=str(image.meta.get("SOPInstanceUID", "")),
        downloads=downloads,
        notes=notes,
        context=dicom_context(path) if fmt == "dicom" else {},
    )
    view.seconds = {"read": t1 - t0, "segment": t2 - t1, "total": time.perf_counter() - t0}
    logger.info("upload segmented: %s %dx%d, %.2f s, flags %s", fmt, image.shape[0], image.shape[1],
                view.seconds["total"], ",".join(view.flags) or "none")
    return view
