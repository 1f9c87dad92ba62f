"""The MLflow store a command talks to: the default URI, a client, and the fluent API pointed at it for a while.

MLflow is imported inside the functions, so ``import pipeline.tracking`` costs nothing and works without MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["default_tracking_uri", "fluent_tracking", "get_client", "sqlite_uri"]


def sqlite_uri(path: str | Path) -> str:
    """``sqlite:////abs/path/mlruns.db`` for a database file (MLflow 3 refuses plain paths: no file store)."""
    return "sqlite:///" + Path(path).expanduser().resolve().as_posix()


def default_tracking_uri(folder: str | Path | None = None) -> str:
    """The store used when none is named: ``$MLFLOW_TRACKING_URI``, else the bundle store of the current folder.

    That is ``eval/mlruns.db`` below ``folder`` (default: the current folder), where
    ``python -m monai.bundle run training --config_file configs/train.yaml --tracking mlflow`` writes when run in a
    bundle folder. Never a location inside the installed package.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return sqlite_uri(Path(folder or Path.cwd()) / "eval" / "mlruns.db")


def get_client(tracking_uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` for ``tracking_uri`` (default: :func:`default_tracking_uri`); it is also the registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri or default_tracking_uri())


@contextmanager
def fluent_tracking(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (``mlflow.start_run``, ``mlflow.pytorch.log_model``) at ``tracking_uri`` for a block.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment, which every later
    ``MLFlowHandler`` of the process would obey; this restores both the module setting and the variable.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous_setting = getattr(tracking_utils, "_tracking_uri", None)
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_setting)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
