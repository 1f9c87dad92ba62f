"""Deterministic train / validation / test splits, written as a MONAI datalist JSON and reused on later runs."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.data.pairing import pair_folder

__all__ = ["prepare_datalist", "read_split_file", "datalist_hash", "SPLIT_NAMES"]

logger = logging.getLogger(__name__)

#: MONAI datalist section names, in order.
SPLIT_NAMES = ("training", "validation", "test")
_ALIASES = {
    "train": "training",
    "training": "training",
    "tr": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
    "ts": "test",
}


def read_split_file(path: str | Path) -> dict[str, str]:
    """Read a CSV that assigns ids to splits (e.g. ``jsrt_scr/splits.csv``).

    The CSV needs a header with an ``id`` column (or the first column) and a column whose name contains ``split``
    (or the second column); values ``train``/``val``/``test`` (and their long forms) are accepted.

    Returns:
        ``{id: "training" | "validation" | "test"}``.

    Raises:
        ValueError: an unknown split name; the message gives the row.
    """
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if len(fields) < 2:
            raise ValueError(f"{path}: a split file needs two columns (id, split), got {fields}.")
        id_col = "id" if "id" in fields else fields[0]
        split_col = next((c for c in fields if "split" in c.lower()), fields[1])
        out: dict[str, str] = {}
        for i, row in enumerate(reader, start=2):
            value = (row[split_col] or "").strip().lower()
            if value not in _ALIASES:
                raise ValueError(f"{path}, line {i}: unknown split {value!r}; use train, val or test.")
            out[row[id_col].strip()] = _ALIASES[value]
    return out


def datalist_hash(datalist: dict[str, Any]) -> str:
    """A short content hash of the split (file names per section), logged with every run for traceability."""
    digest = hashlib.sha256()
    for name in SPLIT_NAMES:
        for item in datalist.get(name, []):
            digest.update(f"{name}:{Path(item['image']).name}:{Path(item['label']).name}\n".encode())
    return digest.hexdigest()[:12]


def _atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def prepare_datalist(
    dataset_dir: str | Path,
    output_dir: str | Path | None = None,
    split: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    split_file: str | Path | None = "auto",
    filename: str = "datalist.json",
    reuse: bool = True,
) -> dict[str, Any]:
    """Pair a dataset folder and split it into training / validation / test, as a MONAI datalist.

    The split is written to ``output_dir/filename`` and reused on later runs with the same dataset and settings,
    so a run that is resumed, evaluated or compared later sees exactly the same images in each section.

    Args:
        dataset_dir: folder with ``images/`` and ``masks/``.
        output_dir: where ``datalist.json`` is written and looked for; ``None`` keeps it in memory only.
        split: fractions for training, validation and test; they must sum to 1. Defaults to 70/15/15.
        seed: seed of the shuffle. Defaults to 0.
        split_file: a CSV assigning ids to splits, ``"auto"`` to use ``dataset_dir/splits.csv`` when present, or
            ``None`` for the seeded random split.
        filename: name of the JSON file. Defaults to ``datalist.json``.
        reuse: reuse an existing JSON made from the same dataset and settings. Defaults to True.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...], "dataset_dir", "source", "seed", "hash", ...}``;
        each item is ``{"image": path, "label": path, "id": stem}``.

    Raises:
        ValueError: bad fractions, or a split that leaves a section empty.
        FileNotFoundError: the dataset folder lacks ``images/`` or ``masks/``.
    """
    dataset_dir = Path(dataset_dir).resolve()
    fractions = [float(x) for x in split]
    if len(fractions) != 3 or any(x < 0 for x in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {list(split)}.")
    if split_file == "auto":
        candidate = dataset_dir / "splits.csv"
        split_file = candidate if candidate.is_file() else None
    settings = {
        "dataset_dir": str(dataset_dir),
        "split": fractions,
        "seed": int(seed),
        "split_file": str(Path(split_file).resolve()) if split_file else None,
    }
    target = Path(output_dir) / filename if output_dir is not None else None
    if reuse and target is not None and target.is_file():
        try:
            existing = json.loads(target.read_text())
        except json.JSONDecodeError:
            existing = {}
        if existing.get("settings") == settings:
            logger.info("reusing the split in %s (hash %s)", target, existing.get("hash"))
            return existing
        logger.info("the split in %s was made from other data or settings; making a new one", target)

    report = pair_folder(dataset_dir)
    report.log(logger)
    pairs = report.pairs
    if not pairs:
        raise ValueError(f"{dataset_dir}: no usable image/mask pairs found (see the warnings above).")
    sections: dict[str, list[dict[str, str]]] = {name: [] for name in SPLIT_NAMES}
    if split_file:
        assignment = read_split_file(split_file)
        unassigned = [p["id"] for p in pairs if p["id"] not in assignment]
        for pair in pairs:
            if pair["id"] in assignment:
                sections[assignment[pair["id"]]].append(pair)
        if unassigned:
            logger.warning("%d pairs are not in %s and were left out: %s", len(unassigned), split_file, unassigned[:10])
        source = f"split file {Path(split_file).name}"
    else:
        order = list(pairs)
        random.Random(seed).shuffle(order)
        n = len(order)
        n_val = round(fractions[1] * n)
        n_test = round(fractions[2] * n)
        n_train = n - n_val - n_test
        sections["training"] = sorted(order[:n_train], key=lambda p: p["id"])
        sections["validation"] = sorted(order[n_train : n_train + n_val], key=lambda p: p["id"])
        sections["test"] = sorted(order[n_train + n_val :], key=lambda p: p["id"])
        source = f"random {round(fractions[0] * 100)}/{round(fractions[1] * 100)}/{round(fractions[2] * 100)} split, seed {seed}"
    for name, frac in zip(("training", "validation"), fractions[:2]):
        if frac > 0 and not sections[name]:
            raise ValueError(f"{dataset_dir}: the {name} section is empty ({len(pairs)} pairs, {source}).")
    datalist: dict[str, Any] = {
        **sections,
        "settings": settings,
        "source": source,
        "counts": {name: len(sections[name]) for name in SPLIT_NAMES},
        "skipped": report.num_skipped,
    }
    datalist["hash"] = datalist_hash(datalist)
    logger.info(
        "split %s: %d training / %d validation / %d test (%s, hash %s)",
        dataset_dir.name,
        *(len(sections[n]) for n in SPLIT_NAMES),
        source,
        datalist["hash"],
    )
    if target is not None:
        _atomic_write_json(target, datalist)
    return datalist
