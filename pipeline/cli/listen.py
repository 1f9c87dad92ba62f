"""``xray-seg listen``: run the DICOM node (receive radiographs by C-STORE, segment, send the SEGs back)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "config_from_args", "run_listen"]

logger = logging.getLogger("pipeline.cli.listen")

_DESCRIPTION = """\
Run a DICOM node on the hospital network. A PACS or a modality sends radiographs to it (C-STORE, AE title
--ae-title, port --port); each one is stored durably in OUT/incoming before Success is answered, segmented on the
same road as `xray-seg predict` (selection rules, decoding, model, DICOM SEG, manifest) into OUT/results, and the
SEG is sent to every --forward destination (C-STORE or DICOMweb STOW-RS) with retries while a destination is down.

The queue lives on disk (OUT/queue): stop the node at any moment (SIGTERM, Ctrl-C, even kill -9) and start it again
with the same OUT: nothing answered Success is lost, nothing is processed or delivered twice (a SEG resent after a
crash has the same SOP Instance UID, so the PACS keeps one). OUT/results/manifest.csv has one row per received
instance: the batch columns plus received_at, calling_ae, node_state, forward_status/response/attempts or
forward_reason (why not forwarded: lateral view, not a radiograph, undecodable...). Review the results with
`xray-seg serve --results OUT/results`. Log lines show UIDs and AE titles only.

Every option can also be given in a YAML file (--config), with the long option names as keys (dashes or
underscores); options on the command line win over the file.
"""

_EPILOG = """\
examples:
  xray-seg listen --model model.pt --out /var/lib/xray-seg --forward dimse://ORTHANC@10.0.0.5:4242 \\
      --bind 0.0.0.0 --allow ORTHANC@10.0.0.5 --allow CR_ROOM1@10.0.1.0/24
  xray-seg listen --config /etc/xray-seg/node.yaml
  xray-seg listen --model model.pt --out node --forward http://10.0.0.5:8042/dicom-web --overlay-sc

C-STORE answers: 0x0000 stored durably; 0xA700 out of resources (disk full, or less than --min-free-mb free);
0xC210 cannot understand (the data set does not decode). SOP classes: CR, DX (presentation, processing), Secondary
Capture; transfer syntaxes: uncompressed, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000.
See docs/dicom-node.md for registering the node in a PACS and running it as a service.
"""

# option name → NodeConfig field (those given on the command line win over --config)
_FIELDS = ("model", "out", "ae_title", "port", "bind", "allow", "forward", "overlay_sc", "workers", "batch_size",
           "gather_s", "device", "selection", "min_free_mb", "retry_initial_s", "retry_max_s", "max_pdu",
           "network_timeout_s")


def config_from_args(args: argparse.Namespace) -> Any:
    """Merge ``--config`` (if any) and the command-line options into a :class:`pipeline.node.NodeConfig`.

    Raises:
        ValueError: a missing ``model``/``out``, an unknown key in the file, or an invalid value.
        FileNotFoundError: the config file does not exist.
    """
    from pipeline.cli.predict import parse_overrides
    from pipeline.node import NodeConfig, load_config_file

    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is not None and value != []:
            values[name] = value
    overrides = dict(values.pop("override", None) or {})
    overrides.update(parse_overrides(args.override))
    if overrides:
        values["overrides"] = overrides
    missing = [k for k in ("model", "out") if not values.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join('--' + m for m in missing)} (on the command line or in --config).")
    return NodeConfig.from_mapping(values)


def run_listen(args: argparse.Namespace) -> int:
    """Run the node until SIGTERM/SIGINT; returns the exit code."""
    from pipeline.node import DicomNode

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("highdicom").setLevel(logging.WARNING)
        # pydicom warnings may quote header values; its decoder errors come with tracebacks: the manifest has the reason
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
        # pynetdicom logs every association, and connection failures as errors: the node's own lines say it once
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
        logging.getLogger("pipeline.inference.batch").setLevel(logging.WARNING)  # the node logs per instance
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom")
    try:
        config = config_from_args(args)
    except (ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 2
    try:
        DicomNode(config).serve_forever()
    except FileNotFoundError as err:
        logger.error("%s", err)
        return 1
    except OSError as err:  # e.g. the port is taken or needs privileges
        logger.error("cannot listen on %s:%d: %s (choose another --port or --bind)", config.bind, config.port,
                     err.strerror or err)
        return 1
    if args.exit_fast:
        # everything is on disk; the interpreter's teardown of torch/BLAS/pynetdicom state was seen to hang for
        # minutes after a SIGTERM under a service manager, so end the process here
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``listen`` on the ``xray-seg`` sub-command parser."""
    parser = subparsers.add_parser(
        "listen",
        help="run a DICOM node: receive radiographs by C-STORE, segment them, send the SEGs back to the PACS",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="YAML file with any of the options below (keys: the long option names)")
    parser.add_argument("--model", "-m", default=None, metavar="PATH|URI",
                        help="checkpoint file or MLflow model URI (models:/NAME@ALIAS), as for `xray-seg predict`")
    parser.add_argument("--out", "-o", type=Path, default=None, metavar="DIR",
                        help="node folder: incoming/ (received instances), queue/ (their state), results/ (SEG, "
                             "masks, overlays, manifest); restarting with the same folder resumes the queue")
    parser.add_argument("--ae-title", default=None, metavar="AET",
                        help="the node's AE title, which senders must call (default XRAYSEG)")
    parser.add_argument("--port", type=int, default=None, help="DICOM port to listen on (default 11112)")
    parser.add_argument("--bind", default=None, metavar="ADDRESS",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for the network)")
    parser.add_argument("--allow", action="append", default=[], metavar="AET[@HOST]",
                        help="accept associations only from this calling AE title (and, with @HOST, only from that "
                             "IP address or CIDR network); repeatable; others are rejected and logged. Default: "
                             "anyone who can reach the port")
    parser.add_argument("--forward", action="append", default=[], metavar="URL",
                        help="send each SEG to dimse://AET@HOST:PORT (C-STORE) or http(s)://HOST:PORT/dicom-web "
                             "(STOW-RS); repeatable. Default: keep the results locally only")
    parser.add_argument("--overlay-sc", action="store_true", default=None,
                        help="also send a Secondary Capture of the overlay, labelled 'AI lung segmentation, not for "
                             "clinical use', for viewers that cannot display SEG")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes decoding received images while the model runs (default 0: in the processing "
                             "thread, best for single images arriving one by one)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="most images per model call when several arrive together (default 4)")
    parser.add_argument("--gather-s", type=float, default=None, metavar="S",
                        help="wait this long after an image arrives for more of the same burst (default 0.3)")
    parser.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:1 (default: CUDA when available)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="model setting override for a checkpoint path, as in `xray-seg predict`; repeatable")
    parser.add_argument("--selection", type=Path, default=None, metavar="FILE",
                        help="selection rules (default: the project's: frontal CR/DX chest images; laterals and "
                             "secondary captures are recorded and not segmented)")
    parser.add_argument("--min-free-mb", type=float, default=None, metavar="MB",
                        help="answer out-of-resources (0xA700) instead of storing when less would stay free on the "
                             "disk of --out (default 256)")
    parser.add_argument("--retry-initial-s", type=float, default=None, metavar="S",
                        help="first wait after a failed delivery, doubled after each failure (default 2)")
    parser.add_argument("--retry-max-s", type=float, default=None, metavar="S",
                        help="longest wait between delivery attempts while a destination is down (default 60)")
    parser.add_argument("--max-pdu", type=int, default=None, metavar="BYTES",
                        help="largest PDU the node accepts (default 0: unlimited)")
    parser.add_argument("--network-timeout-s", type=float, default=None, metavar="S",
                        help="DICOM network / STOW-RS timeout (default 30)")
    parser.set_defaults(func=run_listen, exit_fast=True)
    return parser
