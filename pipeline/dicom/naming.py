"""Safe output names and log identifiers: derived from DICOM UIDs or hashes, never from input paths.

Hospital exports often encode patient names or accession numbers in folder and file names
(``/export/DOE^JOHN/CR/0001.dcm``). Output files are therefore named after the source SOP Instance UID, and log lines
carry that UID or a short hash of the path, so neither the output tree nor the logs repeat a name. A UID read from a
file is untrusted text: it is reduced to the UID alphabet (digits and dots) and, when it is not a valid UID at all,
replaced by a hash, so it can never climb out of the output folder or collide with a reserved name.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["file_id", "is_valid_uid", "path_uid", "uid_to_filename", "derived_uid"]

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
_MAX_UID_LENGTH = 64


def is_valid_uid(uid: str) -> bool:
    """True for a syntactically valid DICOM UID (PS3.5 §9.1): dot-separated numbers, no leading zeros, ≤ 64 chars."""
    return bool(uid) and len(uid) <= _MAX_UID_LENGTH and _UID_RE.match(uid) is not None


def uid_to_filename(uid: str, suffix: str = "") -> str:
    """A file name made from a UID, safe on every file system.

    Valid UIDs are used as they are (they contain only digits and dots and cannot start with a dot). Anything else
    (padding, letters, slashes, over-long values, empty strings) becomes ``uid-<sha256 prefix>`` of the raw text, so
    the mapping stays deterministic and collision-resistant without echoing the input.

    Args:
        uid: the (untrusted) UID text, e.g. ``ds.SOPInstanceUID``.
        suffix: appended as is, e.g. ``".dcm"`` or ``".nii.gz"``.

    Returns:
        The file name (no folder part).

    Examples::

        >>> uid_to_filename("1.2.840.113619.2.55.3", ".dcm")
        '1.2.840.113619.2.55.3.dcm'
        >>> uid_to_filename("../../etc/passwd")[:4]
        'uid-'
    """
    text = str(uid).strip().rstrip("\x00").strip()
    if is_valid_uid(text):
        return text + suffix
    digest = hashlib.sha256(str(uid).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return f"uid-{digest}{suffix}"


def file_id(path: str | Path) -> str:
    """A short, stable, non-identifying id of an input path for log lines (12 hex characters of its SHA-256)."""
    return hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def derived_uid(*parts: str) -> str:
    """A deterministic UID under the ``2.25`` root (UUID-derived, PS3.5 §B.2) from the given strings.

    Used for SEG Series/SOP Instance UIDs (a rerun with the same model rewrites the same instance instead of adding a
    duplicate to the PACS) and for the stand-in UIDs of PNG/JPEG inputs.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogateescape")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def path_uid(path: str | Path) -> str:
    """The stand-in SOP Instance UID of a non-DICOM input: a :func:`derived_uid` of its resolved path."""
    return derived_uid("xray-seg:file", str(Path(path).resolve()))
