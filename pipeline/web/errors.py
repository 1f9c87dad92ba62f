"""Errors the web application reports to the user, and the handlers that turn *every* failure into a clear message.

A browser gets an HTML page with a title and a sentence saying what went wrong and what to do; an API client (paths
under ``/api/``, or a request that does not accept HTML) gets ``{"error": ..., "message": ..., "status": ...}``.
Nothing ever shows a stack trace, an exception's internals or a server path: unexpected exceptions are logged on the
server and answered with a generic 500 message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["WebError", "error_response", "install_error_handlers", "too_large_message", "wants_json"]

logger = logging.getLogger(__name__)

_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "File too large",
    415: "Unsupported file",
    422: "Invalid request",
    500: "Internal error",
    503: "Not available",
}


class WebError(Exception):
    """A failure with a status code and a message meant for the user.

    Args:
        status: HTTP status code.
        message: what went wrong and what to do, in one or two sentences (no paths, no internals).
        title: short heading; defaults to the usual name of ``status``.
        headers: extra response headers (e.g. ``Retry-After`` of a 503).
    """

    def __init__(self, status: int, message: str, title: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.title = title or _TITLES.get(self.status, "Error")
        self.headers = dict(headers or {})


def too_large_message(limit_bytes: int | None) -> str:
    """The message of a 413 answer (the request body was larger than the upload limit)."""
    limit = f" of {limit_bytes / (1024 * 1024):.3g} MB" if limit_bytes else ""
    return (f"The upload is larger than the limit{limit}; nothing was kept. Send a smaller file (or start the "
            "server with a larger --max-upload-mb).")


def wants_json(path: str, accept: str) -> bool:
    """True when the answer to a request should be JSON: API paths, or clients that do not accept HTML."""
    return path.startswith("/api/") or "text/html" not in accept.lower()


def error_response(request: Request | None, status: int, message: str, title: str | None = None,
                   path: str = "", accept: str = "", headers: dict[str, str] | None = None) -> Response:
    """The error answer, as HTML (error page) or JSON.

    Args:
        request: the request (``None`` from ASGI middleware, which passes ``path`` and ``accept`` instead).
        status: HTTP status code.
        message: the user-facing message.
        title: heading; defaults to the usual name of ``status``.
        path: request path when ``request`` is ``None``.
        accept: ``Accept`` header when ``request`` is ``None``.
        headers: extra headers of the answer.
    """
    title = title or _TITLES.get(status, "Error")
    if request is not None:
        path, accept = request.url.path, request.headers.get("accept", "")
    headers = {"Cache-Control": "no-store", **(headers or {})}
    if wants_json(path, accept):
        return JSONResponse({"error": title, "message": message, "status": status}, status, headers=headers)
    state = getattr(getattr(request, "app", None), "state", None)
    templates = getattr(state, "templates", None)
    if templates is not None and request is not None:
        base = getattr(state, "base_context", None)
        context: dict[str, Any] = base(nav="error") if callable(base) else {}
        context.update(title=title, message=message, status=status)
        return templates.TemplateResponse(request, "error.html", context, status_code=status, headers=headers)
    from html import escape

    body = (f"<!doctype html><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<h1>{escape(title)}</h1><p>{escape(message)}</p><p><a href='/'>Back</a></p>")
    return HTMLResponse(body, status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers: :class:`WebError`, HTTP errors (404, 405, ...), invalid parameters and the rest."""

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        return error_response(request, exc.status, exc.message, exc.title, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {
            404: "There is nothing at this address.",
            405: "This address does not accept that method.",
            413: too_large_message(getattr(request.app.state, "max_upload_bytes", None)),
        }
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail else ""
        generic = _TITLES.get(exc.status_code, "")
        message = messages.get(exc.status_code) or (detail if detail and detail != generic else "Request refused.")
        return error_response(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        names = sorted({str(err.get("loc", ["", "?"])[-1]) for err in exc.errors()})
        return error_response(request, 422, f"Invalid or missing parameter(s): {', '.join(names)}.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(request, 500, "Something went wrong on the server; the details were logged there. "
                                            "Nothing you sent was kept.")
