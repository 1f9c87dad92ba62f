"""The review web application: upload a radiograph and see its segmentation, or browse a batch run worst first.

Pages (server-rendered Jinja2, a little vanilla JavaScript, no front-end build):

=================================  ====================================================================================
``GET /``                          upload page (drop or choose a PNG, JPEG, TIFF or DICOM file)
``POST /predict``                  segment the upload; answers the detail page with every result inline
``GET /batch``                     the batch folder's rows in review order; ``?status=&review=1&q=&page=`` filter
``GET /batch/case/{index}``        detail page of manifest row ``index``
``GET /batch/files/{index}/{kind}`` the stored ``overlay``, ``mask`` (PNG) or ``seg`` (DICOM SEG) of a row
``POST /api/predict``              the upload's results as JSON (same fields as the page, images as ``data:`` URLs)
``GET /api/batch``                 the rows in review order as JSON (same filters)
``GET /api/health``                liveness, model name and version
=================================  ====================================================================================

Every answer, errors included, carries ``Cache-Control: no-store`` (pictures of patients must not linger in browser
caches), a strict Content-Security-Policy (scripts and styles only from ``/static``), ``X-Content-Type-Options:
nosniff``, ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer`` (:mod:`pipeline.web.guard`, which also
answers only the allowed host names and refuses cross-origin POSTs).

Examples::

    >>> from pipeline.inference import load_predictor
    >>> app = create_app(load_predictor("models/model.pt"), results_dir="results")
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from pipeline.inference.predictor import Predictor
from pipeline.web.case import LOW_CONFIDENCE, QC_FLAG_TEXT, CaseView
from pipeline.web.capacity import UploadSlots, default_upload_slots
from pipeline.web.errors import WebError, install_error_handlers
from pipeline.web.guard import RequestGuard
from pipeline.web.review import FILE_KINDS, PAGE_SIZE, BatchResults, filter_rows, review_order
from pipeline.web.upload import (
    ACCEPTED_FORMATS,
    UPLOAD_NAME,
    UploadLimitMiddleware,
    display_name,
    segment_upload,
    upload_folder,
)

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "create_app"]

logger = logging.getLogger(__name__)

#: Default upload limit in MB (an uncompressed 3000 x 3000 16-bit radiograph is about 18 MB).
DEFAULT_MAX_UPLOAD_MB: float = 64.0

_HERE = Path(__file__).resolve().parent



def _fmt(value: Any, digits: int = 3) -> str:
    """Jinja filter: a number rounded for display, ``"–"`` when unknown."""
    if value is None:
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "–"
    if number.is_integer() and abs(number) >= 1:
        return f"{int(number):,}"
    return f"{number:.{digits}g}" if abs(number) < 1 else f"{number:,.{max(0, digits - 2)}f}"


def _fixed(value: Any, decimals: int = 3) -> str:
    """Jinja filter: a number with a fixed number of decimals, ``"–"`` when unknown."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{number:.{decimals}f}" if math.isfinite(number) else "–"


def _size(value: Any) -> str:
    """Jinja filter: a byte count as ``"12 kB"``."""
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def create_app(
    predictor: Predictor | None,
    results_dir: str | Path | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    upload_tmp_dir: str | Path | None = None,
    title: str = "X-ray lung segmentation",
    allowed_hosts: Sequence[str] | None = None,
    max_pixels: int | None = None,
    upload_slots: int | None = None,
    upload_wait_s: float = 10.0,
) -> FastAPI:
    """Build the web application.

    Args:
        predictor: the :class:`~pipeline.inference.Predictor` that segments uploads (and recomputes probability maps
            of batch cases); ``None`` serves the batch review only.
        results_dir: a batch output folder (``xray-seg predict --out``) to review; ``None`` hides the batch pages.
        max_upload_mb: largest accepted upload in MB (larger requests get 413). Defaults to 64.
        upload_tmp_dir: parent of the per-request temporary folders; ``None`` for the system's temporary folder.
        title: the site title.
        allowed_hosts: host names answered (``Host`` header, port ignored); ``None`` for 127.0.0.1, localhost and
            ::1. Other names get 400, so a DNS-rebinding page cannot read the pages.
        max_pixels: pixel limit of an upload, checked on its header before decoding (``None``: the batch's
            default of ``pipeline.io.limits``).
        upload_slots: uploads decoded and segmented at once (``None``: what the free memory holds, 1-4); others
            wait up to ``upload_wait_s`` seconds, then get 503.
        upload_wait_s: see ``upload_slots``.

    Returns:
        The FastAPI application (serve it with uvicorn, bound to localhost unless the network is trusted).

    Raises:
        FileNotFoundError: ``results_dir`` does not exist.
        ValueError: ``max_upload_mb`` is not positive.
    """
    if not max_upload_mb > 0:
        raise ValueError(f"max_upload_mb must be positive, got {max_upload_mb}.")
    max_bytes = int(max_upload_mb * 1024 * 1024)
    results = BatchResults(results_dir) if results_dir is not None else None
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.filters["fmt"] = _fmt
    templates.env.filters["size"] = _size
    templates.env.filters["fixed"] = _fixed
    app.state.templates = templates
    app.state.predictor = predictor
    app.state.results = results
    app.state.max_upload_bytes = max_bytes
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    install_error_handlers(app)
    app.add_middleware(UploadLimitMiddleware, max_bytes=max_bytes)
    app.add_middleware(RequestGuard, allowed_hosts=allowed_hosts)  # outermost: every answer passes through it
    slots = UploadSlots(upload_slots or default_upload_slots(), wait_s=upload_wait_s)
    app.state.upload_slots = slots
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs UIDs at INFO for every SEG it builds

    def context(**values: Any) -> dict[str, Any]:
        return {
            "site_title": title,
            "model_name": predictor.model_name if predictor else "",
            "model_version": predictor.model_version if predictor else "",
            "has_model": predictor is not None,
            "has_batch": results is not None,
            "max_upload_bytes": max_bytes,
            "max_upload_mb": max_upload_mb,
            "accepted": ", ".join(f.upper() for f in ACCEPTED_FORMATS),
            "low_confidence": LOW_CONFIDENCE,
            "flag_text": QC_FLAG_TEXT,
            **values,
        }

    app.state.base_context = context

    def require_results() -> BatchResults:
        if results is None:
            raise WebError(404, "No batch folder is open: start the server with --results DIR "
                                "(the --out folder of `xray-seg predict`).", "No batch folder")
        return results

    async def handle_upload(request: Request) -> CaseView:
        if predictor is None:
            raise WebError(503, "No model is loaded, so uploads cannot be segmented: start the server with --model.")
        async with request.form(max_files=1, max_fields=8, max_part_size=64 * 1024) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise WebError(400, "No file was sent: choose a PNG, JPEG or DICOM radiograph (form field 'file').",
                               "No file")
            name = display_name(upload.filename)
            with upload_folder(upload_tmp_dir) as folder:  # removed when this block ends, whatever happens
                target = folder / UPLOAD_NAME
                async with await anyio.open_file(target, "wb") as out:
                    while chunk := await upload.read(1 << 20):
                        await out.write(chunk)
                return await run_in_threadpool(_segment_in_slot, slots, predictor, target, name, max_pixels)

    # ---- pages --------------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def upload_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "upload.html", context(nav="upload"))

    @app.post("/predict", include_in_schema=False)
    async def predict_page(request: Request) -> Response:
        view = await handle_upload(request)
        return templates.TemplateResponse(request, "case.html", context(nav="case", case=view))

    @app.get("/batch", include_in_schema=False)
    async def batch_page(request: Request, status: str = "", review: bool = False, q: str = "",
                         page: int = 1) -> Response:
        res = require_results()
        listing = _listing(res, status, review, q, page)
        return templates.TemplateResponse(request, "batch.html", context(nav="batch", **listing))

    @app.get("/batch/case/{index}", include_in_schema=False)
    async def batch_case_page(request: Request, index: int) -> Response:
        res = require_results()
        view = await run_in_threadpool(res.case_view, index, predictor)
        order = [r.index for r in review_order(res.rows())]
        position = order.index(index)
        view.prev_index = order[position - 1] if position > 0 else None
        view.next_index = order[position + 1] if position + 1 < len(order) else None
        return templates.TemplateResponse(request, "case.html", context(nav="case", case=view,
                                                                         position=position + 1, total=len(order)))

    @app.get("/batch/files/{index}/{kind}", include_in_schema=False)
    async def batch_file(index: int, kind: str) -> Response:
        path = require_results().file_path(index, kind)
        if kind == "seg":
            return FileResponse(path, media_type=FILE_KINDS[kind][1], filename=path.name)
        return FileResponse(path, media_type=FILE_KINDS[kind][1])

    # ---- JSON ---------------------------------------------------------------------------------------------------
    @app.post("/api/predict")
    async def predict_api(request: Request) -> JSONResponse:
        view = await handle_upload(request)
        return JSONResponse(view.to_dict())

    @app.get("/api/batch")
    async def batch_api(status: str = "", review: bool = False, q: str = "", page: int = 1) -> JSONResponse:
        listing = _listing(require_results(), status, review, q, page)
        rows = [
            {"index": r.index, "status": r.status, "code": r.code, "reason": r.reason, "name": r.name,
             "sop_instance_uid": r.sop_instance_uid, "confidence": r.confidence, "qc_flags": r.flags,
             "low_confidence": r.low_confidence, "needs_review": r.needs_review, "priority": r.priority,
             "lung_area_cm2": r.lung_area_cm2}
            for r in listing["rows"]
        ]
        return JSONResponse({"counts": listing["counts"], "matching": listing["matching"], "page": listing["page"],
                             "pages": listing["pages"], "source": listing["source"], "rows": rows})

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_name": predictor.model_name if predictor else None,
            "model_version": predictor.model_version if predictor else None,
            "batch": results is not None,
        }

    return app


def _segment_in_slot(slots: UploadSlots, predictor: Predictor, path: Path, name: str,
                     max_pixels: int | None) -> CaseView:
    with slots.hold():
        return segment_upload(predictor, path, name, max_pixels)


def _listing(results: BatchResults, status: str, review: bool, q: str, page: int) -> dict[str, Any]:
    """The rows of one listing page, in review order, with the filter values and counts."""
    status = status if status in ("ok", "skipped", "error") else ""
    q = q[:200]
    ordered = review_order(results.rows())
    matching = filter_rows(ordered, status=status, review=review, text=q)
    pages = max(1, math.ceil(len(matching) / PAGE_SIZE))
    page = min(max(1, int(page)), pages)
    return {
        "rows": matching[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        "counts": results.counts(),
        "matching": len(matching),
        "page": page,
        "pages": pages,
        "source": results.source,
        "folder_name": results.folder.name,
        "filters": {"status": status, "review": review, "q": q},
    }
