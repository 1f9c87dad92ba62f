"""Write a synthetic radiograph dataset to disk: 16-bit PNG images, class-index PNG masks, a manifest.

Layout written by :func:`write_dataset`::

    out_dir/
        images/<id>.png     uint16 grayscale (mode "I;16"), MONOCHROME2, values in [0, 2^bits - 1]
        masks/<id>.png      uint8 class indices: 0 open beam, 1 soft tissue, 2 bone/metal
        manifest.csv        one row per sample (see MANIFEST_FIELDS)
        dataset.json        labels, conventions and generation parameters

Every file is written to a temporary name in the same folder and moved into place with
:func:`os.replace`, so an interrupted run never leaves a truncated PNG or manifest behind.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Sequence
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from .generator import CLASS_NAMES, SyntheticRadiographGenerator, sample_seed

__all__ = ["write_dataset", "MANIFEST_FIELDS", "save_png_atomic"]

logger = logging.getLogger(__name__)

#: Columns of ``manifest.csv``.
MANIFEST_FIELDS: tuple[str, ...] = (
    "id",
    "image",
    "mask",
    "body_part",
    "seed",
    "has_metal",
    "implant",
    "kvp",
    "pixel_spacing_mm",
    "frac_open_beam",
    "frac_soft_tissue",
    "frac_bone",
)


def save_png_atomic(array: np.ndarray, path: str | os.PathLike) -> None:
    """Save a 2D ``uint8`` or ``uint16`` array as PNG through a temporary file and :func:`os.replace`.

    Args:
        array: 2D array; ``uint16`` is written as 16-bit grayscale, ``uint8`` as 8-bit.
        path: destination ``.png`` path.

    Raises:
        ValueError: if the array is not 2D ``uint8``/``uint16``.
    """
    if array.ndim != 2 or array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2D uint8/uint16 array, got {array.dtype} {array.shape}")
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# worker state for multiprocessing (set once per worker process)
_WORKER: dict = {}


def _init_worker(gen_kwargs: dict, out_dir: str, seed: int) -> None:
    _WORKER["gen"] = SyntheticRadiographGenerator(**gen_kwargs)
    _WORKER["out"] = Path(out_dir)
    _WORKER["seed"] = seed


def _make_one(index: int) -> dict:
    gen: SyntheticRadiographGenerator = _WORKER["gen"]
    out: Path = _WORKER["out"]
    s = sample_seed(_WORKER["seed"], index)
    image, label, info = gen.generate(s)
    sid = f"syn_{index:06d}"
    save_png_atomic(image, out / "images" / f"{sid}.png")
    save_png_atomic(label, out / "masks" / f"{sid}.png")
    fr = info["class_fractions"]
    return {
        "id": sid,
        "image": f"images/{sid}.png",
        "mask": f"masks/{sid}.png",
        "body_part": info["body_part"],
        "seed": s,
        "has_metal": int(info["has_metal"]),
        "implant": info["implant"],
        "kvp": f"{info['kvp']:.1f}",
        "pixel_spacing_mm": f"{info['pixel_spacing_mm']:.4f}",
        "frac_open_beam": f"{fr['open_beam']:.5f}",
        "frac_soft_tissue": f"{fr['soft_tissue']:.5f}",
        "frac_bone": f"{fr['bone']:.5f}",
    }


def _rows(n: int, num_workers: int, init_args: tuple) -> Iterator[dict]:
    if num_workers <= 1:
        _init_worker(*init_args)
        for i in range(n):
            yield _make_one(i)
        return
    with get_context().Pool(num_workers, initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.imap(_make_one, range(n), chunksize=8)


def write_dataset(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    size: int = 256,
    body_parts: Sequence[str] | None = None,
    progress: bool = True,
    *,
    bits: int = 12,
    metal_probability: float = 0.25,
    num_workers: int = 0,
) -> Path:
    """Generate ``n`` labelled synthetic radiographs and write them with a manifest.

    Sample ``i`` uses the seed :func:`~pipeline.data.synthetic.generator.sample_seed` ``(seed, i)``
    (recorded in the manifest), so any sample can be regenerated alone with
    ``generate_sample(row["seed"], size=size)`` and the output does not depend on ``num_workers``.

    Args:
        out_dir: output folder (created if needed; existing files with the same names are replaced).
        n: number of samples (>= 1).
        seed: dataset seed.
        size: image edge in pixels.
        body_parts: body parts to draw from (names or aliases); ``None`` = all, uniformly.
        progress: show a tqdm progress bar.
        bits: stored bit depth of the images (12-16).
        metal_probability: probability of a metal implant per sample.
        num_workers: worker processes (0 or 1 = in-process).

    Returns:
        Path of the written ``manifest.csv``.

    Raises:
        ValueError: if ``n < 1`` or a generator argument is invalid.
        KeyError: on an unknown body part.

    Examples::

        >>> import tempfile
        >>> manifest = write_dataset(tempfile.mkdtemp(), n=2, size=64, progress=False)
        >>> manifest.name
        'manifest.csv'
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen_kwargs = {
        "size": int(size),
        "bits": int(bits),
        "body_parts": None if body_parts is None else list(body_parts),
        "metal_probability": float(metal_probability),
    }
    SyntheticRadiographGenerator(**gen_kwargs)  # validate arguments before spawning workers
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    rows: list[dict] = []
    bar = tqdm(total=n, desc="synthetic radiographs", unit="img", disable=not progress)
    try:
        for row in _rows(n, num_workers, (gen_kwargs, str(out), int(seed))):
            rows.append(row)
            bar.update(1)
    finally:
        bar.close()
    manifest = out / "manifest.csv"
    tmp = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, manifest)
    meta = {
        "name": "synthetic_radiographs",
        "description": "Physics-based synthetic radiographs with exact open-beam/soft-tissue/bone labels",
        "labels": {name: i for i, name in enumerate(CLASS_NAMES)},
        "image": {"dtype": "uint16", "bits_stored": int(bits), "photometric_interpretation": "MONOCHROME2"},
        "n": int(n),
        "seed": int(seed),
        "size": int(size),
        "body_parts": gen_kwargs["body_parts"] or "all",
        "metal_probability": float(metal_probability),
        "sample_seed": "numpy.random.SeedSequence([seed, index]).generate_state(1)[0]",
    }
    _write_text_atomic(out / "dataset.json", json.dumps(meta, indent=2) + "\n")
    logger.info("wrote %d synthetic samples to %s", n, out)
    return manifest
