"""Shared test fixtures: where the shared data lives, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The ``shared/`` folder beside the checkout (override with ``CORR_SHARED``)."""
    return Path(os.environ.get("CORR_SHARED", REPO.parent / "shared")).resolve()


def _need(path: Path) -> Path:
    if not path.exists():
        msg = f"test data not found: {path} (set CORR_SHARED to the shared/ folder)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # in CI the data must be there: never skip silently
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return _need(shared_dir())


@pytest.fixture(scope="session")
def minireal() -> Path:
    return _need(shared_dir() / "data" / "minireal")


@pytest.fixture(scope="session")
def spair_fixture() -> Path:
    return _need(shared_dir() / "fixtures" / "spair-format")
