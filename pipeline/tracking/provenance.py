"""Where a run came from: package versions, the project's git commit, and content hashes of files."""

from __future__ import annotations

import hashlib
import logging
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "TRACKED_PACKAGES",
    "file_sha256",
    "git_commit",
    "package_versions",
    "state_weights_sha256",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

#: Distributions whose versions every run records (``version.<name>`` parameters).
TRACKED_PACKAGES = ("torch", "monai", "pytorch-ignite", "numpy", "pydicom", "highdicom", "mlflow", "xray-seg-pipeline")


def package_versions(packages: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` plus the Python version.

    Returns:
        ``{"python": "3.11.7", "torch": "2.13.0+cpu", ..., "highdicom": "not installed"}``.
    """
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(repo: str | Path | None = None) -> tuple[str, bool]:
    """The commit checked out in ``repo`` and whether the working tree has uncommitted changes.

    Args:
        repo: a folder inside the checkout. Defaults to the current folder (a bundle run starts in its bundle
            folder, inside the project's checkout); the installed package's own location is never used.

    Returns:
        ``(sha, dirty)``; ``("unknown", False)`` outside a git checkout or without git.
    """

    repo = Path.cwd() if repo is None else Path(repo)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError) as err:
        logger.debug("no git commit for %s: %s", repo, err)
        return "unknown", False
    return sha, dirty


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content (links a checkpoint to the run that produced it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(checkpoint: str | Path) -> str:
    """Hex SHA-256 of a checkpoint's *weights*: parameter names, shapes, dtypes and values, nothing else.

    Unlike :func:`file_sha256` it does not change when entries are added beside the weights (the evaluation stores
    the fitted ``temperature`` in the checkpoint), so it keeps linking the file to the training run that made it.
    """
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return state_weights_sha256(state)


def state_weights_sha256(state: Mapping[str, Any]) -> str:
    """:func:`weights_sha256` of a checkpoint already in memory (``{"model": weights, ...}`` or bare weights)."""
    import torch

    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key]
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
