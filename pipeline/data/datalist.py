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


def _read_groups(dataset_dir: Path, group_file: str | Path | None, column: str) -> dict[str, str]:
    if group_file == "auto":
        candidate = dataset_dir / "manifest.csv"
        group_file = candidate if candidate.is_file() else None
    if not group_file:
        return {}
    with open(group_file, newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            return {}
        id_col = "id" if "id" in (reader.fieldnames or []) else (reader.fieldnames or [""])[0]
        return {row[id_col]: row[column] for row in reader}


def _split_bucket(
    items: list[dict[str, str]], fractions: list[float], rng: random.Random, stratified: bool
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """Shuffle one group and cut it by the fractions; small groups still reach validation and test."""
    order = list(items)
    rng.shuffle(order)
    n = len(order)
    if stratified and n == 1:
        return [], [], order  # a body part with a single image goes to test only (XNet paper)
    n_val = round(fractions[1] * n)
    n_test = round(fractions[2] * n)
    if stratified and n >= 3:
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
    n_train = n - n_val - n_test
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def datalist_hash(datalist: dict[str, Any]) -> str:
    """A short content hash of the split (file names per section), logged with every run for traceability."""
    digest = hashlib.sha256()
    for name in SPLIT_NAMES:
        for item in datalist.get(name, []):
            digest.update(f"{name}:{Path(item['image']).name}:{Path(item['label']).name}\n".encode())
    return digest.hexdigest()[:12]


def _pairs_hash(pairs: Sequence[dict[str, str]]) -> str:
    """Hash of the ids and file contents of image/mask pairs (a corrected mask changes it)."""
    digest = hashlib.sha256()
    for pair in sorted(pairs, key=lambda p: p["id"]):
        digest.update(pair["id"].encode())
        for key in ("image", "label"):
            with open(pair[key], "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


def _atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def prepare_datalist(
    dataset_dir: str | Path | Sequence[str | Path],
    output_dir: str | Path | None = None,
    split: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    split_file: str | Path | None = "auto",
    filename: str = "datalist.json",
    reuse: bool = True,
    group_file: str | Path | None = "auto",
    group_column: str = "body_part",
    extra_training_dirs: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Pair a dataset folder and split it into training / validation / test, as a MONAI datalist.

    The split is written to ``output_dir/filename`` and reused on later runs with the same dataset and settings,
    so a run that is resumed, evaluated or compared later sees exactly the same images in each section.

    Args:
        dataset_dir: folder with ``images/`` and ``masks/``; a list (or a
            :class:`~pipeline.data.resolve.DatasetFolders`) makes the first the dataset and adds the pairs of the
            others to ``training`` only (see ``extra_training_dirs``).
        output_dir: where ``datalist.json`` is written and looked for; ``None`` keeps it in memory only.
        split: fractions for training, validation and test; they must sum to 1. Defaults to 70/15/15.
        seed: seed of the shuffle. Defaults to 0.
        split_file: a CSV assigning ids to splits, ``"auto"`` to use ``dataset_dir/splits.csv`` when present, or
            ``None`` for the seeded random split.
        filename: name of the JSON file. Defaults to ``datalist.json``.
        reuse: reuse an existing JSON made from the same dataset and settings. Defaults to True.
        group_file: a CSV with an ``id`` column and ``group_column`` (e.g. the synthetic set's ``manifest.csv``
            with ``body_part``); ``"auto"`` uses ``dataset_dir/manifest.csv`` when it has that column. With groups,
            the random split is stratified (every group in every section when it has enough members, a group with a
            single item goes to test, as in the XNet paper) and each item carries ``"group"`` for balanced sampling.
        group_column: the grouping column. Defaults to ``"body_part"``.
        extra_training_dirs: more folders with ``images/`` + ``masks/`` (e.g. the review page's corrections) whose
            pairs join the training section only; an id also present in the dataset replaces it there (and leaves
            validation/test, so a corrected case is never evaluated against its own correction). Their count and
            hash are recorded under ``"extra_training"`` and change the datalist hash.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...], "dataset_dir", "source", "seed", "hash", ...}``;
        each item is ``{"image": path, "label": path, "id": stem}``.

    Raises:
        ValueError: bad fractions, or a split that leaves a section empty.
        FileNotFoundError: the dataset folder lacks ``images/`` or ``masks/``.
    """
    extra = [str(d) for d in extra_training_dirs]
    if isinstance(dataset_dir, (list, tuple)):
        if not dataset_dir:
            raise ValueError("dataset_dir: the list of folders is empty.")
        extra = [str(d) for d in dataset_dir[1:]] + extra
        dataset_dir = dataset_dir[0]
    extra = [*getattr(dataset_dir, "extra", ()), *extra]
    dataset_dir = Path(str(dataset_dir)).resolve()
    extra_dirs = [Path(d).resolve() for d in dict.fromkeys(extra)]
    fractions = [float(x) for x in split]
    if len(fractions) != 3 or any(x < 0 for x in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {list(split)}.")
    if split_file == "auto":
        candidate = dataset_dir / "splits.csv"
        split_file = candidate if candidate.is_file() else None
    groups = _read_groups(dataset_dir, group_file, group_column)
    settings = {
        "dataset_dir": str(dataset_dir),
        "stratified_by": group_column if groups else None,
        "split": fractions,
        "seed": int(seed),
        "split_file": str(Path(split_file).resolve()) if split_file else None,
    }
    extra_pairs: list[dict[str, str]] = []
    if extra_dirs:
        for folder in extra_dirs:
            extra_report = pair_folder(folder)
            extra_report.log(logger)
            extra_pairs += extra_report.pairs
        settings["extra_training_dirs"] = [str(d) for d in extra_dirs]
        settings["extra_training_hash"] = _pairs_hash(extra_pairs)
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
    if groups:
        for pair in pairs:
            pair["group"] = groups.get(pair["id"], "unknown")
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
        buckets: dict[str, list[dict[str, str]]] = {}
        for pair in pairs:
            buckets.setdefault(pair.get("group", ""), []).append(pair)
        rng = random.Random(seed)
        for group in sorted(buckets):
            train, val, test = _split_bucket(buckets[group], fractions, rng, stratified=bool(groups))
            sections["training"] += train
            sections["validation"] += val
            sections["test"] += test
        for name in SPLIT_NAMES:
            sections[name].sort(key=lambda p: p["id"])
        pct = "/".join(str(round(f * 100)) for f in fractions)
        source = f"random {pct} split, seed {seed}" + (f", stratified by {group_column}" if groups else "")
    if extra_pairs:
        replaced = {p["id"] for p in extra_pairs}
        for name in SPLIT_NAMES:
            sections[name] = [p for p in sections[name] if p["id"] not in replaced]
        sections["training"] = sorted(sections["training"] + [dict(p) for p in extra_pairs],
                                      key=lambda p: p["id"])
        source += f" + {len(extra_pairs)} training pairs from {len(extra_dirs)} more folder(s)"
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
    if extra_pairs:
        datalist["extra_training"] = {"dirs": [str(d) for d in extra_dirs], "count": len(extra_pairs),
                                      "hash": settings["extra_training_hash"]}
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
