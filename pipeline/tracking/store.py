"""The MLflow store a command talks to: the default URI, a client, and the fluent API pointed at it for a while.

MLflow is imported inside the functions, so ``import pipeline.tracking`` costs nothing and works without MLflow.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "STORE_CANDIDATES",
    "default_tracking_uri",
    "fluent_tracking",
    "get_client",
    "guard_sqlite_schema_creation",
    "sqlite_uri",
]


def sqlite_uri(path: str | Path) -> str:
    """``sqlite:////abs/path/mlruns.db`` for a database file (MLflow 3 refuses plain paths: no file store)."""
    return "sqlite:///" + Path(path).expanduser().resolve().as_posix()


#: Where a training leaves its SQLite store, relative to the folder it ran in: ``<bundle>/eval/mlruns.db`` (the
#: bundle's ``output_dir`` default) and ``./mlruns.db`` (MONAI's default without a bundle ``output_dir``).
STORE_CANDIDATES = ("eval/mlruns.db", "mlruns.db")


def default_tracking_uri(folder: str | Path | None = None) -> str:
    """The store a command uses when none is named, found the way a training in ``folder`` would write it.

    ``$MLFLOW_TRACKING_URI`` when set (it wins in training too), else the first of :data:`STORE_CANDIDATES` that
    exists under ``folder`` (default: the current folder), else ``<folder>/eval/mlruns.db`` (which may not exist:
    callers say so). Never the installed package's location.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path.cwd() if folder is None else Path(folder)
    for candidate in STORE_CANDIDATES:
        if (root / candidate).is_file():
            return sqlite_uri(root / candidate)
    return sqlite_uri(root / STORE_CANDIDATES[0])


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


_GUARD_INSTALLED = False


def guard_sqlite_schema_creation() -> None:
    """Make MLflow's first creation of a database's tables safe when several processes open a new store at once.

    MLflow's tracking store checks whether the tables exist and creates them, with nothing in between: two
    trainings that start together against a store that does not exist yet both create them, and one dies with
    ``table experiments already exists``. This wraps that step in an exclusive file lock (MLflow's own
    ``ExclusiveFileLock``, the one its job and workspace stores use) and checks again inside it. Idempotent;
    a no-op when MLflow is not installed. Processes on one machine only: a shared SQLite file on a network drive
    stays unsafe (see docs/mlflow.md).
    """
    global _GUARD_INSTALLED
    if _GUARD_INSTALLED:
        return
    try:
        from mlflow.store.db import utils as db_utils
    except ImportError:
        return
    unguarded = db_utils._initialize_tables
    held = threading.local()

    def initialize_tables_once(engine: Any) -> None:
        if getattr(held, "lock", False):  # MLflow's own locked path calls us inside its lock
            unguarded(engine)
            return
        from mlflow.utils.file_utils import ExclusiveFileLock

        digest = hashlib.md5(str(engine.url).encode(), usedforsecurity=False).hexdigest()
        with ExclusiveFileLock(os.path.join(tempfile.gettempdir(), f"xray-seg-db-init-{digest}")):
            held.lock = True
            try:
                if not db_utils._all_tables_exist(engine):
                    unguarded(engine)
            finally:
                held.lock = False

    db_utils._initialize_tables = initialize_tables_once
    _GUARD_INSTALLED = True
