"""The per-file report of a batch: an append-only journal while it runs, a CSV and JSONL manifest when it ends.

Every input file gets exactly one manifest row (``ok``, ``skipped`` or ``error``, with the reason). While the batch
runs, each process (rank) appends one JSON line per finished file to its own journal part
(``<out>/.journal/part-rank<R>.jsonl``), *after* that file's outputs have been renamed into place. A kill can
therefore lose at most the file in flight: on the next run, a journal row whose outputs still exist marks the file as
finished, and anything without a row is redone. A line cut short by the kill is ignored. At the end, the journal
(all parts, all earlier runs; the latest row of each file wins) is folded into ``manifest.csv`` and
``manifest.jsonl``, both written atomically, one row per input of *this* run in path order.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.io.writers import atomic_path

__all__ = [
    "JOURNAL_DIR",
    "MANIFEST_COLUMNS",
    "OUTPUT_COLUMNS",
    "Journal",
    "load_journal",
    "write_manifest",
]

#: Folder (inside the output folder) holding the journal parts; hidden, so an output folder inside an input folder is
#: never scanned as input.
JOURNAL_DIR = ".journal"

#: Output kinds and their manifest columns (paths relative to the output folder).
OUTPUT_COLUMNS: dict[str, str] = {"seg": "seg", "png": "mask_png", "nifti": "mask_nifti", "overlay": "overlay"}

#: Manifest columns, in CSV order.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",  # the input file
    "file_id",  # short hash of the path, as used in the logs
    "status",  # ok | skipped | error
    "code",  # short reason code (selected, modality, lateral, empty, not_dicom, decode_failed, ...)
    "reason",  # human-readable reason
    "format",  # dicom | png | jpeg | ...
    "modality",
    "sop_instance_uid",  # DICOM SOP Instance UID (PNG/JPEG: a UID derived from the path)
    "study_instance_uid",
    "series_instance_uid",
    "rows",
    "cols",
    "spacing_mm",  # [row, col] or empty
    "lung_area_px",
    "lung_area_cm2",  # empty when the spacing is unknown
    "confidence",  # mean max-probability at network resolution
    "qc_flags",  # raised QC flags (pipeline.metrics.qc_flags)
    "mean_entropy",
    "uncertainty",
    "n_components",
    "area_fraction",
    "seconds_read",
    "seconds_preprocess",
    "seconds_model",
    "seconds_write",
    "seconds_total",
    "seg",
    "mask_png",
    "mask_nifti",
    "overlay",
    "model_name",
    "model_version",
    "rank",
    "finished_at",  # UNIX time the row was recorded
    "file_size",
    "file_mtime_ns",
    "fingerprint",  # hash of the settings that shape the outputs (model, outputs, selection rules, ...)
)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


class Journal:
    """One rank's append-only journal part.

    Each :meth:`append` is a single unbuffered ``write`` of one JSON line to a file opened in append mode, so rows
    from writer threads never interleave and a kill leaves at most one truncated last line.

    Args:
        out_dir: the batch output folder.
        rank: the process rank (selects the part file).
    """

    def __init__(self, out_dir: str | Path, rank: int = 0) -> None:
        self.path = Path(out_dir) / JOURNAL_DIR / f"part-rank{int(rank)}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        # a previous run killed mid-line leaves a fragment: start on a fresh line so the next row stays parseable
        if self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write(b"\n")

    def append(self, row: Mapping[str, Any]) -> None:
        """Record one finished file."""
        line = (json.dumps(_json_safe(dict(row)), ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        """Close the part file."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def load_journal(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The latest journal row of every file, from all parts of all runs.

    Lines that do not parse (a row cut short by a kill) are ignored.

    Returns:
        ``{path: row}``.
    """
    rows: dict[str, dict[str, Any]] = {}
    folder = Path(out_dir) / JOURNAL_DIR
    if not folder.is_dir():
        return rows
    for part in sorted(folder.glob("*.jsonl")):
        with open(part, "rb") as f:
            for raw in f:
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(row, dict) or "path" not in row:
                    continue
                old = rows.get(row["path"])
                if old is None or float(row.get("finished_at") or 0) >= float(old.get("finished_at") or 0):
                    rows[row["path"]] = row
    return rows


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(round(value, 6))
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return value


def write_manifest(
    out_dir: str | Path, rows: Sequence[Mapping[str, Any]], columns: Iterable[str] = MANIFEST_COLUMNS
) -> tuple[Path, Path]:
    """Write ``manifest.csv`` and ``manifest.jsonl`` atomically (CSV lists are joined with ``;``).

    Returns:
        The CSV and JSONL paths.
    """
    out_dir = Path(out_dir)
    columns = list(columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_cell(row.get(c)) for c in columns})
    csv_path, jsonl_path = out_dir / "manifest.csv", out_dir / "manifest.jsonl"
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    with atomic_path(jsonl_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(_json_safe({c: row.get(c) for c in columns}), ensure_ascii=False) + "\n")
    return csv_path, jsonl_path
