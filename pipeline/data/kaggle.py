"""Download the public CRD chest X-ray lung set with ``kagglehub`` and find its ``images/`` + ``masks/`` folder."""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["CRD_HANDLE", "DatasetUnavailableError", "download_crd", "find_dataset_root"]

logger = logging.getLogger(__name__)

#: Kaggle handle of "CRD: Chest X-Ray Images with Lung Segmented Masks".
CRD_HANDLE = "mrunalnshah/crd-chest-x-ray-images-with-lung-segmented-masks"

_OFFLINE_HELP = (
    "To train without a download, point the tool at a local folder that holds 'images/' and 'masks/' paired by file "
    "name: `python -m monai.bundle run training --config_file \"['configs/common.yaml','configs/train.yaml']\" --dataset_dir /path/to/folder` "
    "(or `--dataset_dir sample` for the small JSRT sample shipped with the project). You can also download the set "
    "by hand from https://www.kaggle.com/datasets/" + CRD_HANDLE + " on a machine with internet, unpack it and pass "
    "the folder that contains images/ and masks/ (e.g. .../CXR_Combined)."
)


class DatasetUnavailableError(RuntimeError):
    """The requested dataset cannot be obtained here (offline, no credentials, or an unexpected layout)."""


def find_dataset_root(root: str | Path) -> Path:
    """Find the folder below ``root`` that has both ``images/`` and ``masks/`` (the CRD set nests them).

    Raises:
        DatasetUnavailableError: no such folder exists.
    """
    root = Path(root)
    candidates = [root] + sorted(p for p in root.rglob("*") if p.is_dir())
    for folder in candidates:
        if (folder / "images").is_dir() and (folder / "masks").is_dir():
            return folder
    raise DatasetUnavailableError(f"{root}: no folder with both 'images/' and 'masks/' was found inside it.")


def download_crd(handle: str = CRD_HANDLE) -> Path:
    """Download (or reuse from kagglehub's cache) the CRD set and return its ``images/`` + ``masks/`` folder.

    Args:
        handle: Kaggle dataset handle. Defaults to :data:`CRD_HANDLE`.

    Returns:
        The folder holding ``images/`` and ``masks/``.

    Raises:
        DatasetUnavailableError: kagglehub is missing, the machine is offline, or the layout is unexpected; the
            message says how to use a local folder instead.
    """
    try:
        import kagglehub
    except ImportError as err:
        raise DatasetUnavailableError(f"kagglehub is not installed (`pip install kagglehub`). {_OFFLINE_HELP}") from err
    try:
        path = kagglehub.dataset_download(handle)
    except Exception as err:  # noqa: BLE001 - network, auth and HTTP errors all mean "not available here"
        raise DatasetUnavailableError(
            f"could not download the Kaggle dataset {handle!r} ({type(err).__name__}: {err}). {_OFFLINE_HELP}"
        ) from err
    logger.info("CRD dataset available at %s", path)
    return find_dataset_root(path)
