"""Hospital batch inference: folders of radiographs in, DICOM SEG, masks, overlays and a per-file manifest out.

:class:`BatchRunner` is what ``xray-seg predict`` runs. For a list of files and folders it

1. **checks** that the output folder is writable (before anything expensive; one clear line if not);
2. **discovers** every file (recursively; DICOM with or without an extension, PNG/JPEG; dangling links and link
   loops too, so that they get their row), sorted and de-duplicated;
3. **resumes** (:mod:`~pipeline.inference.batch_resume`): files an earlier run finished are not touched again;
   errors that depend on the environment (a full disk, out of memory) are redone;
4. **shards** the rest across ranks when run under ``torchrun`` (``RANK``/``WORLD_SIZE``; round-robin over the sorted
   list, so the split is deterministic; :mod:`~pipeline.inference.batch_dist`);
5. **selects** with :class:`pipeline.dicom.SelectionRules` from the DICOM header (DataLoader workers read the
   headers, :mod:`~pipeline.inference.batch_data`); all files sharing a SOP Instance UID go to one rank;
6. **decodes and preprocesses** in DataLoader workers (the pixel limit first, then pydicom with the pylibjpeg/gdcm
   plugins, the project's owned photometrics, then the Predictor's preprocessing), overlapping the model; of
   several files sharing a SOP Instance UID the first one *that decodes* is segmented, a decodable copy is skipped
   as a duplicate naming that file, a broken copy gets its own error;
7. **segments** in batches with :meth:`~pipeline.inference.Predictor.predict_batch`;
8. **writes** per image, atomically, in writer threads, with the table of output kinds
   (:mod:`~pipeline.inference.outputs`): the DICOM SEG, the mask PNG and/or NIfTI at the original size, a review
   overlay, and one journal row with QC, lung area and timings. A failed write removes the image's other outputs (no
   SEG outlives a failed image); a SEG the source header cannot make leaves the mask and overlay in place;
9. **merges** (rank 0, after a barrier) the journal into ``manifest.csv`` and ``manifest.jsonl``: one row per file
   ever finished in the output folder (latest row per path), so batch after batch into one folder (the DICOM node)
   keeps one manifest of everything.

A bad file (empty, truncated, not DICOM, no pixel data, undecodable, colour, multi-frame, too many pixels, a dangling
link) becomes an ``error`` row; it never stops the batch. Reasons are one line; the library's own words go to the
debug log with every header value removed. Output names come from SOP Instance UIDs, never from input paths, and
log lines show UIDs or path hashes, never patient names, IDs, dates or other header values.

Output layout::

    OUT/seg/<SOPInstanceUID>.dcm         DICOM SEG (BINARY, or FRACTIONAL with --fractional)
    OUT/masks/<SOPInstanceUID>.png       0/255 mask at the original size
    OUT/masks/<SOPInstanceUID>.nii.gz    the same mask as NIfTI (with the pixel spacing)
    OUT/overlays/<SOPInstanceUID>.png    image + translucent mask + contour, at most 1024 px
    OUT/manifest.csv, OUT/manifest.jsonl one row per file ever finished in OUT (latest row per path)
    OUT/.journal/part-rank<R>.jsonl      append-only journal (what a resumed run reads)

Examples::

    >>> predictor = load_predictor("models/model.pt")
    >>> summary = BatchRunner(predictor, "out", outputs=("seg", "png", "overlay")).run(["/pacs/export"])
    >>> summary.counts
    {'ok': 812, 'skipped': 95, 'error': 3}
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.dicom.discovery import discover_inputs
from pipeline.dicom.errors import one_line, redact
from pipeline.dicom.manifest import Journal, load_journal, write_manifest
from pipeline.dicom.naming import file_id, uid_to_filename
from pipeline.dicom.seg import AlgorithmInfo
from pipeline.dicom.selection import FileSelection, SelectionRules
from pipeline.inference.batch_data import DecodeDataset, ScanDataset, make_loader
from pipeline.inference.batch_dist import BatchDist
from pipeline.inference.batch_resume import ResumeState, base_row, clean_partials, settings_fingerprint
from pipeline.inference.outputs import (
    DEFAULT_OUTPUTS,
    MANIFEST_COLUMNS,
    OUTPUT_KINDS,
    OutputData,
    check_output_dir,
    parse_outputs,
    remove_outputs,
)
from pipeline.inference.predictor import Predictor
from pipeline.io.limits import pixel_limit as effective_pixel_limit

__all__ = ["BatchRunner", "BatchSummary"]

logger = logging.getLogger(__name__)


# ---- results -------------------------------------------------------------------------------------------------------
@dataclass
class BatchSummary:
    """What a run did.

    Attributes:
        counts: rows of this run's input files by status (``ok``, ``skipped``, ``error``); on rank > 0 of a
            distributed run, that rank's own rows only.
        codes: those rows by reason code.
        n_files: input files of this run.
        n_segmented: images segmented by this run (all ranks).
        n_resumed: files an earlier run had finished.
        seconds: wall time of the run.
        images_per_second: ``n_segmented`` over the wall time of the segmentation phase.
        manifest_csv: ``manifest.csv`` (rank 0), else ``None``.
        manifest_jsonl: ``manifest.jsonl`` (rank 0), else ``None``.
        rows: the rows of this run's input files (rank 0: all ranks), in path order.
        n_manifest_rows: rows in the manifest: every file ever finished in the output folder (rank 0).
    """

    counts: dict[str, int]
    codes: dict[str, int]
    n_files: int
    n_segmented: int
    n_resumed: int
    seconds: float
    images_per_second: float
    manifest_csv: Path | None = None
    manifest_jsonl: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    n_manifest_rows: int = 0


def _segment_batch(
    predictor: Predictor, tensors: torch.Tensor, shapes: Sequence[tuple[int, int]]
) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, float]]]:
    """``(prob (C, H, W), mask (H, W), quality, seconds)`` per image at the original sizes: the Predictor's one road."""
    return [(p.prob, p.mask, dict(p.quality), dict(p.seconds)) for p in predictor.predict_batch(tensors, shapes)]


# ---- the runner ----------------------------------------------------------------------------------------------------
class BatchRunner:
    """Segment a PACS export (or any folder of radiographs) robustly, resumably and, under torchrun, in parallel.

    Args:
        predictor: the :class:`~pipeline.inference.Predictor` (binary lung model for SEG output).
        out_dir: output folder (created; it must be writable).
        outputs: kinds from :data:`~pipeline.inference.outputs.OUTPUT_KINDS`: ``"seg"`` (DICOM SEG; DICOM inputs
            only), ``"png"`` (mask PNG), ``"nifti"`` (mask NIfTI), ``"overlay"`` (review PNG). Defaults to
            ``("seg", "png", "overlay")``.
        selection: :class:`~pipeline.dicom.SelectionRules`, a YAML/JSON rules file, a mapping, or ``None`` for
            the default rules.
        batch_size: images per model call. Defaults to 8.
        workers: DataLoader worker processes for header scans and decoding (0 = in the main process). They die
            with this process, even on ``kill -9``.
        writers: threads writing outputs while the model runs (0 = write in the main thread). Defaults to 1.
        fractional: write FRACTIONAL (probability) SEGs instead of BINARY ones.
        resume: skip files an earlier run in ``out_dir`` finished (default). False redoes everything.
        overlay_max_side: longest side of the overlay PNG. Defaults to 1024.
        algorithm: SEG algorithm identification; defaults to the predictor's ``model_name``/``model_version``.
        pixel_limit: largest image accepted, in pixels, checked from the header before decoding (``None``:
            ``$XRAY_SEG_MAX_PIXELS`` or 64 Mpx; ``0``: no limit). See :mod:`pipeline.io.limits`.
        progress: show a tqdm bar; ``None`` = only on a terminal (rank 0).
        dist_timeout_s: collective timeout under torchrun (ranks wait for the slowest at the final barrier).

    Raises:
        ValueError: unknown output kinds, an empty output list, or SEG output for a multi-class predictor.
    """

    def __init__(
        self,
        predictor: Predictor,
        out_dir: str | Path,
        outputs: Sequence[str] = DEFAULT_OUTPUTS,
        selection: SelectionRules | str | Path | dict[str, Any] | None = None,
        batch_size: int = 8,
        workers: int = 2,
        writers: int = 1,
        fractional: bool = False,
        resume: bool = True,
        overlay_max_side: int = 1024,
        algorithm: AlgorithmInfo | None = None,
        pixel_limit: int | None = None,
        progress: bool | None = None,
        dist_timeout_s: float = 24 * 3600.0,
    ) -> None:
        outputs = parse_outputs(outputs)
        if "seg" in outputs and predictor.num_classes != 1:
            raise ValueError("DICOM SEG output needs the binary (one-channel) lung model; drop 'seg' from outputs.")
        if fractional and "seg" not in outputs:
            raise ValueError("fractional=True only affects SEG output; add 'seg' to outputs.")
        if batch_size < 1 or workers < 0 or writers < 0:
            raise ValueError("batch_size must be >= 1, workers and writers >= 0.")
        self.predictor = predictor
        self.out_dir = Path(out_dir)
        self.outputs = outputs
        self.rules = SelectionRules.load(selection)
        self.batch_size = int(batch_size)
        self.workers = int(workers)
        self.writers = int(writers)
        self.fractional = bool(fractional)
        self.resume = bool(resume)
        self.overlay_max_side = int(overlay_max_side)
        self.algorithm = algorithm or AlgorithmInfo(
            name=predictor.model_name or "xray-seg", version=predictor.model_version or "unversioned"
        )
        self.pixel_limit = pixel_limit
        self.progress = progress
        self.dist_timeout_s = float(dist_timeout_s)
        self.fingerprint = settings_fingerprint(self._settings())

    # ---- bookkeeping --------------------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        """Everything that shapes the outputs: a change redoes every file."""
        p = self.predictor
        artifact = {k: v for k, v in p.artifact.to_dict().items() if k not in ("provenance", "revision")}
        return {
            "model": [self.algorithm.name, self.algorithm.version],
            "artifact": artifact,
            "voi": bool(p.voi),
            "postprocess": getattr(p.postprocess, "__qualname__", repr(p.postprocess)) if p.postprocess else None,
            "outputs": sorted(self.outputs),
            "fractional": self.fractional,
            "overlay_max_side": self.overlay_max_side,
            "selection": self.rules.fingerprint(),
        }

    def _base_row(self, path: str, rank: int) -> dict[str, Any]:
        return base_row(path, rank, self.algorithm.name, self.algorithm.version, self.fingerprint)

    def _scan_row(self, scan: FileSelection, rank: int) -> dict[str, Any]:
        return {
            **self._base_row(scan.path, rank),
            "status": scan.status,
            "code": scan.code,
            "reason": one_line(scan.reason),
            "format": scan.format,
            "modality": scan.modality,
            "sop_instance_uid": scan.sop_instance_uid,
            "study_instance_uid": scan.study_instance_uid,
            "series_instance_uid": scan.series_instance_uid,
            "finished_at": time.time(),
        }

    def _log_row(self, row: dict[str, Any]) -> None:
        ident = f"file {row['file_id']}" + (f" (uid {row['sop_instance_uid']})" if row.get("sop_instance_uid") else "")
        if row["status"] == "error":
            logger.warning("%s: error [%s] %s", ident, row["code"], row["reason"])
        else:
            logger.debug("%s: %s [%s] %s", ident, row["status"], row["code"], row["reason"])

    # ---- the run ------------------------------------------------------------------------------------------------
    def run(self, inputs: Iterable[str | Path]) -> BatchSummary:
        """Process every input file; returns the summary (complete on rank 0).

        Calling it again on the same output folder (the same files, or new ones) resumes and extends: the manifest
        always lists every file finished there.

        Args:
            inputs: files and/or folders.

        Raises:
            FileNotFoundError: an input does not exist.
            OutputFolderError: the output folder cannot be written (checked first).
            OSError: the manifest cannot be written at the end (e.g. the disk is full); the journal keeps the rows.
        """
        t_start = time.perf_counter()
        check_output_dir(self.out_dir)
        dist = BatchDist(self.dist_timeout_s)
        try:
            return self._run(list(inputs), dist, t_start)
        finally:
            dist.close()

    def _run(self, inputs: list[str | Path], dist: BatchDist, t_start: float) -> BatchSummary:
        from tqdm.auto import tqdm

        rank, world = dist.rank, dist.world
        files = [str(p) for p in discover_inputs(inputs, exclude=[self.out_dir])]
        if rank == 0:
            clean_partials(self.out_dir)
        state = ResumeState(self.out_dir, load_journal(self.out_dir) if self.resume else {}, self.fingerprint,
                            self.outputs, effective_pixel_limit(self.pixel_limit))
        dist.barrier()  # nobody writes before rank 0 has cleaned up

        mine = files[rank::world]  # round-robin over the sorted list: deterministic and balanced
        done = [p for p in mine if state.is_finished(p)]
        pending = sorted(set(mine) - set(done))
        logger.info("rank %d/%d: %d input files, %d finished by an earlier run, %d to do",
                    rank, world, len(mine), len(done), len(pending))
        new_rows: dict[str, dict[str, Any]] = {}
        journal = Journal(self.out_dir, rank)
        try:
            work = self._select(pending, dist, journal, new_rows)
            claimed = state.finished_uids([p for p in files if state.is_finished(p)])
            t_seg = time.perf_counter()
            # the bar: rank 0 only; progress=None lets tqdm decide (shown on a terminal, hidden in logs and tests)
            disable = True if rank != 0 or self.progress is False else (None if self.progress is None else False)
            with tqdm(total=len(work), desc="predict", unit="image", disable=disable) as bar:
                segmented = self._segment(work, claimed, journal, rank, bar, new_rows)
            seg_seconds = time.perf_counter() - t_seg
        finally:
            journal.close()

        stats = dist.all_gather((segmented, seg_seconds, len(done)))
        dist.barrier()  # every rank's journal part is complete
        if rank == 0:
            rows, n_manifest, csv_path, jsonl_path = self._merge(files, new_rows)
        else:
            rows, n_manifest, csv_path, jsonl_path = list(new_rows.values()), 0, None, None
        n_segmented, seconds_seg = sum(s[0] for s in stats), max(s[1] for s in stats)
        counts = Counter(r["status"] for r in rows)
        summary = BatchSummary(
            counts={k: counts.get(k, 0) for k in ("ok", "skipped", "error")},
            codes=dict(Counter(r["code"] for r in rows)),
            n_files=len(files),
            n_segmented=n_segmented,
            n_resumed=sum(s[2] for s in stats),
            seconds=time.perf_counter() - t_start,
            images_per_second=n_segmented / seconds_seg if seconds_seg > 0 else 0.0,
            manifest_csv=csv_path,
            manifest_jsonl=jsonl_path,
            rows=rows,
            n_manifest_rows=n_manifest,
        )
        if rank == 0:
            logger.info(
                "%d files: %d ok, %d skipped, %d error (%d resumed from an earlier run); %d images segmented at "
                "%.2f images/s; manifest %s (%d rows)",
                summary.n_files, summary.counts["ok"], summary.counts["skipped"], summary.counts["error"],
                summary.n_resumed, n_segmented, summary.images_per_second, csv_path, n_manifest,
            )
        return summary

    def _merge(
        self, files: Sequence[str], new_rows: dict[str, dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], int, Path, Path]:
        """Rank 0: fold every journal part (all runs) into the manifest; returns this run's rows and the manifest."""
        latest = load_journal(self.out_dir)
        for path, row in new_rows.items():  # rows whose journal line could not be written (a full disk)
            if float(row.get("finished_at") or 0) >= float(latest.get(path, {}).get("finished_at") or 0):
                latest[path] = row
        for path in files:
            if path not in latest:  # cannot happen unless a rank died between its work and the barrier
                latest[path] = {**self._base_row(path, -1), "status": "error", "code": "no_result",
                                "reason": "no result was recorded for this file", "finished_at": time.time()}
        everything = [latest[p] for p in sorted(latest)]
        csv_path, jsonl_path = write_manifest(self.out_dir, everything, MANIFEST_COLUMNS)
        return [latest[p] for p in files], len(everything), csv_path, jsonl_path

    # ---- phases -------------------------------------------------------------------------------------------------
    def _record(self, journal: Journal, row: dict[str, Any], rows: dict[str, dict[str, Any]]) -> None:
        """Journal, log and keep one finished row (a journal that cannot be written costs a redo, not the run)."""
        try:
            journal.append(row)
        except OSError as err:
            if not getattr(self, "_journal_warned", False):
                logger.error("cannot write the journal in %s (%s): unrecorded files will be redone by the next run",
                             self.out_dir, err.strerror or type(err).__name__)
                self._journal_warned = True
        self._log_row(row)
        rows[row["path"]] = row

    def _scan(self, paths: Sequence[str]) -> list[FileSelection]:
        if not paths:
            return []
        out: list[FileSelection] = []
        for chunk in make_loader(ScanDataset(paths, self.rules), 16, self.workers):
            out.extend(chunk)
        return out

    def _select(
        self, pending: Sequence[str], dist: BatchDist, journal: Journal, rows: dict[str, dict[str, Any]]
    ) -> list[FileSelection]:
        """Scan ``pending``, record the files not selected, and return the ones this rank decodes.

        Every selected file sharing a SOP Instance UID goes to one rank (the one that scanned the first of them in
        path order), which decides between them after decoding (see :meth:`_segment`).
        """
        scans = self._scan(pending)
        selected = [s for s in scans if s.selected]
        for scan in scans:
            if not scan.selected:
                self._record(journal, self._scan_row(scan, dist.rank), rows)
        gathered = dist.all_gather(selected)
        owner: dict[str, tuple[str, int]] = {}
        for r, part in enumerate(gathered):
            for s in part:
                if s.sop_instance_uid not in owner or s.path < owner[s.sop_instance_uid][0]:
                    owner[s.sop_instance_uid] = (s.path, r)
        mine = [s for part in gathered for s in part if owner[s.sop_instance_uid][1] == dist.rank]
        return sorted(mine, key=lambda s: s.path)

    def _segment(
        self,
        work: Sequence[FileSelection],
        claimed: dict[str, str],
        journal: Journal,
        rank: int,
        bar: Any,
        rows: dict[str, dict[str, Any]],
    ) -> int:
        """Decode (workers), segment (batches) and write (threads) ``work``; returns the number segmented.

        Of several files with one SOP Instance UID (``claimed``: UIDs finished by earlier runs), the first that
        decodes is segmented; a later decodable copy is skipped as its duplicate; a copy that fails gets its error.
        """
        if not work:
            return 0
        dataset = DecodeDataset(
            work,
            self.predictor.preprocess,
            voi=bool(self.predictor.voi),
            overlay_max_side=self.overlay_max_side if "overlay" in self.outputs else None,
            need_header="seg" in self.outputs,
            pixel_limit=self.pixel_limit,
        )
        taken = dict(claimed)  # SOP Instance UID -> the path whose result stands for it
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.writers) if self.writers > 0 else None
        pending: deque[concurrent.futures.Future] = deque()
        segmented = 0

        def record(row: dict[str, Any]) -> None:
            self._record(journal, row, rows)
            bar.update(1)

        def submit(rec: dict[str, Any], result: tuple[np.ndarray, np.ndarray, dict[str, Any]] | None) -> None:
            if pool is None:
                record(self._finish(rec, result, rank))
                return
            pending.append(pool.submit(self._finish, rec, result, rank))
            while len(pending) > 2 * self.batch_size * max(1, self.writers):
                record(pending.popleft().result())

        try:
            for batch in make_loader(dataset, self.batch_size, self.workers):
                good = []
                for rec in batch:
                    item: FileSelection = rec["item"]
                    if not rec["ok"]:
                        if rec.get("detail"):
                            logger.debug("file %s: %s", file_id(item.path), rec["detail"])
                        submit(rec, None)
                        continue
                    first = taken.setdefault(item.sop_instance_uid, item.path)
                    if first != item.path:
                        record(self._duplicate_row(item, first, rank))
                        continue
                    good.append(rec)
                if not good:
                    continue
                tensors = torch.stack([r["tensor"] for r in good])
                try:
                    # the inference path (bf16, compile, ...) is chosen once, on the first real batch, untimed
                    self.predictor.prepare(tensors)
                    results = _segment_batch(self.predictor, tensors, [r["shape"] for r in good])
                except Exception as err:  # noqa: BLE001 - e.g. out of memory: record, keep going (redone on resume)
                    logger.debug("model call failed: %s", one_line(err))
                    for rec in good:
                        taken.pop(rec["item"].sop_instance_uid, None)
                        rec.update(ok=False, code="inference_failed",
                                   reason=f"the model call failed ({type(err).__name__})")
                        submit(rec, None)
                    continue
                for rec, (prob, mask, quality, seconds) in zip(good, results):
                    rec["seconds"].update(seconds)  # model (the batch's share) and postprocess (back to full size)
                    rec.pop("tensor", None)
                    submit(rec, (prob, mask, quality))
                    segmented += 1
            while pending:
                record(pending.popleft().result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return segmented

    def _duplicate_row(self, item: FileSelection, first: str, rank: int) -> dict[str, Any]:
        row = self._scan_row(item, rank)
        row.update(status="skipped", code="duplicate", duplicate_of=first,
                   reason=f"duplicate SOPInstanceUID: file {file_id(first)} has it and was segmented")
        return row

    def _finish(
        self, rec: dict[str, Any], result: tuple[np.ndarray, np.ndarray, dict[str, Any]] | None, rank: int
    ) -> dict[str, Any]:
        """Write the outputs of one image; returns its manifest row (never raises)."""
        item: FileSelection = rec["item"]
        row = self._scan_row(item, rank)
        seconds = dict(rec.get("seconds", {}))
        if result is None:
            row.update(status="error", code=rec.get("code", "error"), reason=one_line(rec.get("reason", "unknown")))
            if row["code"] == "too_large":
                row["pixel_limit"] = effective_pixel_limit(self.pixel_limit)  # journal only: a raised limit redoes the file
        else:
            t0 = time.perf_counter()
            row.update(self._write_outputs(rec, *result))
            seconds["write"] = time.perf_counter() - t0
        row.update({f"seconds_{k}": v for k, v in seconds.items()})
        row["seconds_total"] = sum(seconds.values())
        row["finished_at"] = time.time()
        return row

    def _write_outputs(
        self, rec: dict[str, Any], prob: np.ndarray, mask: np.ndarray, quality: dict[str, Any]
    ) -> dict[str, Any]:
        """Write every requested output kind; returns the row's status, outputs, geometry and QC columns.

        A write that fails for lack of room or permission (``OSError``) fails the image: its other outputs are
        removed, so no SEG outlives it, and the next run redoes it. A SEG that the source header cannot make fails
        the SEG only: the mask and overlay stay, and the row says why (without any header value).
        """
        item: FileSelection = rec["item"]
        rows_, cols = rec["shape"]
        spacing = rec["spacing"]
        data = OutputData(
            mask=mask,
            prob=prob[0] if self.fractional else None,
            header=rec.get("header"),
            display=rec.get("display"),
            spacing=spacing,
            binary=self.predictor.num_classes == 1,
            algorithm=self.algorithm,
            fractional=self.fractional,
        )
        stem = uid_to_filename(item.sop_instance_uid)
        out: dict[str, Any] = {"status": "ok", "code": "selected", "reason": one_line(item.reason)}
        for name in self.outputs:
            kind = OUTPUT_KINDS[name]
            if not kind.applies(data):
                continue
            try:
                path = kind.write(kind.path(self.out_dir, stem), data)
                out[kind.column] = str(Path(path).relative_to(self.out_dir))
            except OSError as err:
                logger.debug("file %s: writing %s failed: %s", file_id(item.path), name,
                             redact(one_line(err), data.header, [item.path, str(self.out_dir)]))
                remove_outputs(self.out_dir, stem, self.outputs)
                for other in OUTPUT_KINDS.values():
                    out.pop(other.column, None)
                out.update(status="error", code="write_failed",
                           reason=f"the {name} output could not be written ({err.strerror or type(err).__name__})")
                break
            except Exception as err:  # noqa: BLE001 - a refused header value, a writer bug: this output only
                logger.debug("file %s: writing %s failed: %s", file_id(item.path), name,
                             redact(one_line(f"{type(err).__name__}: {err}"), data.header, [item.path]))
                remove_outputs(self.out_dir, stem, [name])
                kept = [k for k in self.outputs if k != name and OUTPUT_KINDS[k].applies(data)]
                out.update(status="error", code=f"{name}_failed",
                           reason=f"the {name} output could not be made ({type(err).__name__}); "
                                  f"{', '.join(kept) or 'no other output'} written")
        area_px = int(np.count_nonzero(mask))
        out.update(
            rows=rows_,
            cols=cols,
            spacing_mm=list(spacing) if spacing else None,
            lung_area_px=area_px,
            lung_area_cm2=area_px * spacing[0] * spacing[1] / 100.0 if spacing else None,
        )
        out.update(quality)
        return out
