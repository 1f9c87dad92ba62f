"""What a rerun of the batch may skip: the resume rules over the journal of the output folder.

A file counts as finished, and is not touched again, when its latest journal row

* was made with the same settings (:func:`settings_fingerprint`: model, preprocessing, outputs, selection rules),
* describes the same file (size and modification time unchanged),
* is ``ok`` with every requested output still on disk, or ``skipped`` (a duplicate only while the file it
  duplicates is still finished), or an ``error`` *of the file itself* (not DICOM, truncated, colour; too large only
  while the pixel limit is the same).

Errors that depend on the environment (:data:`TRANSIENT_CODES`: a full disk, out of memory, a failed read, a model
call that failed) are redone: after a disk-full run, rerunning the same command finishes the job.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.dicom.naming import file_id
from pipeline.inference.outputs import OUTPUT_KINDS

__all__ = ["TRANSIENT_CODES", "ResumeState", "base_row", "clean_partials", "settings_fingerprint"]

#: Error codes that depend on the environment, not on the file: such rows are redone by the next run.
TRANSIENT_CODES: frozenset[str] = frozenset(
    {"write_failed", "inference_failed", "out_of_memory", "read_failed", "no_result", "interrupted"}
)


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of everything that shapes the outputs (rows made with other settings are redone)."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode()).hexdigest()[:16]


def base_row(path: str, rank: int, model_name: str, model_version: str, fingerprint: str) -> dict[str, Any]:
    """The bookkeeping columns every manifest row starts with (the file's size and mtime identify its version)."""
    try:
        stat = os.stat(path)
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:  # a dangling link or a vanished file: it gets a row all the same
        size, mtime = None, None
    return {
        "path": path,
        "file_id": file_id(path),
        "model_name": model_name,
        "model_version": model_version,
        "rank": rank,
        "file_size": size,
        "file_mtime_ns": mtime,
        "fingerprint": fingerprint,
    }


def clean_partials(out_dir: str | Path) -> None:
    """Remove temporary files a killed run left behind (``.<name>.<random>.partial`` beside the outputs)."""
    out_dir = Path(out_dir)
    for sub in sorted({kind.folder for kind in OUTPUT_KINDS.values()}) + ["."]:
        folder = out_dir / sub
        if folder.is_dir():
            for tmp in folder.glob(".*.partial*"):
                tmp.unlink(missing_ok=True)


class ResumeState:
    """The journal of an output folder, read once at the start of a run, and the rules over it.

    Args:
        out_dir: the output folder.
        previous: the latest journal row per path (:func:`pipeline.dicom.load_journal`); empty to redo everything.
        fingerprint: the settings hash of this run.
        outputs: the output kinds this run writes.
        pixel_limit: the pixel limit in effect (``too_large`` rows made under another limit are redone).
    """

    def __init__(
        self,
        out_dir: str | Path,
        previous: Mapping[str, dict[str, Any]],
        fingerprint: str,
        outputs: Sequence[str],
        pixel_limit: int | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.previous = dict(previous)
        self.fingerprint = fingerprint
        self.outputs = tuple(outputs)
        self.pixel_limit = pixel_limit

    def _outputs_present(self, row: Mapping[str, Any]) -> bool:
        for name in self.outputs:
            kind = OUTPUT_KINDS[name]
            if kind.dicom_only and row.get("format") != "dicom":
                continue
            rel = row.get(kind.column)
            if not rel or not (self.out_dir / rel).is_file():
                return False
        return True

    def is_finished(self, path: str, _depth: int = 0) -> bool:
        """Whether the latest row of ``path`` lets this run skip the file (see the module docstring)."""
        row = self.previous.get(path)
        if not row or row.get("fingerprint") != self.fingerprint:
            return False
        try:
            stat = os.stat(row["path"])
        except OSError:
            return False
        if row.get("file_size") != stat.st_size or row.get("file_mtime_ns") != stat.st_mtime_ns:
            return False
        status = row.get("status")
        if status == "ok":
            return self._outputs_present(row)
        if status == "error":
            if row.get("code") == "too_large":  # a raised --max-pixels lets the file in
                return row.get("pixel_limit") == self.pixel_limit
            return row.get("code") not in TRANSIENT_CODES
        if status == "skipped":
            owner = row.get("duplicate_of")
            if owner:  # a duplicate stays done only while the file it duplicates does
                return _depth == 0 and owner != path and self.is_finished(owner, _depth + 1)
            return True
        return False

    def finished_uids(self, paths: Sequence[str]) -> dict[str, str]:
        """``{SOP Instance UID: path}`` of the finished ``ok`` files among ``paths`` (duplicates of them are
        skipped, not segmented again)."""
        out: dict[str, str] = {}
        for path in sorted(paths):
            row = self.previous.get(path) or {}
            uid = row.get("sop_instance_uid")
            if row.get("status") == "ok" and uid:
                out.setdefault(uid, path)
        return out
