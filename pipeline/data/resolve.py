"""Turn the bundle's ``dataset_dir`` setting into a folder: a path, the embedded sample, or the CRD download."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.data.kaggle import DatasetUnavailableError, download_crd

__all__ = ["SAMPLE_NAME", "DatasetFolders", "sample_dir", "resolve_dataset_dir"]

logger = logging.getLogger(__name__)

#: The small real sample shipped inside the package (30 JSRT pairs, see its SOURCE.md).
SAMPLE_NAME = "jsrt30"


def sample_dir() -> Path:
    """Folder of the embedded JSRT sample (``images/`` + ``masks/``)."""
    return Path(str(resources.files("pipeline.data") / "sample" / SAMPLE_NAME))


class DatasetFolders(str):
    """Several dataset folders that behave as the first one, with the others added to the training split only.

    It *is* the first folder's path (a ``str``), so bundle expressions such as ``os.path.basename(@data_root)`` keep
    working and name the main dataset; :func:`pipeline.data.prepare_datalist` sees :attr:`extra` and adds their
    pairs to the training section (e.g. a review page's ``corrections`` folder), leaving validation and test as
    they were, so the new model is compared with the champion on the same cases.

    Attributes:
        extra: the other folders (resolved paths).
    """

    extra: tuple[str, ...]

    def __new__(cls, primary: str, extra: Sequence[str] = ()) -> DatasetFolders:
        obj = super().__new__(cls, primary)
        obj.extra = tuple(str(e) for e in extra)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # picklable for DataLoader workers and config copies
        return (DatasetFolders, (str(self), self.extra))


def _as_list(dataset_dir: Any) -> list[Any] | None:
    """A list setting (``['a', 'b']`` from YAML or the command line, or its string form), else ``None``."""
    if isinstance(dataset_dir, (list, tuple)):
        return list(dataset_dir)
    text = str(dataset_dir).strip() if dataset_dir is not None else ""
    if text.startswith("[") and text.endswith("]"):
        import ast

        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"dataset_dir {text!r}: not a list of folders ({err}).") from None
        return list(value) if isinstance(value, (list, tuple)) else None
    return None


def resolve_dataset_dir(dataset_dir: str | Path | Sequence[str | Path] | None = "auto") -> str:
    """Resolve a dataset setting to a folder with ``images/`` and ``masks/``.

    Args:
        dataset_dir: a list of the values below (``['/data/cxr', 'results/corrections']``): the first is the
            dataset, split as usual; the others (e.g. corrections saved by the review page) join the training
            split only (see :class:`DatasetFolders`); or one of

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
    folders = _as_list(dataset_dir)
    if folders is not None:
        if not folders:
            raise ValueError("dataset_dir: the list of folders is empty.")
        resolved = [resolve_dataset_dir(f) for f in folders]
        logger.info("dataset %s with %d more folder(s) for training only: %s", resolved[0], len(resolved) - 1,
                    ", ".join(resolved[1:]))
        return DatasetFolders(resolved[0], resolved[1:])
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
