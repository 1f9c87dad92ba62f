"""Review decisions: what a reader decided about each batch case, kept in an append-only file beside the manifest.

``reviews.jsonl`` in the batch folder holds one JSON object per line, never rewritten and never edited: a decision
(``accept``, ``reject`` or ``needs_correction``, with an optional comment) or a saved correction. The latest line
about a case is what the list shows, so a changed mind is a new line and the history stays. Each line is written
with one ``write`` on a file opened for appending, under an exclusive lock, and flushed to disk before the answer
goes back: a crash leaves either the whole line or none (a torn last line is skipped when reading). The manifest is
never touched.

Cases are keyed by their SOP Instance UID (the batch's stand-in UID for PNG/JPEG inputs), so the decisions follow
the case when the batch is resumed or its manifest re-sorted; rows without a UID are keyed by manifest row.

Examples::

    >>> log = ReviewLog("results")
    >>> log.decide(key="1.2.3", index=4, decision="reject", comment="left lung cut at the apex")
    >>> log.latest()["1.2.3"].decision
    'reject'
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DECISIONS", "REVIEW_FILE", "CaseReview", "ReviewLog", "case_key"]

#: The review file's name, beside ``manifest.jsonl``.
REVIEW_FILE = "reviews.jsonl"

#: Decisions a reader can make, and how the page labels them.
DECISIONS: dict[str, str] = {"accept": "accepted", "reject": "rejected", "needs_correction": "needs correction"}

#: Longest comment kept (characters).
MAX_COMMENT = 2000


def case_key(sop_instance_uid: str, index: int) -> str:
    """The key of a case in the review file: its UID, else ``row:<index>``."""
    return sop_instance_uid.strip() or f"row:{int(index)}"


@dataclass
class CaseReview:
    """The review state of one case (the fold of its lines in the review file).

    Attributes:
        key: the case key (:func:`case_key`).
        index: manifest row at the time of the last line.
        decision: the latest decision (a key of :data:`DECISIONS`), or ``""``.
        comment: the comment of the latest decision.
        time: UTC time of the latest decision (ISO 8601).
        corrected: a corrected mask was saved.
        corrections: how many corrections were saved.
        correction: the latest correction line (files written, pixels changed).
    """

    key: str
    index: int
    decision: str = ""
    comment: str = ""
    time: str = ""
    corrected: bool = False
    corrections: int = 0
    correction: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class ReviewLog:
    """The review file of a batch folder.

    Args:
        folder: the batch output folder (``xray-seg predict --out``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / REVIEW_FILE
        self._cache: tuple[tuple[int, int] | None, dict[str, CaseReview]] = (None, {})

    # ---- writing ------------------------------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append one line (adds ``time``); returns the record written.

        Raises:
            OSError: the folder is not writable (the caller says so to the user).
        """
        import fcntl

        record = {"time": _now(), **record}
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size:  # a torn line from a crash must not swallow this one
                    with open(self.path, "rb") as f:
                        f.seek(-1, os.SEEK_END)
                        if f.read(1) != b"\n":
                            line = b"\n" + line
                os.write(fd, line)
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return record

    def decide(self, key: str, index: int, decision: str, comment: str = "") -> dict[str, Any]:
        """Record a decision about a case.

        Raises:
            ValueError: an unknown decision.
        """
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}.")
        comment = " ".join(str(comment or "").split())[:MAX_COMMENT]
        return self.append({"event": "decision", "key": key, "index": int(index), "decision": decision,
                            "comment": comment})

    def corrected(self, key: str, index: int, **details: Any) -> dict[str, Any]:
        """Record a saved correction (file names relative to the corrections folder, pixel counts)."""
        return self.append({"event": "correction", "key": key, "index": int(index), **details})

    # ---- reading ------------------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Every readable line, in file order (torn or foreign lines are skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                out.append(record)
        return out

    def latest(self) -> dict[str, CaseReview]:
        """The review state of every case with at least one line, by key (re-read when the file changes)."""
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp == self._cache[0]:
            return self._cache[1]
        state: dict[str, CaseReview] = {}
        for record in self.records():
            key = record["key"]
            review = state.setdefault(key, CaseReview(key=key, index=int(record.get("index", -1))))
            review.index = int(record.get("index", review.index))
            if record.get("event") == "decision" and record.get("decision") in DECISIONS:
                review.decision = str(record["decision"])
                review.comment = str(record.get("comment") or "")
                review.time = str(record.get("time") or "")
            elif record.get("event") == "correction":
                review.corrected = True
                review.corrections += 1
                review.correction = record
        self._cache = (stamp, state)
        return state

    def to_csv(self, cases: Iterable[tuple[str, int, str]]) -> str:
        """The latest decision of each case as CSV (``index, file, sop_instance_uid, decision, comment, time,
        corrected``), one row per case of ``cases`` (``(key, index, file name)``, e.g. in review order)."""
        state = self.latest()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["index", "file", "sop_instance_uid", "decision", "comment", "decided_at", "corrected",
                         "corrections"])
        for key, index, name in cases:
            review = state.get(key)
            if review is None:
                continue
            uid = "" if key.startswith("row:") else key
            writer.writerow([index, _csv_safe(name), uid, review.decision, _csv_safe(review.comment), review.time,
                             "yes" if review.corrected else "no", review.corrections])
        return buffer.getvalue()
