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
                skipped files with their reasons. Per case: accept / reject / needs correction with a comment
                (RESULTS/reviews.jsonl, append-only; CSV export), and a mask editor whose corrections are saved as
                a training dataset (--corrections, default RESULTS/corrections) plus a DICOM SEG revision.
  viewer        window/level on the full bit depth (drag, presets lung / bone / full range, invert), zoom and
                pan up to 1:1, overlay and probability map in the same view; shortcuts listed on the page.

The server binds to 127.0.0.1 unless --host says otherwise (the pages show patient images and have no login), answers
only its own host names (--allow-host adds one) and refuses cross-origin POSTs.
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
            predictor = load_predictor(args.model, overrides=parse_overrides(args.override),
                                       **kwargs)
    from pipeline.web.guard import default_allowed_hosts

    limits: dict[str, Any] = {} if args.max_upload_mb is None else {"max_upload_mb": args.max_upload_mb}
    if getattr(args, "max_pixels", None):
        limits["max_pixels"] = args.max_pixels
    if getattr(args, "corrections", None) is not None:
        limits["corrections_dir"] = args.corrections
    hosts = default_allowed_hosts(args.host, getattr(args, "allow_host", None) or ())
    return create_app(predictor, results_dir=args.results, allowed_hosts=hosts, **limits)


def _port(text: str) -> int:
    """argparse type of ``--port``: an integer 1-65535 (0 = any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number: use 1-65535 (e.g. --port 8000)")
    return value


def bind_socket(host: str, port: int) -> Any:
    """A listening TCP socket on ``host:port``, bound *before* anything says it is serving.

    Raises:
        OSError: the port is taken, or the address is not one of this machine's; the message says which and what
            to do.
    """
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise OSError(err.errno, f"port {port} on {host} is already in use by another program: stop it, or "
                                     "choose another --port") from None
        if err.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            raise OSError(err.errno, f"cannot listen on {host}: not an address of this machine; use --host "
                                     "127.0.0.1 (or this machine's address)") from None
        if err.errno == errno.EACCES:
            raise OSError(err.errno, f"port {port} needs administrator rights; choose a port above 1023") from None
        raise OSError(err.errno, f"cannot listen on {host}:{port} ({err.strerror})") from None
    return sock


def run_serve(args: argparse.Namespace) -> int:
    """Build the application and serve it until interrupted; returns the exit code."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        logger.error("the web page needs %s: pip install 'xray-seg-pipeline[web]' (or -r requirements.txt)", err.name)
        return 1
    try:
        sock = bind_socket(args.host, args.port)  # before the model loads: a busy port fails at once, clearly
    except OSError as err:
        logger.error("%s", err.strerror or err)
        return 1
    try:
        app = build_app(args)
    except (ValueError, FileNotFoundError) as err:
        sock.close()
        logger.error("%s", err)
        return 2 if isinstance(err, ValueError) else 1
    except Exception as err:  # noqa: BLE001 - unknown registry model, mismatched overrides, ...
        sock.close()
        logger.error("cannot load the model %s: %s: %s", args.model, type(err).__name__, err)
        return 1
    if not _is_loopback(args.host):
        logger.warning("listening on %s: anyone who can reach this address sees the pages (patient images, no "
                       "login). Use 127.0.0.1 unless the network is trusted.", args.host)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    port = sock.getsockname()[1]
    logger.info("serving on http://%s:%d/%s", shown, port, " (batch review at /batch)" if args.results else "")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", server_header=False, access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
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
    parser.add_argument("--port", type=_port, default=8000, help="port, 1-65535 (default 8000)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="another host name the pages may be opened under (Host header), repeatable; "
                             "127.0.0.1, localhost, ::1 and --host are always allowed, any other name gets 400")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="largest upload in pixels, checked on the header before decoding (default: the batch's "
                             "limit, 64 Mpx)")
    parser.add_argument("--corrections", type=Path, default=None, metavar="DIR",
                        help="dataset folder (images/ + masks/) where corrected masks are saved (default: "
                             "RESULTS/corrections)")
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
