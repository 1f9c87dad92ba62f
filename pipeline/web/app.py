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
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from pipeline.inference.predictor import Predictor
from pipeline.web.case import LOW_CONFIDENCE, QC_FLAG_TEXT, CaseView, Download
from pipeline.web.decisions import DECISIONS, ReviewLog, case_key
from pipeline.web.capacity import UploadSlots, check_upload_pixels, default_memory_budget, default_upload_slots
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
    upload_memory_mb: float | None = None,
    corrections_dir: str | Path | None = None,
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
        upload_memory_mb: memory the uploads in progress may reserve together (about 90 bytes per image pixel);
            ``None`` for 60 % of the memory available at start. An image larger than the whole budget gets 413.
        corrections_dir: dataset folder where corrected masks of batch cases are saved (``images/`` +
            ``masks/`` + ``seg/``); ``None`` for ``results_dir/corrections``.

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
    reviews = ReviewLog(results.folder) if results is not None else None
    corrections = Path(corrections_dir) if corrections_dir is not None else (
        results.folder / "corrections" if results is not None else None)
    pixel_cache: OrderedDict[int, bytes] = OrderedDict()
    cache_lock = threading.Lock()
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
    budget = int(upload_memory_mb * 2**20) if upload_memory_mb else default_memory_budget()
    slots = UploadSlots(upload_slots or default_upload_slots(), wait_s=upload_wait_s, memory_budget=budget)
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
            "decisions": DECISIONS,
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
                         page: int = 1, decision: str = "") -> Response:
        res = require_results()
        listing = _listing(res, status, review, q, page, reviews, decision)
        return templates.TemplateResponse(request, "batch.html", context(nav="batch", **listing))

    @app.get("/batch/case/{index}", include_in_schema=False)
    async def batch_case_page(request: Request, index: int) -> Response:
        res = require_results()

        def sink(payload: bytes) -> str:
            with cache_lock:
                pixel_cache[index] = payload
                pixel_cache.move_to_end(index)
                while len(pixel_cache) > 4:
                    pixel_cache.popitem(last=False)
            return f"/batch/pixels/{index}"

        view = await run_in_threadpool(res.case_view, index, predictor, sink)
        row = res.row(index)
        state = reviews.latest().get(case_key(row.sop_instance_uid, index)) if reviews else None
        if state is not None:
            view.review = {"decision": state.decision, "comment": state.comment, "time": state.time,
                           "corrected": state.corrected, "corrections": state.corrections}
            if state.corrected and state.correction.get("mask"):
                view.mask_full_url = f"/batch/corrected/{index}/mask"
                view.downloads.append(Download("corrected_mask", "Corrected mask (PNG)",
                                               f"{view.download_stem}_lung_mask_corrected.png",
                                               f"/batch/corrected/{index}/mask"))
                if state.correction.get("seg"):
                    view.downloads.append(Download("corrected_seg", "Corrected DICOM SEG (revision "
                                                   f"{state.correction.get('revision', '')})",
                                                   f"{view.download_stem}_seg_corrected.dcm",
                                                   f"/batch/corrected/{index}/seg"))
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

    @app.get("/batch/pixels/{index}", include_in_schema=False)
    async def batch_pixels(index: int) -> Response:
        res = require_results()
        with cache_lock:
            payload = pixel_cache.get(index)
        if payload is None:  # evicted or never shown: render the case again (fills the cache)
            holder: dict[str, bytes] = {}

            def keep(data: bytes) -> str:
                holder["data"] = data
                return ""

            await run_in_threadpool(res.case_view, index, None, keep)
            payload = holder.get("data")
            if payload is None:
                raise WebError(404, f"Case {index} has no readable image.", "Not found")
        return Response(payload, media_type="application/octet-stream")

    # ---- review decisions -----------------------------------------------------------------------------------------
    def record_decision(index: int, decision: str, comment: str) -> dict[str, Any]:
        res = require_results()
        row = res.row(index)
        if decision not in DECISIONS:
            raise WebError(400, f"Unknown decision; choose one of {', '.join(DECISIONS)}.", "Bad decision")
        try:
            return reviews.decide(case_key(row.sop_instance_uid, index), index, decision, comment)  # type: ignore[union-attr]
        except OSError as err:
            raise WebError(503, f"The decision could not be saved: the batch folder is not writable "
                                f"({err.strerror or type(err).__name__}).", "Not saved") from err

    @app.post("/batch/case/{index}/review", include_in_schema=False)
    async def review_form(request: Request, index: int) -> Response:
        async with request.form(max_files=0, max_fields=4, max_part_size=8 * 1024) as form:
            decision, comment = str(form.get("decision") or ""), str(form.get("comment") or "")
            go_next = str(form.get("next") or "") == "1"
        await run_in_threadpool(record_decision, index, decision, comment)
        target = f"/batch/case/{index}?saved=1"
        if go_next:
            order = [r.index for r in review_order(require_results().rows())]
            position = order.index(index)
            if position + 1 < len(order):
                target = f"/batch/case/{order[position + 1]}"
        return RedirectResponse(target, status_code=303)

    @app.post("/api/batch/{index}/review")
    async def review_api(request: Request, index: int) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError as err:
            raise WebError(400, "Send JSON: {\"decision\": \"accept\", \"comment\": \"...\"}.", "Bad request") from err
        if not isinstance(body, dict):
            raise WebError(400, "Send a JSON object with 'decision' and optionally 'comment'.", "Bad request")
        record = await run_in_threadpool(record_decision, index, str(body.get("decision") or ""),
                                         str(body.get("comment") or ""))
        return JSONResponse(record)

    @app.get("/batch/reviews.csv", include_in_schema=False)
    async def reviews_csv() -> Response:
        res = require_results()
        rows = review_order(res.rows())
        text = reviews.to_csv((case_key(r.sop_instance_uid, r.index), r.index, r.name) for r in rows)  # type: ignore[union-attr]
        name = f"{res.folder.name or 'batch'}_reviews.csv"
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    # ---- corrections ------------------------------------------------------------------------------------------------
    def save_corrected(index: int, data: bytes) -> dict[str, Any]:
        from pipeline.web.corrections import corrected_stem, decode_mask_png, save_correction

        res = require_results()
        row = res.row(index)
        if row.status != "ok":
            raise WebError(400, "Only segmented cases can be corrected.", "Not segmented")
        rows_cols = res.image_shape(index)
        mask = decode_mask_png(data, rows_cols)
        key = case_key(row.sop_instance_uid, index)
        state = reviews.latest().get(key)  # type: ignore[union-attr]
        revision = (state.corrections if state else 0) + 1
        previous, _ = res.stored_mask(index)
        try:
            saved = save_correction(Path(str(row.data.get("path") or "")), mask, corrections,  # type: ignore[arg-type]
                                    corrected_stem(row.sop_instance_uid, index), revision, previous,
                                    model_name=str(row.data.get("model_name") or ""),
                                    model_version=str(row.data.get("model_version") or ""),
                                    voi=bool(predictor.voi) if predictor else False)
            record = reviews.corrected(key, index, **saved.to_dict())  # type: ignore[union-attr]
        except OSError as err:
            raise WebError(503, "The correction could not be saved: the corrections folder is not writable "
                                f"({err.strerror or type(err).__name__}).", "Not saved") from err
        logger.info("correction saved for case %d (revision %d, %d pixels changed)", index, revision,
                    saved.changed_pixels)
        return record

    @app.post("/batch/case/{index}/correction", include_in_schema=False)
    async def correction(request: Request, index: int) -> JSONResponse:
        if not request.headers.get("content-type", "").startswith("image/png"):
            raise WebError(415, "Send the corrected mask as image/png.", "Unsupported")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
        record = await run_in_threadpool(save_corrected, index, bytes(data))
        return JSONResponse(record)

    @app.get("/batch/corrected/{index}/{kind}", include_in_schema=False)
    async def corrected_file(index: int, kind: str) -> Response:
        res = require_results()
        row = res.row(index)
        state = reviews.latest().get(case_key(row.sop_instance_uid, index))  # type: ignore[union-attr]
        rel = str((state.correction if state else {}).get(kind if kind in ("mask", "seg") else "") or "")
        if not rel or corrections is None:
            raise WebError(404, f"No corrected {kind} was saved for case {index}.", "Not found")
        path = (corrections / rel).resolve()
        if not path.is_relative_to(corrections.resolve()) or not path.is_file():
            raise WebError(404, f"The corrected {kind} of case {index} is missing.", "Not found")
        media = "image/png" if kind == "mask" else "application/dicom"
        return FileResponse(path, media_type=media)

    # ---- JSON ---------------------------------------------------------------------------------------------------
    @app.post("/api/predict")
    async def predict_api(request: Request) -> JSONResponse:
        view = await handle_upload(request)
        return JSONResponse(view.to_dict())

    @app.get("/api/batch")
    async def batch_api(status: str = "", review: bool = False, q: str = "", page: int = 1,
                        decision: str = "") -> JSONResponse:
        listing = _listing(require_results(), status, review, q, page, reviews, decision)
        rows = [
            {"index": r.index, "status": r.status, "code": r.code, "reason": r.reason, "name": r.name,
             "sop_instance_uid": r.sop_instance_uid, "confidence": r.confidence, "qc_flags": r.flags,
             "low_confidence": r.low_confidence, "needs_review": r.needs_review, "priority": r.priority,
             "lung_area_cm2": r.lung_area_cm2, "decision": r.decision, "comment": r.comment,
             "corrected": r.corrected}
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
    from pipeline.web.upload import check_content

    rows, cols = check_upload_pixels(path, check_content(path), max_pixels)  # header only: nothing decoded yet
    with slots.hold(rows * cols):
        return segment_upload(predictor, path, name, max_pixels)


def _listing(results: BatchResults, status: str, review: bool, q: str, page: int, reviews: ReviewLog | None = None,
             decision: str = "") -> dict[str, Any]:
    """The rows of one listing page, in review order, with the filter values, counts and review decisions."""
    status = status if status in ("ok", "skipped", "error") else ""
    decision = decision if decision in (*DECISIONS, "undecided", "corrected") else ""
    q = q[:200]
    ordered = review_order(results.rows())
    state = reviews.latest() if reviews is not None else {}
    decided = {"accept": 0, "reject": 0, "needs_correction": 0, "corrected": 0}
    for row in ordered:
        review_state = state.get(case_key(row.sop_instance_uid, row.index))
        if review_state is not None:
            row.decision, row.comment, row.corrected = review_state.decision, review_state.comment, \
                review_state.corrected
            if row.decision:
                decided[row.decision] += 1
            decided["corrected"] += int(row.corrected)
    matching = filter_rows(ordered, status=status, review=review, text=q, decision=decision)
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
        "filters": {"status": status, "review": review, "q": q, "decision": decision},
        "decided": decided,
    }
