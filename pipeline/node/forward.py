"""Deliver result instances (DICOM SEG, Secondary Capture) to a PACS: C-STORE (pynetdicom) or STOW-RS (urllib).

:func:`send` returns one :class:`Delivery` per file. A delivery failure is *transient* when waiting may cure it (the
destination is down, refuses the association, times out, answers out-of-resources or an HTTP 5xx/408/429) and
*permanent* when resending the same bytes cannot succeed (the destination rejects the instance itself). The node
retries transient failures with back-off and records permanent ones in the manifest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.node.config import Destination

__all__ = ["Delivery", "send", "send_dimse", "send_stow"]

logger = logging.getLogger("pipeline.node")


@dataclass
class Delivery:
    """The outcome of sending one file.

    Attributes:
        ok: the destination stored it (possibly with a warning status).
        transient: not stored, and worth retrying later.
        status: the destination's answer (``0x0000``, ``HTTP 200``, ``no association``...).
        reason: a human-readable explanation (no header values).
    """

    ok: bool
    transient: bool
    status: str
    reason: str = ""


def send(destination: Destination, paths: Sequence[Path], calling_ae: str, timeout_s: float = 30.0) -> list[Delivery]:
    """Send ``paths`` (DICOM files) to ``destination``; one :class:`Delivery` per path, in order."""
    if destination.kind == "dimse":
        return send_dimse(destination, paths, calling_ae, timeout_s)
    return send_stow(destination, paths, timeout_s)


def send_dimse(destination: Destination, paths: Sequence[Path], calling_ae: str, timeout_s: float) -> list[Delivery]:
    """C-STORE ``paths`` over one association (explicit or implicit VR little endian)."""
    import pydicom
    from pynetdicom import AE
    from pynetdicom.sop_class import SecondaryCaptureImageStorage, SegmentationStorage

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = float(timeout_s)
    ae.connection_timeout = float(timeout_s)
    for sop_class in (SegmentationStorage, SecondaryCaptureImageStorage):
        ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        why = ("association rejected" if assoc.is_rejected else
               "association aborted" if assoc.is_aborted else "no association (destination unreachable)")
        return [Delivery(False, True, "no association", why) for _ in paths]
    out: list[Delivery] = []
    try:
        for path in paths:
            if not assoc.is_established:
                out.append(Delivery(False, True, "no association", "the association ended early"))
                continue
            try:
                ds = pydicom.dcmread(path)
            except Exception as err:  # noqa: BLE001 - our own file; a bad one is a permanent failure
                out.append(Delivery(False, False, "unreadable", f"cannot read the result file: {type(err).__name__}"))
                continue
            status = assoc.send_c_store(ds)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code < 0:
                out.append(Delivery(False, True, "no response", "no C-STORE response (timeout or abort)"))
            elif code == 0x0000 or code in (0xB000, 0xB007, 0xB006):
                out.append(Delivery(True, False, f"0x{code:04X}", "stored" if code == 0 else "stored with warning"))
            elif 0xA700 <= code <= 0xA7FF:
                out.append(Delivery(False, True, f"0x{code:04X}", "destination out of resources"))
            else:
                out.append(Delivery(False, False, f"0x{code:04X}", "the destination refused the instance"))
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def _multipart(path: Path) -> tuple[bytes, str]:
    boundary = f"xray-seg-{uuid.uuid4().hex}"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + Path(path).read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def send_stow(destination: Destination, paths: Sequence[Path], timeout_s: float) -> list[Delivery]:
    """STOW-RS each path to ``<base_url>/studies`` (one request per instance, so each gets its own status)."""
    import urllib.error
    import urllib.request

    url = destination.base_url + "/studies"
    out: list[Delivery] = []
    for path in paths:
        body, content_type = _multipart(path)
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": content_type, "Accept": "application/dicom+json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
                code, payload = response.status, response.read()
        except urllib.error.HTTPError as err:
            code, payload = err.code, err.read()
        except (OSError, ValueError) as err:  # refused, unreachable, timed out, TLS failure
            out.append(Delivery(False, True, "no response", f"{type(err).__name__}: destination unreachable"))
            continue
        if code in (200, 202):
            if _failed_sop_uids(payload):
                out.append(Delivery(False, False, f"HTTP {code}", "the destination refused the instance"))
            else:
                out.append(Delivery(True, False, f"HTTP {code}", "stored" if code == 200 else "stored with warning"))
        elif code >= 500 or code in (408, 429):
            out.append(Delivery(False, True, f"HTTP {code}", "destination temporarily unable to store"))
        else:
            out.append(Delivery(False, False, f"HTTP {code}", "the destination refused the request"))
    return out


def _failed_sop_uids(payload: bytes) -> list[str]:
    """UIDs in the STOW-RS response's FailedSOPSequence (0008,1198), if the response is DICOM JSON."""
    import json

    try:
        body = json.loads(payload)
    except ValueError:
        return []
    failed = body.get("00081198", {}).get("Value", []) if isinstance(body, dict) else []
    return [str(item.get("00081155", {}).get("Value", [""])[0]) for item in failed if isinstance(item, dict)]
