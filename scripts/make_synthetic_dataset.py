#!/usr/bin/env python
"""Write a physics-based synthetic radiograph dataset with exact open-beam / soft-tissue / bone masks.

Same as ``xray-seg synthetic``; see ``docs/synthetic.md``.

Example::

    python scripts/make_synthetic_dataset.py --out outputs/synthetic --n 1000 --seed 0 --size 256
    python scripts/make_synthetic_dataset.py --out outputs/hands --n 200 --body-parts hand,wrist --workers 2
"""

from __future__ import annotations

import sys

from pipeline.cli.synthetic import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
