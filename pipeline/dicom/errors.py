"""Short, stable reason codes for files that cannot be segmented, and path-free reason texts.

The batch manifest records, for every file that fails, a machine-readable ``code`` (for counting and filtering) and
a human-readable ``reason``. Reader messages start with the file path; the reason drops it (the manifest has its own
``path`` column, and the reason is also logged, where paths could reveal patient names).

=====================  ==============================================================================
code                   meaning
=====================  ==============================================================================
``empty``              zero-byte file
``not_dicom``          content is neither DICOM nor a supported image
``truncated``          the file ends early (interrupted transfer or copy)
``no_pixel_data``      a DICOM object without pixel data
``unsupported_syntax`` no decoder for the transfer syntax (or a plugin is missing)
``decode_failed``      the decoder failed on the pixel data
``colour``             photometric interpretation other than MONOCHROME1/2
``multi_frame``        more than one frame
``unsupported``        another image the pipeline refuses
``too_large``          the header claims more pixels than the pixel limit (refused before decoding)
``out_of_memory``      decoding ran out of memory (depends on the machine: redone on resume)
``read_failed``        the operating system failed the read (I/O error, file vanished: redone on resume)
``unreadable``         any other read failure
=====================  ==============================================================================

Reasons are always one line (:func:`one_line`): a CSV cell or a log line never holds a library's multi-line message
or traceback; the full detail goes to the debug log, after :func:`redact` has removed any header value from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.io.image import ImageReadError, UnsupportedImageError
from pipeline.io.limits import PixelLimitError

__all__ = ["MAX_REASON_LENGTH", "READ_ERROR_CODES", "classify_read_error", "one_line", "redact", "strip_path"]

#: Every code :func:`classify_read_error` returns.
READ_ERROR_CODES: tuple[str, ...] = (
    "empty", "not_dicom", "truncated", "no_pixel_data", "unsupported_syntax", "decode_failed", "colour",
    "multi_frame", "unsupported", "too_large", "out_of_memory", "read_failed", "unreadable",
)

#: Longest reason kept in a manifest cell or log line (the full text goes to the debug log).
MAX_REASON_LENGTH: int = 240

#: Value representations whose values may identify a patient (names, IDs, dates, free text); UIDs are not redacted.
_IDENTIFYING_VRS = {"PN", "LO", "SH", "DA", "DT", "TM", "AS", "LT", "ST", "UT", "UC", "CS", "IS", "DS", "AE"}


def one_line(text: Any, limit: int = MAX_REASON_LENGTH) -> str:
    """``text`` as one line: whitespace runs (newlines, tabs) become one space, cut to ``limit`` characters.

    Only the first line of a library message that starts a listing (``"...:\n  handler A\n  handler B"``) carries
    the point; the rest is kept up to the limit and marked with an ellipsis when cut.
    """
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "\u2026"


def _header_strings(header: Any) -> Iterable[str]:
    """Every string value of the identifying elements of a pydicom dataset (top level and one sequence level)."""
    if header is None:
        return
    try:
        elements = list(header)
    except Exception:  # noqa: BLE001 - a header that cannot even be iterated has nothing we could redact
        return
    for elem in elements:
        try:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    yield from _header_strings(item)
                continue
            if elem.VR not in _IDENTIFYING_VRS or elem.value is None:
                continue
            values = elem.value if isinstance(elem.value, (list, tuple)) or elem.VM > 1 else [elem.value]
            for value in values:
                text = str(value).strip()
                if text:
                    yield text
                    for part in re.split(r"[\^=]", text):  # name components appear on their own in messages
                        if part.strip():
                            yield part.strip()
        except Exception:  # noqa: BLE001 - a value pydicom cannot convert: its raw bytes are still secret
            raw = getattr(elem, "value", None)
            if isinstance(raw, bytes) and raw.strip():
                yield raw.decode("latin-1", "replace").strip()


def redact(text: Any, header: Any = None, extra: Iterable[str] = ()) -> str:
    """``text`` with every header value (names, IDs, dates, free text; see ``_IDENTIFYING_VRS``) replaced.

    Library messages quote the values they refuse (``"Unable to convert '1965-03-12' to 'DA' object"``); run them
    through here before they reach a log, even at debug level.

    Args:
        text: the message.
        header: the pydicom dataset whose values must not appear.
        extra: further strings to hide (e.g. the input path).
    """
    out = str(text)
    secrets = {s for s in list(_header_strings(header)) + [str(e) for e in extra] if len(s) >= 3}
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: a name before its components
        out = out.replace(secret, "<value>")
    return out

_NO_DECODER = ("plugins are missing", "missing required dependencies", "decoders", "is not supported")
_TRUNCATED = ("less than expected", "truncat", "end of file", "premature")


def strip_path(message: str, path: str | Path) -> str:
    """``message`` without the leading ``"<path>: "`` and with any other mention of ``path`` replaced by ``<file>``."""
    path = str(path)
    prefix = f"{path}: "
    message = message[len(prefix) :] if message.startswith(prefix) else message
    return message.replace(path, "<file>")


def classify_read_error(err: BaseException, path: str | Path) -> tuple[str, str]:
    """The ``(code, reason)`` of an exception raised while reading ``path``.

    Args:
        err: the exception (normally :class:`~pipeline.io.ImageReadError` or its subclass
            :class:`~pipeline.io.UnsupportedImageError` from :func:`pipeline.io.read_image` /
            :func:`pipeline.dicom.read_dicom`; anything else counts as ``decode_failed``).
        path: the file that was read.

    Returns:
        A code from :data:`READ_ERROR_CODES` and the reason text without the path.
    """
    reason = one_line(strip_path(str(err), path))
    text = reason.lower()
    if isinstance(err, PixelLimitError):
        return "too_large", reason
    if isinstance(err, MemoryError):
        return "out_of_memory", f"out of memory while decoding ({one_line(err) or 'MemoryError'})"
    if isinstance(err, OSError) and not isinstance(err, ImageReadError):
        return "read_failed", f"the file could not be read ({err.strerror or type(err).__name__})"
    if isinstance(err, UnsupportedImageError):
        if "photometric" in text:
            return "colour", reason
        if "multi-frame" in text:
            return "multi_frame", reason
        return "unsupported", reason
    if isinstance(err, ImageReadError):
        if "empty file" in text:
            return "empty", reason
        if "has no pixel data" in text:
            return "no_pixel_data", reason
        if "not a dicom" in text or "not a recognised image" in text:
            return "not_dicom", reason
        if any(k in text for k in _NO_DECODER):
            return "unsupported_syntax", reason
        if any(k in text for k in _TRUNCATED):
            return "truncated", reason
        if "could not be decoded" in text:
            return "decode_failed", reason
        return "unreadable", reason
    return "decode_failed", one_line(f"{type(err).__name__}: {reason}")
