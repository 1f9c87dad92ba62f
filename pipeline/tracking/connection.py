"""Reaching the tracking server: bounded HTTP calls, an up-front reachability check, and telling outages from errors.

MLflow's HTTP client retries a refused connection for about four minutes by default (7 retries, backoff factor 2)
and waits up to 120 s for an answer. A training that logs every epoch would stall that long per call when the
server is down. :func:`bound_http_requests` lowers these limits for the process (unless the user set them), and
the buffered client (:mod:`pipeline.tracking.buffer`) keeps what could not be sent instead of waiting.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "HTTP_LIMITS",
    "TrackingUnavailableError",
    "bound_http_requests",
    "check_tracking_uri",
    "is_remote",
    "is_transport_error",
    "server_answers",
]

logger = logging.getLogger(__name__)

#: MLflow client limits set for the process when the user has not set them: a refused connection fails in about
#: 3 s (2 retries, backoff 1 s), a server that accepts but never answers in about 3 x 10 s.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


class TrackingUnavailableError(RuntimeError):
    """The tracking store cannot be reached; the message names the URI and how to fix it."""


def bound_http_requests(limits: dict[str, str] | None = None) -> dict[str, str]:
    """Set MLflow's HTTP retry and timeout variables for this process where the user has not set them.

    MLflow reads them at every request, so this takes effect for clients that already exist.

    Returns:
        The variables this call set (empty when the user had set them all).
    """
    changed = {}
    for name, value in (limits or HTTP_LIMITS).items():
        if name not in os.environ:
            os.environ[name] = changed[name] = value
    return changed


def is_remote(uri: str) -> bool:
    """Whether ``uri`` is an HTTP(S) tracking server (as opposed to a local database)."""
    return uri.startswith(("http://", "https://"))


def server_answers(uri: str, timeout: float = 2.0) -> bool:
    """Whether anything answers HTTP at ``uri`` within ``timeout`` seconds (any status code counts: it is up).

    ``/health`` is asked because ``mlflow server`` answers it cheaply; another server's 404 still proves it is up.
    """
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def check_tracking_uri(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, with the fix in the message, when the tracking store ``uri`` cannot be used.

    * ``http(s)://``: something must answer within ``timeout`` seconds (polled every second);
    * ``sqlite:///path``: the database's folder must exist or be creatable, and be writable.

    Raises:
        TrackingUnavailableError: naming the URI, what failed and what to do.
    """
    if is_remote(uri):
        deadline = time.monotonic() + timeout
        while True:
            if server_answers(uri, timeout=min(3.0, timeout)):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} does not answer (waited {timeout:.0f} s). Start it (see docs/mlflow.md, "
            "'A tracking server for a team'), or point --tracking_uri / MLFLOW_TRACKING_URI at a running one, or "
            "train without tracking: drop --tracking, or set XRAY_SEG_TRACKING_UNREACHABLE=skip to go on untracked."
        )
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingUnavailableError(
                f"MLflow store {uri}: cannot create its folder {folder} ({err.strerror}). Choose another "
                "--output_dir or --tracking_uri."
            ) from err
        if not os.access(folder, os.W_OK):
            raise TrackingUnavailableError(
                f"MLflow store {uri}: folder {folder} is not writable. Choose another --output_dir or --tracking_uri."
            )


def is_transport_error(err: BaseException) -> bool:
    """Whether ``err`` says the store could not be reached (keep the record), not that it refused the request.

    MLflow raises ``RestException`` when the server answered with an error (a bad request: buffering it would not
    help) and a plain ``MlflowException`` ("API request to ... failed") when no answer came; a local database that
    is busy also raises a plain ``MlflowException``.
    """
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(err, RestException):
        return False
    if isinstance(err, MlflowException):
        text = str(err)
        return "API request" in text or "database is locked" in text
    return isinstance(err, (OSError, TimeoutError)) or type(err).__module__.startswith(("requests", "urllib3"))
