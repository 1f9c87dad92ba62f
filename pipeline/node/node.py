"""The DICOM node: receive radiographs, segment them on the batch road, send each SEG back to the PACS.

:class:`DicomNode` runs three things at once:

* the **receiver** (pynetdicom server threads, :mod:`pipeline.node.receiver`) stores each C-STORE durably in the
  :class:`~pipeline.node.Spool` before answering Success;
* the **processor** (one thread) takes received instances in small batches (images arriving within ``gather_s`` of
  each other go together) and runs them through :class:`pipeline.inference.BatchRunner`, the same selection rules,
  decoding, model, SEG writer and journal as ``xray-seg predict``, into ``<out>/results``;
* the **forwarder** (one thread) sends each SEG (and, with ``overlay_sc``, the overlay Secondary Capture) to every
  destination, retrying with doubling delays while a destination is down.

Each step records its outcome in the instance's state file before the next step starts, so a restart resumes where
the kill struck (see :mod:`pipeline.node.spool`). ``<out>/results/manifest.csv`` (and ``.jsonl``) hold one row per
received instance: the batch runner's columns plus the node's (received, state, destination status or why not), so
``xray-seg serve --results <out>/results`` reviews the node's work like a batch folder.

Examples::

    >>> node = DicomNode(NodeConfig(model="model.pt", out="node", forward=["dimse://ORTHANC@10.0.0.5:4242"]))
    >>> node.serve_forever()   # until SIGTERM / Ctrl-C
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.dicom.manifest import load_journal, write_manifest
from pipeline.inference.outputs import MANIFEST_COLUMNS
from pipeline.dicom.naming import uid_to_filename
from pipeline.node.config import Destination, NodeConfig
from pipeline.node.forward import Delivery, send
from pipeline.node.spool import Spool

__all__ = ["NODE_COLUMNS", "DicomNode", "load_node_predictor"]

logger = logging.getLogger("pipeline.node")

#: Columns the node adds to the batch manifest.
NODE_COLUMNS: tuple[str, ...] = (
    "received_at",  # UNIX time the instance was stored
    "calling_ae",  # who sent it
    "node_state",  # received | processed (waiting for delivery) | done
    "forward_destination",  # destinations (';'-separated in the CSV)
    "forward_status",  # per destination: delivered | pending | failed | not_forwarded
    "forward_response",  # per destination: the destination's answer (0x0000, HTTP 200, no association...)
    "forward_attempts",
    "forwarded_at",
    "forward_reason",  # why not forwarded / why failed
    "overlay_sc",  # the overlay Secondary Capture, relative to the results folder
)


def load_node_predictor(config: NodeConfig) -> Any:
    """The Predictor ``xray-seg predict`` would build for the same model, device and overrides."""
    from pipeline.inference import is_model_uri, load_predictor

    kwargs: dict[str, Any] = {"device": config.device}
    if is_model_uri(str(config.model)):
        return load_predictor(config.model, **kwargs)
    return load_predictor(config.model, overrides=config.overrides or None, **kwargs)  # version: the file's hash


class _Backoff:
    """Per-destination delay: doubles after each failed attempt, back to zero after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.delay = 0.0
        self.next_at = 0.0

    def failed(self) -> float:
        self.delay = self.initial if self.delay == 0 else min(self.maximum, self.delay * 2)
        self.next_at = time.monotonic() + self.delay
        return self.delay

    def succeeded(self) -> None:
        self.delay, self.next_at = 0.0, 0.0


class DicomNode:
    """Receive, segment and forward (see the module docstring).

    Args:
        config: the node settings.
        predictor: an already loaded :class:`~pipeline.inference.Predictor`; by default one is loaded from
            ``config.model`` at :meth:`start`.
    """

    def __init__(self, config: NodeConfig, predictor: Any = None) -> None:
        self.config = config
        self.out = Path(config.out)
        self.results = self.out / "results"
        self.spool = Spool(self.out, min_free_mb=config.min_free_mb)
        self.predictor = predictor
        self.runner: Any = None
        self.server: Any = None
        self._stop = threading.Event()
        self._work = threading.Event()  # something was received (or a manifest refresh is due)
        self._deliver = threading.Event()  # something was processed
        self._manifest_dirty = threading.Event()
        self._threads: list[threading.Thread] = []
        self._backoff = {d.url: _Backoff(config.retry_initial_s, config.retry_max_s) for d in config.forward}

    # ---- life cycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model, resume the queue, and start listening, processing and forwarding."""
        from pipeline.inference import BatchRunner
        from pipeline.node.receiver import build_ae

        if self.predictor is None:
            self.predictor = load_node_predictor(self.config)
        self.runner = BatchRunner(
            self.predictor,
            self.results,
            outputs=("seg", "png", "overlay"),
            selection=self.config.selection,
            batch_size=self.config.batch_size,
            workers=self.config.workers,
            writers=0,
            progress=False,
        )
        counts = self.spool.recover()
        self._align_destinations()
        if counts:
            logger.info("queue resumed: %s", ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
        self._manifest_dirty.set()
        ae, handlers = build_ae(self.config, self.spool, lambda uid: self._work.set())
        self.server = ae.start_server((self.config.bind, int(self.config.port)), block=False, evt_handlers=handlers)
        self._threads = [
            threading.Thread(target=self._process_loop, name="xray-seg-process", daemon=True),
            threading.Thread(target=self._forward_loop, name="xray-seg-forward", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._work.set()
        self._deliver.set()
        logger.info("listening as %s on %s:%d; results in %s; forwarding to %s", self.config.ae_title,
                    self.config.bind, int(self.config.port), self.results,
                    ", ".join(str(d) for d in self.config.forward) or "nowhere (no --forward)")

    def _align_destinations(self) -> None:
        """Processed instances waiting for delivery follow the current ``forward`` list (it may have changed)."""
        for state in self.spool.states("processed"):
            forward = dict(state.get("forward") or {})
            for destination in self.config.forward:
                forward.setdefault(destination.url, {"status": "pending", "attempts": 0})
            done = self._delivered_everywhere(forward)
            if forward != state.get("forward") or done:
                self.spool.update(state["sop_instance_uid"], forward=forward, state="done" if done else "processed")

    def _delivered_everywhere(self, forward: dict[str, Any]) -> bool:
        return all(forward.get(d.url, {}).get("status") in ("delivered", "failed") for d in self.config.forward)

    def stop(self, timeout_s: float = 120.0) -> None:
        """Stop accepting associations, let the processor finish its batch and the forwarder its attempt."""
        self._stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self._work.set()
        self._deliver.set()
        for thread in self._threads:
            thread.join(timeout_s)
        if self.runner is not None:
            self._write_manifest()
        logger.info("stopped; %d instances waiting for processing or delivery will resume at the next start",
                    len(self.spool.states(("received", "processed"))))

    def serve_forever(self) -> None:
        """Start, then run until SIGTERM or SIGINT (Ctrl-C); then stop cleanly."""
        def on_signal(signum: int, frame: Any) -> None:
            logger.info("%s received: stopping", signal.Signals(signum).name)
            self._stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Wait until nothing is left to process or deliver (tests, benchmarks); True when idle in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.spool.states(("received", "processed")) and not self._manifest_dirty.is_set():
                return True
            time.sleep(0.1)
        return False

    # ---- processing ---------------------------------------------------------------------------------------------
    def _process_loop(self) -> None:
        while not self._stop.is_set():
            ready = self.spool.states("received")
            if not ready:
                if self._manifest_dirty.is_set():
                    self._write_manifest()
                self._work.wait(1.0)
                self._work.clear()
                continue
            # images arriving together are batched: wait briefly for the rest of a burst
            newest = max(float(s.get("received_at") or 0) for s in ready)
            if len(ready) < self.config.batch_size and time.time() - newest < self.config.gather_s:
                self._stop.wait(min(self.config.gather_s, max(0.01, newest + self.config.gather_s - time.time())))
                continue
            try:
                self._process(ready[: self.config.batch_size])
            except Exception:  # noqa: BLE001 - keep the node alive; the instances stay queued and are retried
                logger.exception("processing failed; retrying in 5 s")
                self._stop.wait(5.0)
            self._write_manifest()

    def _process(self, states: list[dict[str, Any]]) -> None:
        uids = [s["sop_instance_uid"] for s in states]
        paths = {uid: self.spool.instance_path(uid).resolve() for uid in uids}
        summary = self.runner.run([paths[uid] for uid in uids])
        rows = {str(r["path"]): r for r in summary.rows}
        for uid in uids:
            row = rows.get(str(paths[uid])) or {"status": "error", "code": "no_result",
                                                 "reason": "the batch runner returned no row"}
            self._record_processed(uid, row)

    def _record_processed(self, uid: str, row: dict[str, Any]) -> None:
        outputs: dict[str, str] = {}
        why_not = ""
        if row.get("status") == "ok" and row.get("seg"):
            outputs["seg"] = str(row["seg"])
            if self.config.overlay_sc and row.get("overlay"):
                try:
                    outputs["overlay_sc"] = self._overlay_sc(uid, str(row["overlay"]))
                except Exception as err:  # noqa: BLE001 - the SEG still goes out; the SC failure is recorded
                    why_not = f"overlay Secondary Capture failed: {type(err).__name__}"
                    logger.warning("%s: %s", uid, why_not)
        elif row.get("status") == "ok":
            why_not = "no SEG was written"
        else:
            why_not = f"{row.get('status')}: {row.get('code')}"
        forward = {}
        if outputs.get("seg"):
            forward = {d.url: {"status": "pending", "attempts": 0} for d in self.config.forward}
            if not self.config.forward:
                why_not = "no --forward destination"
        state = "processed" if forward else "done"
        self.spool.update(uid, state=state, processed_at=time.time(), status=row.get("status"),
                          code=row.get("code"), outputs=outputs, forward=forward, forward_reason=why_not)
        logger.info("processed %s: %s [%s]%s", uid, row.get("status"), row.get("code"),
                    "; SEG written" if outputs.get("seg") else f"; not forwarded ({why_not})")
        self._manifest_dirty.set()
        if forward:
            self._deliver.set()

    def _overlay_sc(self, uid: str, overlay_rel: str) -> str:
        from pipeline.node.overlay_sc import write_overlay_sc

        rel = Path("sc") / uid_to_filename(uid, ".dcm")
        write_overlay_sc(self.spool.instance_path(uid), self.results / overlay_rel, self.results / rel,
                         self.runner.algorithm.name, self.runner.algorithm.version)
        return str(rel)

    # ---- forwarding ---------------------------------------------------------------------------------------------
    def _forward_loop(self) -> None:
        while not self._stop.is_set():
            waits = []
            for destination in self.config.forward:
                backoff = self._backoff[destination.url]
                delay = backoff.next_at - time.monotonic()
                if delay > 0:
                    waits.append(delay)
                    continue
                pending = [s for s in self.spool.states("processed")
                           if s.get("forward", {}).get(destination.url, {}).get("status") == "pending"]
                if pending:
                    self._deliver_to(destination, pending[:16])
                    waits.append(0.0)
            timeout = min(waits) if waits else 5.0
            if timeout > 0:
                self._deliver.wait(min(timeout, 5.0))
                self._deliver.clear()

    def _deliver_to(self, destination: Destination, states: list[dict[str, Any]]) -> None:
        files: list[Path] = []
        owners: list[str] = []
        for state in states:
            for key in ("seg", "overlay_sc"):
                if state.get("outputs", {}).get(key):
                    files.append(self.results / state["outputs"][key])
                    owners.append(state["sop_instance_uid"])
        try:
            results = send(destination, files, self.config.ae_title, self.config.network_timeout_s)
        except Exception as err:  # noqa: BLE001 - e.g. a socket error in the DICOM stack: treat as "down"
            results = [Delivery(False, True, "error", f"{type(err).__name__}") for _ in files]
        per_uid: dict[str, list[Delivery]] = {}
        for uid, result in zip(owners, results):
            per_uid.setdefault(uid, []).append(result)
        transient = False
        for state in states:
            uid = state["sop_instance_uid"]
            outcome = per_uid.get(uid, [])
            entry = dict(state["forward"][destination.url])
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
            entry["response"] = ", ".join(r.status for r in outcome)
            entry["at"] = time.time()
            if outcome and all(r.ok for r in outcome):
                entry.update(status="delivered", reason="")
                logger.info("forwarded %s to %s: %s", uid, destination, entry["response"])
            elif any(not r.ok and not r.transient for r in outcome):
                entry.update(status="failed", reason="; ".join(r.reason for r in outcome if not r.ok))
                logger.error("forwarding %s to %s failed for good: %s (%s)", uid, destination, entry["reason"],
                             entry["response"])
            else:
                transient = True
                entry.update(reason="; ".join(r.reason for r in outcome if not r.ok))
            forward = {**state["forward"], destination.url: entry}
            done = self._delivered_everywhere(forward)
            self.spool.update(uid, forward=forward, state="done" if done else "processed")
        backoff = self._backoff[destination.url]
        if transient:
            delay = backoff.failed()
            logger.warning("%s unavailable (%s); %d instances wait; next attempt in %.1f s", destination,
                           next((r.reason for r in results if not r.ok), "?"), len(states), delay)
        else:
            backoff.succeeded()
        self._manifest_dirty.set()
        self._work.set()

    # ---- manifest -----------------------------------------------------------------------------------------------
    def _write_manifest(self) -> None:
        """Rewrite ``results/manifest.csv`` and ``.jsonl``: every received instance, batch columns + node columns."""
        self._manifest_dirty.clear()
        journal = load_journal(self.results)
        rows = []
        for state in self.spool.states():
            uid = state["sop_instance_uid"]
            path = str(self.spool.instance_path(uid).resolve())
            row = dict(journal.get(path) or {"path": path, "sop_instance_uid": uid, "status": "queued",
                                               "code": "received", "reason": "waiting for processing",
                                               "study_instance_uid": state.get("study_instance_uid")})
            forward = state.get("forward") or {}
            row.update(
                received_at=state.get("received_at"),
                calling_ae=state.get("calling_ae"),
                node_state=state["state"],
                forward_destination=list(forward),
                forward_status=[v.get("status") for v in forward.values()] or (
                    ["not_forwarded"] if state["state"] == "done" else []),
                forward_response=[v.get("response", "") for v in forward.values()],
                forward_attempts=[v.get("attempts", 0) for v in forward.values()],
                forwarded_at=[v.get("at") for v in forward.values() if v.get("status") == "delivered"],
                forward_reason=state.get("forward_reason") or "; ".join(
                    v.get("reason", "") for v in forward.values() if v.get("reason")),
                overlay_sc=(state.get("outputs") or {}).get("overlay_sc"),
            )
            rows.append(row)
        self.results.mkdir(parents=True, exist_ok=True)
        write_manifest(self.results, rows, columns=MANIFEST_COLUMNS + NODE_COLUMNS)
