"""Fixtures for the MLflow tests: real MLflow stores (SQLite in a temp folder), tiny bundle trainings in-process.

One session fixture trains twice into one store, which the tracking and registry tests share:

* run A, ``--tracking`` with the project settings file, learning rate 1e-2, 2 epochs: a real model
  (validation Dice ~0.76 on 12 sample images at 32 px) -> version 1, champion;
* run B, plain ``--tracking mlflow``, learning rate 0, 1 epoch: the untrained network (Dice ~0.2, the same seed
  gives the same initial weights) -> version 2, challenger only. Deterministically worse.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")  # offline: no pip dry run in log_model

from mlflow_helpers import SETTINGS_FILE, make_dataset, train  # noqa: E402  (pytest puts this folder on sys.path)


@dataclass
class Store:
    """The shared store of the session and the two trainings in it."""

    uri: str
    root: Path
    good: dict[str, Any]
    worse: dict[str, Any]


@pytest.fixture(scope="session")
def empty_store_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its tables created, to copy: the schema migration runs once per session."""
    from mlflow import MlflowClient

    from pipeline.tracking import sqlite_uri

    path = tmp_path_factory.mktemp("template") / "empty.db"
    MlflowClient(tracking_uri=sqlite_uri(path)).search_experiments()
    return path


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, empty_store_db: Path) -> Iterator[Store]:
    """Two trainings (good, then worse) registered in one SQLite store; ``MLFLOW_TRACKING_URI`` unset meanwhile."""
    from pipeline.tracking import sqlite_uri

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = tmp_path_factory.mktemp("mlflow")
    shutil.copy(empty_store_db, root / "mlruns.db")
    uri = sqlite_uri(root / "mlruns.db")
    try:
        data = str(make_dataset(root))
        good = train(root / "good", str(SETTINGS_FILE), uri, dataset_dir=data, learning_rate=0.01, max_epochs=2)
        worse = train(root / "worse", "mlflow", uri, dataset_dir=data, learning_rate=0.0, max_epochs=1)
        yield Store(uri, root, good, worse)
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture()
def client(store: Store) -> Any:
    """An MLflow client on the shared store."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store.uri)
