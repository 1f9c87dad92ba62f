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
``unreadable``         any other read failure
=====================  ==============================================================================
"""

from __future__ import annotations

from pathlib import Path

from pipeline.io.image import ImageReadError, UnsupportedImageError

__all__ = ["READ_ERROR_CODES", "classify_read_error", "strip_path"]

#: Every code :func:`classify_read_error` returns.
READ_ERROR_CODES: tuple[str, ...] = (
    "empty", "not_dicom", "truncated", "no_pixel_data", "unsupported_syntax", "decode_failed", "colour",
    "multi_frame", "unsupported", "unreadable",
)

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
    reason = strip_path(str(err), path)
    text = reason.lower()
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
    return "decode_failed", f"{type(err).__name__}: {reason}"
