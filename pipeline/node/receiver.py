"""The node's DICOM face: a Storage SCP for radiographs and a Verification SCP, with caller checks (pynetdicom).

The node segments the radiographs a chest X-ray node is sent (CR, DX for presentation and for processing) and
Secondary Capture. Every other storage SOP class pynetdicom knows (CT, MR, SEG, ...) is accepted as well, so that
what a routing rule sends by mistake is stored, recorded in the manifest as skipped with the selection rule's reason
(``skipped: modality CT``) and never forwarded, instead of failing at association where nobody would look. Each
with the usual transfer syntaxes: implicit/explicit VR little endian, deflated, RLE, JPEG baseline/extended/lossless,
JPEG-LS and JPEG 2000. A C-STORE is answered

* ``0x0000`` Success only after :meth:`pipeline.node.Spool.store` wrote the instance and its state durably;
* ``0xA700`` Out of resources when the disk is (nearly) full or the write failed;
* ``0xC210`` Cannot understand (the ``0xC000`` class) when the data set does not decode or lacks a valid SOP Instance
  UID matching the request.

An association from a caller not matching ``allow`` is rejected (permanent, "calling AE title not recognised") with
the reason logged. Log lines carry UIDs and AE titles only, never header values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    Verification,
)

from pipeline.dicom.naming import is_valid_uid
from pipeline.node.config import NodeConfig
from pipeline.node.spool import Spool

__all__ = ["RECORDED_SOP_CLASSES", "STATUS_CANNOT_UNDERSTAND", "STATUS_OUT_OF_RESOURCES", "STORAGE_SOP_CLASSES",
           "TRANSFER_SYNTAXES", "build_ae"]

logger = logging.getLogger("pipeline.node")

#: Storage SOP classes the node segments (when the selection rules accept the instance).
STORAGE_SOP_CLASSES = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)

#: Every other storage SOP class: accepted, stored and recorded as skipped by the selection rules, never forwarded.
RECORDED_SOP_CLASSES = tuple(
    context.abstract_syntax for context in AllStoragePresentationContexts
    if context.abstract_syntax not in STORAGE_SOP_CLASSES
)

#: Transfer syntaxes accepted for them (the decoders are pydicom's with the pylibjpeg / gdcm plugins).
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction (SV1)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC210  # pynetdicom's "cannot understand: the data set could not be decoded"


def _check_dataset(event: Any) -> str:
    """Decode the received data set completely; return its SOP Instance UID.

    Raises:
        ValueError: the data set does not decode, or has no valid SOP Instance UID matching the request's.
    """
    requested = str(event.request.AffectedSOPInstanceUID or "")
    try:
        ds = event.dataset
        for _ in ds:  # converts every raw element: a malformed one raises here, not later in processing
            pass
        uid = str(ds.get("SOPInstanceUID", ""))
    except Exception as err:  # noqa: BLE001 - any decoding failure is a "cannot understand"
        raise ValueError(f"the data set could not be decoded ({type(err).__name__})") from None
    if not is_valid_uid(uid):
        raise ValueError("the data set has no valid SOP Instance UID")
    if uid != requested:
        raise ValueError("the data set's SOP Instance UID differs from the C-STORE request's")
    return uid


def _store_handler(spool: Spool, on_received: Callable[[str], None]) -> Callable[[Any], int]:
    def handle_store(event: Any) -> int:
        caller = event.assoc.requestor.ae_title
        try:
            uid = _check_dataset(event)
        except ValueError as err:
            logger.warning("C-STORE from %s refused (0x%04X cannot understand): %s; request UID %s",
                           caller, STATUS_CANNOT_UNDERSTAND, err,
                           event.request.AffectedSOPInstanceUID if is_valid_uid(
                               str(event.request.AffectedSOPInstanceUID or "")) else "<invalid>")
            return STATUS_CANNOT_UNDERSTAND
        ds = event.dataset
        info = {
            "calling_ae": caller,
            "sop_class_uid": str(event.request.AffectedSOPClassUID),
            "study_instance_uid": str(ds.get("StudyInstanceUID", "")),
            "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
            "transfer_syntax_uid": str(event.context.transfer_syntax),
        }
        try:
            new = spool.store(uid, event.encoded_dataset(), **info)
        except OSError as err:
            logger.error("C-STORE %s from %s refused (0x%04X out of resources): %s", uid, caller,
                         STATUS_OUT_OF_RESOURCES, err.strerror or type(err).__name__)
            return STATUS_OUT_OF_RESOURCES
        if new:
            logger.info("received %s from %s (study %s)", uid, caller, info["study_instance_uid"] or "-")
            on_received(uid)
        else:
            logger.info("received %s from %s again: already queued, not processed twice", uid, caller)
        return STATUS_SUCCESS

    return handle_store


def _requested_handler(config: NodeConfig) -> Callable[[Any], None]:
    def handle_requested(event: Any) -> None:
        primitive = event.assoc.requestor.primitive  # the A-ASSOCIATE-RQ (ae_title is filled in only later)
        caller = str(getattr(primitive, "calling_ae_title", "") or "").strip()
        address = event.assoc.requestor.address
        if not config.allows(caller, address):
            logger.warning("association from %s at %s rejected: not in --allow (%s)", caller, address,
                           ", ".join(str(r) for r in config.allow))
            # rejected-permanent, by the service user, "calling AE title not recognised"
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)
            event.assoc.kill()  # as pynetdicom does after its own rejections: the PDU goes out before the socket closes

    return handle_requested


def _echo_handler(event: Any) -> int:
    logger.info("C-ECHO from %s", event.assoc.requestor.ae_title)
    return STATUS_SUCCESS


def build_ae(config: NodeConfig, spool: Spool, on_received: Callable[[str], None]) -> tuple[AE, list[Any]]:
    """The Application Entity and its event handlers; start it with ``ae.start_server(address, evt_handlers=...)``.

    Args:
        config: the node settings (AE title, allowed callers, timeouts, PDU size).
        spool: where received instances go.
        on_received: called with the SOP Instance UID of each newly stored instance (wakes the processor).
    """
    ae = AE(ae_title=config.ae_title)
    for sop_class in (*STORAGE_SOP_CLASSES, *RECORDED_SOP_CLASSES):
        ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = int(config.max_pdu)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = float(config.network_timeout_s)
    ae.require_called_aet = True  # a sender configured for another node is told so instead of feeding this one
    handlers = [
        (evt.EVT_REQUESTED, _requested_handler(config)),
        (evt.EVT_C_STORE, _store_handler(spool, on_received)),
        (evt.EVT_C_ECHO, _echo_handler),
    ]
    return ae, handlers
