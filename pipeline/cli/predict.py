"""``xray-seg predict``: segment a PACS export (or any folder of radiographs) into DICOM SEG, masks and a manifest.

A thin layer: it parses the arguments, builds the Predictor with :func:`pipeline.inference.load_predictor` and runs
:class:`pipeline.inference.BatchRunner`. Under ``torchrun --nproc_per_node N`` the same command splits the inputs
across the N processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "parse_overrides", "run_predict"]

logger = logging.getLogger("pipeline.cli.predict")

_DESCRIPTION = """\
Segment the lungs on every selected radiograph under INPUT (files and folders, searched recursively; DICOM with or
without an extension, PNG and JPEG) and write, per image, named after its SOPInstanceUID (never after the input path):

  OUT/seg/<uid>.dcm        DICOM SEG referencing the source image (same Study, new Series, "not for clinical use")
  OUT/masks/<uid>.png      0/255 mask at the original size        (and <uid>.nii.gz with --outputs ...,nifti)
  OUT/overlays/<uid>.png   image + translucent mask for quick review

and OUT/manifest.csv + OUT/manifest.jsonl with one row per input file (of every run into OUT): status ok / skipped /
error, the reason, SOPInstanceUID, lung area (pixels, and cm^2 when the pixel spacing is known), QC flags,
confidence and timings.

Bad files (empty, truncated, not DICOM, no pixel data, unsupported syntax, colour, multi-frame, more pixels than
--max-pixels, dangling links) are listed as errors and never stop the batch. Run the same command again after an
interruption or a full disk: finished files are skipped, the rest (and errors such as a failed write) redone. The
manifest lists every file ever finished in OUT, so batches can be added to one folder. Under
`torchrun --nproc_per_node N -m pipeline.cli predict ...` the inputs are split across N processes.
"""

_EPILOG = """\
examples:
  xray-seg predict /pacs/export --out results --model models/model.pt
  xray-seg predict a.dcm b.png --out results --model models:/chest-xray-lung-seg@champion --outputs seg,png,nifti
  xray-seg predict /pacs/export --out results --model model.pt --override image_size=64 \\
      --override "network_kwargs={'features': [4, 4, 8, 16, 32, 4]}"
  torchrun --nproc_per_node 4 -m pipeline.cli predict /pacs/export --out results --model model.pt

exit status: 0 when the batch completed (per-file errors are in the manifest; see --strict), 1 on a fatal error,
2 on a usage error, 3 with --strict when some file ended in error.
"""


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` → ``{key: value}``; values are parsed as YAML (numbers, lists, mappings, booleans).

    Raises:
        ValueError: an item without ``=``.
    """
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--override expects KEY=VALUE, got {pair!r}.")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def run_predict(args: argparse.Namespace) -> int:
    """Run the batch described by parsed arguments; returns the exit code."""
    from pipeline.dicom.errors import one_line

    from pipeline.inference import BatchRunner, OutputFolderError, check_output_dir, is_model_uri, load_predictor
    from pipeline.inference.outputs import parse_outputs

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("highdicom").setLevel(logging.WARNING)  # one INFO line per copied module and image
        # pydicom warns about malformed values *with the value* (a patient name, say): keep them out of the logs
        logging.getLogger("pydicom").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom")
    try:
        overrides = parse_overrides(args.override)
        if getattr(args, "cleanup", None) is not None:
            overrides["cleanup"] = args.cleanup
    except ValueError as err:
        logger.error("%s", err)
        return 2
    try:
        outputs = parse_outputs(args.outputs)
        check_output_dir(args.out)  # before the model loads: a read-only folder costs one line, not 17 s
    except (ValueError, OutputFolderError) as err:
        logger.error("%s", err)
        return 2 if isinstance(err, ValueError) else 1
    if args.max_pixels is not None and args.max_pixels < 0:
        logger.error("--max-pixels must be >= 0 (0 turns the limit off), got %d.", args.max_pixels)
        return 2
    device = args.device
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if device is None and world > 1:
        import torch

        if torch.cuda.is_available():  # one GPU per process under torchrun
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    kwargs: dict[str, Any] = {"device": device, "amp": not args.no_amp, "voi": args.voi}
    if args.model_name:
        kwargs["model_name"] = args.model_name
    if args.model_version:
        kwargs["model_version"] = args.model_version  # else the file's hash (Predictor.from_checkpoint)
    try:
        if is_model_uri(str(args.model)):
            predictor = load_predictor(args.model, **kwargs)
        else:
            predictor = load_predictor(args.model, overrides=overrides, **kwargs)
    except Exception as err:  # noqa: BLE001 - missing checkpoint, unknown registry model, mismatched overrides
        logger.error("cannot load the model %s: %s: %s", args.model, type(err).__name__, one_line(err))
        logger.debug("model loading failed", exc_info=True)
        return 1
    try:
        runner = BatchRunner(
            predictor,
            args.out,
            outputs=outputs,
            selection=args.selection,
            batch_size=args.batch_size,
            workers=args.workers,
            writers=args.writers,
            fractional=args.fractional,
            resume=not args.no_resume,
            overlay_max_side=args.overlay_max_side,
            pixel_limit=args.max_pixels,
            progress=False if args.no_progress else None,
        )
        summary = runner.run(args.inputs)
    except (FileNotFoundError, ValueError, OutputFolderError) as err:
        logger.error("%s", one_line(err))
        return 1
    except OSError as err:  # e.g. the manifest cannot be written on a full disk; the journal keeps every row
        logger.error("cannot write the results in %s (%s); free the space and run the same command again to "
                     "finish", args.out, err.strerror or type(err).__name__)
        return 1
    except Exception as err:  # noqa: BLE001 - e.g. a decoding worker killed by the OOM killer: the journal is safe
        logger.error("the batch stopped: %s: %s; run the same command again to resume (finished files are kept)",
                     type(err).__name__, one_line(err))
        logger.debug("batch failure", exc_info=True)
        return 1
    if summary.manifest_csv is not None:  # rank 0
        codes = ", ".join(f"{k} {v}" for k, v in sorted(summary.codes.items(), key=lambda kv: -kv[1]))
        logger.info(
            "summary: %d files | ok %d | skipped %d | error %d | resumed %d | %.2f images/s | %.1f s | reasons: %s",
            summary.n_files, summary.counts["ok"], summary.counts["skipped"], summary.counts["error"],
            summary.n_resumed, summary.images_per_second, summary.seconds, codes,
        )
        logger.info("manifest: %s", summary.manifest_csv)
    return 3 if args.strict and summary.counts.get("error", 0) else 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``predict`` on the ``xray-seg`` sub-command parser."""
    parser = subparsers.add_parser(
        "predict",
        help="segment folders of radiographs (DICOM/PNG/JPEG) into DICOM SEG, masks, overlays and a manifest",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="input files and/or folders (searched recursively)")
    parser.add_argument("--out", "-o", required=True, type=Path, metavar="DIR",
                        help="output folder (created; rerunning into the same folder resumes)")
    parser.add_argument("--model", "-m", required=True, metavar="PATH|URI",
                        help="model file (model.pt: network, preprocessing and post-processing come from the model "
                             "artifact stored in it) or an MLflow model URI such as models:/NAME@ALIAS or "
                             "models:/NAME/VERSION")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="model setting to change (e.g. threshold=0.4), repeatable; VALUE is YAML. For a file "
                             "holding bare weights without an artifact, say which network it is: "
                             "network_name=xnet, image_size=256, \"network_kwargs={'features': [4, 4, 8, 16, 32, 4]}\"")
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:1 (default: CUDA when available; one GPU per process "
                             "under torchrun)")
    parser.add_argument("--cleanup", action=argparse.BooleanOptionalAction, default=None,
                        help="lung cleanup: keep the two largest components and fill holes (default: the model's "
                             "own setting, chosen by measurement and stored in its artifact)")
    parser.add_argument("--no-amp", action="store_true",
                        help="fp32 throughout. By default low precision runs where it gives the fp32 masks "
                             "(checked before the first batch): bf16/fp16 on CUDA, bf16 on CPUs with native bf16 "
                             "(AVX512-BF16/AMX)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per model call (default 8)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="DataLoader worker processes decoding DICOM while the model runs (default 2; 0 = none)")
    parser.add_argument("--writers", type=int, default=1, metavar="N",
                        help="threads writing SEG/PNG/overlay files while the model runs (default 1; 0 = none)")
    parser.add_argument("--outputs", default="seg,png,overlay", metavar="LIST",
                        help="comma-separated outputs: seg (DICOM SEG, DICOM inputs only), png (mask PNG), nifti "
                             "(mask .nii.gz), overlay (review PNG); default seg,png,overlay")
    parser.add_argument("--fractional", action="store_true",
                        help="write FRACTIONAL SEGs carrying the lung probability (0-255) instead of BINARY masks")
    parser.add_argument("--selection", type=Path, default=None, metavar="FILE",
                        help="selection rules, YAML or JSON (default: configs/dicom_selection.yaml: Modality CR/DX, "
                             "chest, frontal views; laterals, secondary captures and non-images are skipped)")
    parser.add_argument("--voi", action="store_true",
                        help="apply the DICOM VOI LUT / window before scaling (off by default, as in training)")
    parser.add_argument("--model-name", default=None,
                        help="model name recorded in the SEG algorithm identification and the manifest "
                             "(default: the registry name, or the bundle's network name)")
    parser.add_argument("--model-version", default=None,
                        help="model version recorded likewise (default: the registry version, or sha256 of the "
                             "checkpoint file)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="refuse images whose header claims more than N pixels (rows x columns x frames), "
                             "before decoding them (default: $XRAY_SEG_MAX_PIXELS or 64000000; 0 = no limit)")
    parser.add_argument("--overlay-max-side", type=int, default=1024, metavar="PX",
                        help="longest side of the overlay PNGs (default 1024)")
    parser.add_argument("--no-resume", action="store_true",
                        help="redo every file even if an earlier run in --out finished it")
    parser.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    parser.add_argument("--strict", action="store_true", help="exit with status 3 when any file ended in error")
    parser.set_defaults(func=run_predict)
    return parser
