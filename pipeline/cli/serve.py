"""``xray-seg serve``: the review web page (upload a radiograph, or review a batch folder), on localhost by default.

A thin layer: it builds the Predictor with :func:`pipeline.inference.load_predictor` (as ``xray-seg predict`` does),
the application with :func:`pipeline.web.create_app`, and runs it with uvicorn.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "build_app", "run_serve"]

logger = logging.getLogger("pipeline.cli.serve")

_DESCRIPTION = """\
Start the review web page:

  upload view   drop or choose a PNG, JPEG, TIFF or DICOM radiograph; see it in display polarity with the lung mask
                (opacity slider), the probability map, lung area (cm^2 when the pixel spacing is known), confidence,
                QC flags and the model; download the mask PNG, the overlay PNG and, for DICOM, a DICOM SEG.
                Uploads live in a temporary folder for the duration of the request only; results come back inline.
  batch review  with --results DIR (the --out folder of `xray-seg predict`): every input with status, overlay
                thumbnail, confidence and flags, flagged and low-confidence cases first, filterable; errors and
                skipped files with their reasons.

The server binds to 127.0.0.1 unless --host says otherwise: the pages show patient images and have no login.
"""

_EPILOG = """\
examples:
  xray-seg serve --model models/model.pt
  xray-seg serve --model models:/chest-xray-lung-seg@champion --results results --port 8080
  xray-seg serve --results results                      # batch review only, no uploads
  xray-seg serve --model model.pt --override image_size=64 \\
      --override "network_kwargs={'features': [4, 4, 8, 16, 32, 4]}"
"""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(args: argparse.Namespace) -> Any:
    """The FastAPI application described by parsed ``serve`` arguments.

    Raises:
        ValueError: neither ``--model`` nor ``--results``, or a malformed ``--override``.
        FileNotFoundError: the checkpoint or the results folder does not exist.
    """
    from pipeline.cli.predict import parse_overrides
    from pipeline.inference.loading import checkpoint_version
    from pipeline.inference import is_model_uri, load_predictor
    from pipeline.web import create_app

    if args.model is None and args.results is None:
        raise ValueError("give --model (to segment uploads) and/or --results (to review a batch folder).")
    if args.results is not None and not Path(args.results).is_dir():
        raise FileNotFoundError(f"{args.results}: results folder not found (the --out folder of `xray-seg predict`).")
    predictor = None
    if args.model is not None:
        kwargs: dict[str, Any] = {"device": args.device, "voi": args.voi}
        if args.model_name:
            kwargs["model_name"] = args.model_name
        if args.model_version:
            kwargs["model_version"] = args.model_version
        if is_model_uri(str(args.model)):
            predictor = load_predictor(args.model, **kwargs)
        else:
            if not Path(args.model).is_file():
                raise FileNotFoundError(f"{args.model}: checkpoint not found.")
            kwargs.setdefault("model_version", checkpoint_version(Path(args.model)))
            predictor = load_predictor(args.model, overrides=parse_overrides(args.override),
                                       **kwargs)
    limits = {} if args.max_upload_mb is None else {"max_upload_mb": args.max_upload_mb}
    return create_app(predictor, results_dir=args.results, **limits)


def run_serve(args: argparse.Namespace) -> int:
    """Build the application and serve it until interrupted; returns the exit code."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        logger.error("the web page needs %s: pip install 'xray-seg-pipeline[web]' (or -r requirements.txt)", err.name)
        return 1
    try:
        app = build_app(args)
    except (ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 2 if isinstance(err, ValueError) else 1
    except Exception as err:  # noqa: BLE001 - unknown registry model, mismatched overrides, ...
        logger.error("cannot load the model %s: %s: %s", args.model, type(err).__name__, err)
        return 1
    if not _is_loopback(args.host):
        logger.warning("listening on %s: anyone who can reach this address sees the pages (patient images, no "
                       "login). Use 127.0.0.1 unless the network is trusted.", args.host)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    logger.info("serving on http://%s:%d/%s", shown, args.port, " (batch review at /batch)" if args.results else "")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False)
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``xray-seg`` sub-command parser."""
    parser = subparsers.add_parser(
        "serve",
        help="review web page: upload an X-ray and see its segmentation, or browse a batch folder worst first",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", "-m", default=None, metavar="PATH|URI",
                        help="model file (model.pt with its model artifact) or an MLflow model URI such as "
                             "models:/NAME@ALIAS; without it only the batch review is served")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="model setting to change (e.g. threshold=0.4), repeatable; VALUE is YAML")
    parser.add_argument("--results", type=Path, default=None, metavar="DIR",
                        help="batch output folder to review (the --out folder of `xray-seg predict`)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 exposes the pages)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=None, metavar="MB",
                        help="largest accepted upload in MB; larger ones get 413 (default: "
                             "pipeline.web.DEFAULT_MAX_UPLOAD_MB, 64)")
    parser.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:1 (default: CUDA when available)")
    parser.add_argument("--voi", action="store_true",
                        help="apply the DICOM VOI LUT / window before scaling (off by default, as in training)")
    parser.add_argument("--model-name", default=None, help="model name shown and written into SEGs")
    parser.add_argument("--model-version", default=None,
                        help="model version shown and written into SEGs (default: the registry version, or sha256 of "
                             "the checkpoint file)")
    parser.set_defaults(func=run_serve)
    return parser
