#!/usr/bin/env python
"""Plot a grid of synthetic radiographs per body part, their labels, and real JSRT chest films.

Rows: (1) a synthetic radiograph per body part, (2) its exact label map overlaid (soft tissue blue, bone
and metal orange, open beam uncoloured), (3) another sample of the same body part with a metal implant.
The last column shows real JSRT chest films for comparison; they are read at plot time from
``--jsrt-dir`` and never copied into the repository.

Example::

    python scripts/plot_synthetic_grid.py --out docs/figures/synthetic_grid.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.data.synthetic import BODY_PARTS, SyntheticRadiographGenerator, sample_seed

__all__ = ["build_parser", "plot_grid", "main"]

REPO_ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("plot_synthetic_grid")


def _overlay(image: np.ndarray, label: np.ndarray, vmax: float) -> np.ndarray:
    gray = np.clip(image.astype(np.float32) / vmax, 0.0, 1.0)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    colours = {1: np.array([0.15, 0.45, 1.0]), 2: np.array([1.0, 0.55, 0.0])}
    for cls, colour in colours.items():
        m = label == cls
        rgb[m] = 0.55 * rgb[m] + 0.45 * colour
    return rgb


def plot_grid(out: Path, seed: int, size: int, jsrt_dir: Path | None, n_jsrt: int = 3) -> Path:
    """Render the comparison grid to ``out`` (PNG) and return its path.

    Args:
        out: output PNG path (parent folders are created).
        seed: base seed; sample seeds are derived from it.
        size: synthetic image size in pixels.
        jsrt_dir: folder of real JSRT chest PNGs, or ``None`` / missing to leave that column out.
        n_jsrt: number of JSRT films shown (up to 3).

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    films: list[np.ndarray] = []
    if jsrt_dir is not None and jsrt_dir.is_dir():
        for path in sorted(jsrt_dir.glob("*.png"))[: 40 : max(1, 40 // max(n_jsrt, 1))][:n_jsrt]:
            with Image.open(path) as im:
                films.append(np.asarray(im.convert("L")))
    else:
        logger.warning("JSRT folder %s not found: the real-film column is left out", jsrt_dir)
    parts = list(BODY_PARTS)
    ncols = len(parts) + (1 if films else 0)
    fig, axes = plt.subplots(3, ncols, figsize=(2.15 * ncols, 6.9), squeeze=False)
    plain = SyntheticRadiographGenerator(size=size, metal_probability=0.0)
    metal = SyntheticRadiographGenerator(size=size, metal_probability=1.0)
    for j, part in enumerate(parts):
        image, label, info = plain.generate(sample_seed(seed, j), part)
        vmax = 2 ** info["bits"] - 1
        axes[0, j].imshow(image, cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(f"{part}\n{info['kvp']:.0f} kVp", fontsize=9)
        axes[1, j].imshow(_overlay(image, label, vmax))
        image2, _, info2 = metal.generate(sample_seed(seed, 100 + j), part)
        axes[2, j].imshow(image2, cmap="gray", vmin=0, vmax=vmax)
        axes[2, j].set_title(info2["implant"].replace("_", " ") or "no implant", fontsize=8)
    if films:
        for i in range(3):
            ax = axes[i, -1]
            if i < len(films):
                ax.imshow(films[i], cmap="gray", vmin=0, vmax=255)
        axes[0, -1].set_title("real JSRT\nchest film", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].set_ylabel("synthetic", fontsize=9)
    axes[1, 0].set_ylabel("label overlay\nblue soft / orange bone", fontsize=8)
    axes[2, 0].set_ylabel("with metal implant", fontsize=9)
    fig.suptitle(
        "Physics-based synthetic radiographs (MONOCHROME2, 12-bit) with exact open-beam / soft-tissue / bone labels",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="docs/figures/synthetic_grid.png",
                        help="output PNG (relative paths are taken from the repository root)")
    parser.add_argument("--jsrt-dir", default="../shared/data/jsrt_scr/images",
                        help="folder of real JSRT chest PNGs (relative paths are taken from the repository root)")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--size", type=int, default=256, help="synthetic image size")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and write the figure; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out) if Path(args.out).is_absolute() else REPO_ROOT / args.out
    jsrt = Path(args.jsrt_dir) if Path(args.jsrt_dir).is_absolute() else REPO_ROOT / args.jsrt_dir
    logger.info("wrote %s", plot_grid(out, args.seed, args.size, jsrt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
