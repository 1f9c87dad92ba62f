"""Fixtures of the node tests: a tiny lung model trained in seconds on the embedded sample."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import train_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, sample_dir) -> Path:
    import torch

    threads = torch.get_num_threads()
    try:
        return train_tiny_model(tmp_path_factory.mktemp("node-model") / "model.pt", sample_dir, steps=40)
    finally:
        torch.set_num_threads(threads)

