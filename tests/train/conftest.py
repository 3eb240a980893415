"""Training tests: the minireal split builder of benchmarks/train_minireal.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def train_minireal():
    """``benchmarks/train_minireal.py`` as a module (``make_splits``, ``pck``)."""
    spec = importlib.util.spec_from_file_location(
        "train_minireal", REPO / "benchmarks" / "train_minireal.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
