"""Turn the bundle's ``dataset_dir`` setting into a folder: a path, the embedded sample, or the CRD download."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from pipeline.data.kaggle import DatasetUnavailableError, download_crd

__all__ = ["SAMPLE_NAME", "sample_dir", "resolve_dataset_dir"]

logger = logging.getLogger(__name__)

#: The small real sample shipped inside the package (30 JSRT pairs, see its SOURCE.md).
SAMPLE_NAME = "jsrt30"


def sample_dir() -> Path:
    """Folder of the embedded JSRT sample (``images/`` + ``masks/``)."""
    return Path(str(resources.files("pipeline.data") / "sample" / SAMPLE_NAME))


def resolve_dataset_dir(dataset_dir: str | Path | None = "auto") -> str:
    """Resolve a dataset setting to a folder with ``images/`` and ``masks/``.

    Args:
        dataset_dir: one of

            * ``"auto"`` / ``None`` / ``""``: the CRD set via kagglehub when online, else the embedded sample (with a
              log line saying so and how to use your own folder);
            * ``"sample"``: the embedded 30-image JSRT sample;
            * ``"crd"``: the CRD set via kagglehub, failing with instructions when offline;
            * a path to a folder with ``images/`` and ``masks/``.

    Returns:
        The folder as a string.

    Raises:
        FileNotFoundError: a given path does not exist or lacks ``images/`` / ``masks/``.
        DatasetUnavailableError: ``"crd"`` was asked for but cannot be downloaded.
    """
    key = str(dataset_dir).strip().lower() if dataset_dir is not None else "auto"
    if key in ("auto", "none", "", "default"):
        try:
            return str(download_crd())
        except DatasetUnavailableError as err:
            logger.warning("CRD dataset not available (%s). Training on the embedded JSRT sample instead.", err)
            return str(sample_dir())
    if key == "sample":
        return str(sample_dir())
    if key == "crd":
        return str(download_crd())
    path = Path(dataset_dir).expanduser()  # type: ignore[arg-type]
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset_dir {path}: folder not found. Pass a folder holding images/ and masks/, or 'sample' / 'crd'."
        )
    if not ((path / "images").is_dir() and (path / "masks").is_dir()):
        raise FileNotFoundError(
            f"dataset_dir {path}: expected sub-folders images/ and masks/ (files paired by name); found "
            f"{sorted(p.name for p in path.iterdir() if p.is_dir())[:10]}."
        )
    return str(path.resolve())
