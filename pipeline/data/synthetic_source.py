"""Make (once) and find the synthetic radiograph datasets the tissue bundle trains and tests on."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

__all__ = ["synthetic_dataset_dir"]

logger = logging.getLogger(__name__)


def synthetic_dataset_dir(
    root: str | Path, n: int = 150, seed: int = 0, size: int = 256, num_workers: int = 0
) -> str:
    """Return a folder holding ``n`` synthetic radiographs (``images/``, ``masks/``, ``manifest.csv``), making it once.

    The folder name encodes the settings (``synthetic_n150_seed0_256px``), so different settings never mix and a
    second run reuses what the first generated. Generation is deterministic from ``seed``.

    Args:
        root: parent folder (e.g. the bundle's output folder).
        n: number of images. Defaults to 150, the size of the XNet paper's labelled set.
        seed: dataset seed. Use another seed for a held-out test set.
        size: image side in pixels.
        num_workers: generator processes.
    """
    from pipeline.data.synthetic import write_dataset

    folder = Path(root) / f"synthetic_n{n}_seed{seed}_{size}px"
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            rows = sum(1 for _ in csv.DictReader(f))
        if rows == n:
            return str(folder)
    logger.info("generating %d synthetic radiographs (seed %d, %d px) into %s", n, seed, size, folder)
    write_dataset(folder, n=n, seed=seed, size=size, progress=True, num_workers=num_workers)
    return str(folder)
