"""The per-file report of a batch: an append-only journal while it runs, a CSV and JSONL manifest when it ends.

Every input file gets exactly one manifest row (``ok``, ``skipped`` or ``error``, with the reason). While the batch
runs, each process (rank) appends one JSON line per finished file to its own journal part
(``<out>/.journal/part-rank<R>.jsonl``), *after* that file's outputs have been renamed into place. A kill can
therefore lose at most the file in flight: on the next run, a journal row whose outputs still exist marks the file as
finished, and anything without a row is redone. A line cut short by the kill is ignored. At the end, the journal
(all parts, all earlier runs; the latest row of each file wins) is folded into ``manifest.csv`` and
``manifest.jsonl``, both written atomically: one row per file ever finished in the folder, in path order, so a
folder fed batch after batch (the DICOM node) keeps one manifest of everything.

:func:`read_manifest` reads a folder back (the manifest, or the journal while a batch still runs) for the review
page and for tools. The output columns (``seg``, ``mask_png``, ...) are not listed here: they come from the table
of output kinds (:data:`pipeline.inference.outputs.OUTPUT_KINDS`) through :func:`manifest_columns`.
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

from pipeline.dicom.errors import one_line

__all__ = [
    "JOURNAL_DIR",
    "MANIFEST_CSV",
    "MANIFEST_JSONL",
    "RECORD_COLUMNS",
    "RUN_COLUMNS",
    "Journal",
    "load_journal",
    "manifest_columns",
    "read_manifest",
    "write_manifest",
]

#: Folder (inside the output folder) holding the journal parts; hidden, so an output folder inside an input folder is
#: never scanned as input.
JOURNAL_DIR = ".journal"

#: File names of the manifest inside the output folder.
MANIFEST_CSV, MANIFEST_JSONL = "manifest.csv", "manifest.jsonl"

#: What was found and measured for a file: the manifest columns before the output files, in CSV order.
RECORD_COLUMNS: tuple[str, ...] = (
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
    "duplicate_of",  # the input path whose result this file shares (skipped / duplicate rows)
)

#: Bookkeeping: the manifest columns after the output files, in CSV order.
RUN_COLUMNS: tuple[str, ...] = (
    "model_name",
    "model_version",
    "rank",
    "finished_at",  # UNIX time the row was recorded
    "file_size",
    "file_mtime_ns",
    "fingerprint",  # hash of the settings that shape the outputs (model, outputs, selection rules, ...)
)


def manifest_columns(output_columns: Iterable[str]) -> tuple[str, ...]:
    """The manifest's columns in CSV order: :data:`RECORD_COLUMNS`, the output columns, :data:`RUN_COLUMNS`."""
    return (*RECORD_COLUMNS, *output_columns, *RUN_COLUMNS)


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
        """Record one finished file (its ``reason`` is stored as one line).

        Raises:
            OSError: the journal cannot be written (e.g. the disk is full); the file then counts as not done.
        """
        row = dict(row)
        if "reason" in row and row["reason"] is not None:
            row["reason"] = one_line(row["reason"])
        line = (json.dumps(_json_safe(row), ensure_ascii=False) + "\n").encode("utf-8")
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
    out_dir: str | Path, rows: Sequence[Mapping[str, Any]], columns: Iterable[str]
) -> tuple[Path, Path]:
    """Write ``manifest.csv`` and ``manifest.jsonl`` atomically (CSV lists are joined with ``;``).

    Args:
        out_dir: the output folder.
        rows: one mapping per file.
        columns: the columns, in order (see :func:`manifest_columns`); other keys of the rows are left out.

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
    csv_path, jsonl_path = out_dir / MANIFEST_CSV, out_dir / MANIFEST_JSONL
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    with atomic_path(jsonl_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(_json_safe({c: row.get(c) for c in columns}), ensure_ascii=False) + "\n")
    return csv_path, jsonl_path


def read_manifest(out_dir: str | Path) -> tuple[list[dict[str, Any]], str]:
    """Read the per-file rows of a batch output folder.

    Reads ``manifest.jsonl`` (typed values), else ``manifest.csv`` (strings; lists joined with ``;``), else, while a
    batch is still running and no manifest exists yet, the journal (latest row per file, in path order). Lines that
    do not parse are skipped.

    Args:
        out_dir: the ``--out`` folder of ``xray-seg predict``.

    Returns:
        The rows and where they came from: ``"manifest.jsonl"``, ``"manifest.csv"``,
        ``"journal (the batch has not finished: no manifest yet)"``, or ``""`` when the folder holds none of them.
    """
    out_dir = Path(out_dir)
    jsonl, csv_path = out_dir / MANIFEST_JSONL, out_dir / MANIFEST_CSV
    if jsonl.is_file():
        rows = []
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows, MANIFEST_JSONL
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f)), MANIFEST_CSV
    journal = load_journal(out_dir)
    if journal:
        rows = sorted(journal.values(), key=lambda r: str(r.get("path", "")))
        return rows, "journal (the batch has not finished: no manifest yet)"
    return [], ""
