#!/usr/bin/env python
"""Write realistic DX/CR DICOM files from PNG radiographs (tests, demos, benchmarks).

Every variant of :data:`pipeline.dicom.FIXTURE_VARIANTS` (MONOCHROME1 and 2, 12- and 16-bit, uncompressed, JPEG-LS,
JPEG 2000 and RLE, PixelSpacing without a Frame of Reference, no preamble, a lateral, ...) is written once, with a
synthetic patient and deterministic UIDs. Sources default to the 12 JSRT films in ``../shared/data/jsrt_scr_hires``
(or ``$XRAY_SHARED_DATA``), else the committed 256² sample.

Examples::

    python scripts/make_dicom_fixtures.py --out outputs/dicom_fixtures --size 512
    python scripts/make_dicom_fixtures.py --out outputs/dicom_fixtures --sources my_films/*.png --size 2048
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.dicom import FIXTURE_VARIANTS, default_source_images, make_fixture_set

logger = logging.getLogger("make_dicom_fixtures")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="destination folder (created)")
    parser.add_argument("--size", type=int, default=512, help="side of the written images in pixels (default 512)")
    parser.add_argument("--sources", type=Path, nargs="*", default=None,
                        help="PNG/JPEG radiographs to convert (default: the JSRT films, else the committed sample)")
    parser.add_argument("--variants", nargs="*", default=None, metavar="NAME",
                        help=f"only these variants (default all): {', '.join(v.name for v in FIXTURE_VARIANTS)}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Write the fixtures; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    variants = FIXTURE_VARIANTS
    if args.variants:
        unknown = set(args.variants) - {v.name for v in FIXTURE_VARIANTS}
        if unknown:
            logger.error("unknown variant(s): %s", ", ".join(sorted(unknown)))
            return 2
        variants = tuple(v for v in FIXTURE_VARIANTS if v.name in args.variants)
    sources = args.sources or default_source_images()
    written = make_fixture_set(args.out, size=args.size, sources=sources, variants=variants)
    for name, path in written.items():
        logger.info("%-40s %s", name, path)
    logger.info("wrote %d files to %s from %d source image(s)", len(written), args.out, len(sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
