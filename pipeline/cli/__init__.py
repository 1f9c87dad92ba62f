"""The ``xray-seg`` console command: thin sub-commands over importable functions.

Each sub-command lives in its own module exposing ``add_parser(subparsers)`` (registers its arguments and sets
``func``); this file only collects them, so a missing optional dependency disables one command, not all.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pipeline.runtime import configure_openmp

__all__ = ["main", "build_parser", "COMMAND_MODULES", "SERVING_COMMANDS"]

#: Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "pipeline.cli.train",
    "pipeline.cli.predict",
    "pipeline.cli.evaluate",
    "pipeline.cli.registry",
    "pipeline.cli.serve",
    "pipeline.cli.listen",
    "pipeline.cli.synthetic",
)


#: Commands that segment while decoding and writing (their idle OpenMP threads sleep: :mod:`pipeline.runtime`).
#: Training keeps OpenMP's default: there the spinning threads pay (a bf16 BasicUNet step: 556 ms against 803 ms).
SERVING_COMMANDS = frozenset({"predict", "listen", "serve"})


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    from pipeline import __version__

    parser = argparse.ArgumentParser(
        prog="xray-seg",
        description="X-ray segmentation on MONAI: train, evaluate, predict on DICOM folders, manage models, review.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # the command is not part of this installation
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xray-seg``; returns the process exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    if next((w for w in words if not w.startswith("-")), None) in SERVING_COMMANDS:
        configure_openmp()  # before the sub-commands import torch
    parser = build_parser()
    args = parser.parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        logging.getLogger("pipeline").error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
