"""The node's durable queue: received instances and their state on disk, so a kill at any moment loses nothing.

Layout inside the node folder::

    incoming/<SOPInstanceUID>.dcm     each received instance, as the sender encoded it (DICOM file format)
    queue/<SOPInstanceUID>.json       its state: received → processed → forwarded (or why not), per destination

Both are written the same way: to a hidden temporary file in the same folder, flushed and ``fsync``-ed, renamed over
the final name, and the folder ``fsync``-ed, so after a crash either the old or the new version is there, whole. The
receiver answers a C-STORE with Success only after both writes returned. Every step after that is idempotent: the
batch runner resumes a file it already finished, and a SEG carries a SOP Instance UID derived from its source, so a
delivery repeated after a kill is deduplicated by the destination. At start, :meth:`Spool.recover` removes temporary
leftovers and gives a state to any instance file whose state write a kill interrupted.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline.dicom.naming import is_valid_uid, uid_to_filename

__all__ = ["STATES", "Spool", "durable_write"]

#: Instance states, in order. ``done``: processed, and delivered (or given up) to every destination.
STATES: tuple[str, ...] = ("received", "processed", "done")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (temporary file, fsync, rename, fsync of the folder).

    Raises:
        OSError: the write failed (e.g. no space left); the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


class Spool:
    """Received instances and their states (thread-safe; the receiver, processor and forwarder share one).

    Args:
        root: the node folder.
        min_free_mb: :meth:`store` refuses an instance (``OSError`` ENOSPC) when fewer megabytes would stay free.
    """

    def __init__(self, root: str | Path, min_free_mb: float = 0.0) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.queue = self.root / "queue"
        self.min_free_mb = float(min_free_mb)
        self._lock = threading.RLock()
        self._states: dict[str, dict[str, Any]] = {}
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        for folder in (self.incoming, self.queue):
            folder.mkdir(parents=True, exist_ok=True)

    # ---- paths ----------------------------------------------------------------------------------------------------
    def instance_path(self, uid: str) -> Path:
        """Where the received instance ``uid`` is stored."""
        return self.incoming / uid_to_filename(uid, ".dcm")

    def _state_path(self, uid: str) -> Path:
        return self.queue / uid_to_filename(uid, ".json")

    # ---- start-up -------------------------------------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Load every state; remove temporary leftovers; give a ``received`` state to instances that lack one.

        Returns:
            Instances by state, as found.
        """
        with self._lock:
            for folder in (self.incoming, self.queue):
                for tmp in folder.glob(".*.partial"):
                    tmp.unlink(missing_ok=True)
            self._states.clear()
            for path in sorted(self.queue.glob("*.json")):
                try:
                    state = json.loads(path.read_bytes())
                except ValueError:  # cannot happen with durable_write; keep the instance, start it again
                    state = None
                if isinstance(state, dict) and state.get("sop_instance_uid"):
                    self._states[state["sop_instance_uid"]] = state
            for path in sorted(self.incoming.glob("*.dcm")):
                uid = path.stem
                if uid not in self._states and is_valid_uid(uid):
                    # stored, but killed before its state was written: the sender got no Success and may send it
                    # again (then it is a duplicate of this one); process it either way
                    self._put({"sop_instance_uid": uid, "state": "received", "received_at": path.stat().st_mtime,
                               "calling_ae": "", "recovered": True})
            counts: dict[str, int] = {}
            for state in self._states.values():
                counts[state["state"]] = counts.get(state["state"], 0) + 1
            return counts

    # ---- receive --------------------------------------------------------------------------------------------------
    def has(self, uid: str) -> bool:
        """True when ``uid`` was received before (in any state)."""
        with self._lock:
            return uid in self._states

    def store(self, uid: str, data: bytes, **info: Any) -> bool:
        """Store a received instance durably and record it as ``received``.

        Args:
            uid: its SOP Instance UID.
            data: the instance in DICOM file format.
            info: more state fields (``calling_ae``, ``sop_class_uid``, ``study_instance_uid``, ...).

        Returns:
            False when the instance had been received already (nothing is written: a UID names one instance).

        Raises:
            ValueError: ``uid`` is not a valid UID.
            OSError: the disk is (nearly) full or the write failed; nothing was recorded.
        """
        if not is_valid_uid(uid):
            raise ValueError("not a valid SOP Instance UID")
        with self._lock:
            if uid in self._states:
                return False
        free = shutil.disk_usage(self.incoming).free
        if free - len(data) < self.min_free_mb * 1024 * 1024:
            raise OSError(errno.ENOSPC, f"less than {self.min_free_mb:g} MB would stay free in the node folder")
        durable_write(self.instance_path(uid), data)
        with self._lock:
            if uid in self._states:  # a concurrent copy of the same instance won the race
                return False
            self._put({"sop_instance_uid": uid, "state": "received", "received_at": time.time(), **info})
        return True

    # ---- state ----------------------------------------------------------------------------------------------------
    def _put(self, state: dict[str, Any]) -> dict[str, Any]:
        durable_write(self._state_path(state["sop_instance_uid"]), json.dumps(state, sort_keys=True).encode())
        self._states[state["sop_instance_uid"]] = state
        for listener in self.listeners:
            listener(state)
        return state

    def update(self, uid: str, **changes: Any) -> dict[str, Any]:
        """Change fields of one instance's state and persist it; returns the new state (a copy)."""
        with self._lock:
            state = json.loads(json.dumps({**self._states[uid], **changes}))
            return dict(self._put(state))

    def get(self, uid: str) -> dict[str, Any]:
        """A copy of one instance's state."""
        with self._lock:
            return json.loads(json.dumps(self._states[uid]))

    def states(self, state: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Copies of the states (all, or those in ``state``), oldest reception first."""
        wanted = {state} if isinstance(state, str) else (set(state) if state is not None else None)
        with self._lock:
            chosen = [s for s in self._states.values() if wanted is None or s["state"] in wanted]
            chosen = json.loads(json.dumps(chosen))
        return sorted(chosen, key=lambda s: (float(s.get("received_at") or 0), s["sop_instance_uid"]))
