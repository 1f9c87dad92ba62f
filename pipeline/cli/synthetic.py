"""``xray-seg synthetic``: write a physics-based synthetic radiograph dataset (images/ + masks/ + manifest.csv)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

__all__ = ["add_arguments", "add_parser", "build_parser", "main", "run"]

_DESCRIPTION = (
    "Generate synthetic radiographs (16-bit PNG, MONOCHROME2) with exact 3-class masks (0 open beam, 1 soft tissue, "
    "2 bone/metal) from randomised body-part phantoms and a polychromatic X-ray model. Writes OUT/images/<id>.png, "
    "OUT/masks/<id>.png, OUT/manifest.csv and OUT/dataset.json. See docs/synthetic.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options on ``parser``."""
    from pipeline.data.synthetic import BODY_PART_ALIASES, BODY_PARTS

    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=1000, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; sample i uses a seed derived from (seed, i)")
    parser.add_argument("--size", type=int, default=256, help="image edge in pixels")
    parser.add_argument(
        "--body-parts",
        default=None,
        help=f"comma-separated body parts to draw from (default: all). Names: {', '.join(BODY_PARTS)}; "
        f"aliases: {', '.join(BODY_PART_ALIASES)}",
    )
    parser.add_argument("--bits", type=int, default=12, choices=range(12, 17), metavar="{12..16}",
                        help="stored bit depth of the images")
    parser.add_argument("--metal-probability", type=float, default=0.25, help="probability of a metal implant")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0 = in-process)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Write the dataset described by parsed ``args``; returns the exit status."""
    from pipeline.data.synthetic import write_dataset

    parts = [p.strip() for p in args.body_parts.split(",") if p.strip()] if args.body_parts else None
    manifest = write_dataset(
        args.out,
        n=args.n,
        seed=args.seed,
        size=args.size,
        body_parts=parts,
        progress=not args.no_progress,
        bits=args.bits,
        metal_probability=args.metal_probability,
        num_workers=args.workers,
    )
    logging.getLogger("pipeline.synthetic").info("manifest: %s", manifest)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``xray-seg synthetic``."""
    parser = subparsers.add_parser(
        "synthetic", help="write a synthetic radiograph dataset (open beam / soft tissue / bone)",
        description=_DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser (used by ``scripts/make_synthetic_dataset.py``)."""
    parser = argparse.ArgumentParser(description=_DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and write the dataset."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args)
