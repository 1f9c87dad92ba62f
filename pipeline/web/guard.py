"""The outermost layer of the web application: who may talk to it, and what every answer carries.

:class:`RequestGuard` is a small ASGI middleware that

* answers only the host names the server was started for (``Host`` allow-list), so a DNS-rebinding page cannot read
  the case pages or ``/api/batch`` through a name that points at 127.0.0.1;
* refuses state-changing requests (``POST``, ``PUT``, ``PATCH``, ``DELETE``) sent by a page of another origin
  (``Origin`` header not this server, or ``Sec-Fetch-Site: cross-site``), so another site cannot submit uploads,
  review decisions or corrections in the reader's browser;
* adds the security headers (:data:`SECURITY_HEADERS`) to *every* answer, the 400/403/413/500 ones included;
* turns an unexpected exception into the 500 error page (logged once, one line at ERROR, the traceback at DEBUG)
  without closing the connection, and treats a client that went away as what it is (DEBUG, no error).

It sits outside FastAPI's own middleware so that nothing the application does can bypass it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from pipeline.web.errors import error_response

__all__ = ["SECURITY_HEADERS", "RequestGuard", "default_allowed_hosts", "host_name"]

logger = logging.getLogger(__name__)

#: Headers added to every answer (``Cache-Control`` is left to the static files, which may be cached).
SECURITY_HEADERS: dict[str, str] = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; connect-src 'self' data:"
    ),
}

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]


def host_name(value: str) -> str:
    """The host part of a ``Host`` header value or host option, lower case, without port or IPv6 brackets.

    ``"LocalHost:8000"`` -> ``"localhost"``; ``"[::1]:8000"`` -> ``"::1"``; ``"::1"`` -> ``"::1"``.
    """
    text = value.strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text  # a bare IPv6 address, or a name without port


def default_allowed_hosts(bind_host: str = "127.0.0.1", extra: Iterable[str] = ()) -> list[str]:
    """The host names answered by default: the loopback names, the bound address (unless a wildcard) and ``extra``."""
    hosts = ["127.0.0.1", "localhost", "::1"]
    if bind_host and host_name(bind_host) not in ("0.0.0.0", "::", ""):
        hosts.append(host_name(bind_host))
    hosts.extend(host_name(h) for h in extra if h and h.strip())
    return list(dict.fromkeys(hosts))


class RequestGuard:
    """ASGI middleware: Host allow-list, cross-origin refusal, security headers, a safe 500.

    Args:
        app: the ASGI application.
        allowed_hosts: host names (no port) answered; ``"*"`` answers any (only for tests behind a proxy that checks).
        headers: headers added to every answer; defaults to :data:`SECURITY_HEADERS`.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], allowed_hosts: Iterable[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.app = app
        hosts = list(allowed_hosts) if allowed_hosts is not None else default_allowed_hosts()
        self.any_host = "*" in hosts
        self.allowed_hosts = frozenset(host_name(h) for h in hosts if h != "*")
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in (SECURITY_HEADERS if headers is None else headers).items()]

    # ---- checks -------------------------------------------------------------------------------------------------
    def _host_allowed(self, host: str) -> bool:
        return self.any_host or host_name(host) in self.allowed_hosts

    @staticmethod
    def _cross_origin(headers: dict[str, str]) -> bool:
        site = headers.get("sec-fetch-site")
        if site is not None:  # browsers say it themselves (and send Origin: null under Referrer-Policy no-referrer)
            return site not in ("same-origin", "none")
        origin = headers.get("origin")
        if origin is None:
            return False  # not sent by a browser page (curl, scripts): the Host check is the guard
        if origin == "null":
            return True
        parts = urlsplit(origin)
        return parts.netloc.lower() != headers.get("host", "").lower()

    # ---- ASGI ---------------------------------------------------------------------------------------------------
    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, accept = str(scope.get("path", "")), headers.get("accept", "")
        started = False
        static = path.startswith("/static/")

        async def send_with_headers(message: _Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers
                         if k not in present and not (static and k == b"cache-control")]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if not self._host_allowed(headers.get("host", "")):
            logger.warning("refused a request for a host name this server was not started for (see --allow-host)")
            response = error_response(None, 400, "This server does not answer that host name. Open it through "
                                      "http://127.0.0.1:PORT/ or a name given with --allow-host.",
                                      "Unknown host", path=path, accept=accept)
            await response(scope, receive, send_with_headers)
            return
        if scope.get("method") in _UNSAFE_METHODS and self._cross_origin(headers):
            logger.warning("refused a cross-origin %s %s", scope.get("method"), path)
            response = error_response(None, 403, "Requests from pages of other sites are refused. Use the page "
                                      "served by this server.", "Forbidden", path=path, accept=accept)
            await response(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - the safety net: every failure becomes a clean answer
            from starlette.requests import ClientDisconnect, Request

            if isinstance(exc, ClientDisconnect) or type(exc).__name__ in ("ClientDisconnected", "EndOfStream"):
                logger.debug("client went away during %s %s", scope.get("method"), path)
                return
            logger.error("unexpected error on %s %s: %s (traceback at debug level)", scope.get("method"), path,
                         type(exc).__name__)
            logger.debug("traceback of the unexpected error", exc_info=exc)
            if started:  # too late for an error page: the answer is cut, as the protocol requires
                return
            message = ("Something went wrong on the server; the details were logged there. Nothing you sent was "
                       "kept.")
            request = Request(scope, receive) if "app" in scope else None
            response = error_response(request, 500, message, path=path, accept=accept)
            await response(scope, receive, send_with_headers)
