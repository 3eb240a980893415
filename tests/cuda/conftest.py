"""CUDA tests (``@pytest.mark.cuda``): skipped, with the reason, where no CUDA device is present;
on a GPU machine ``bash benchmarks/gpu/check.sh`` runs them (``pytest -m cuda tests/cuda``)."""

from __future__ import annotations

import pytest
import torch

NO_CUDA = (
    "needs a CUDA device (torch.cuda.is_available() is False here); on a GPU machine run "
    "`bash benchmarks/gpu/check.sh`"
)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def cuda():
    """The CUDA device; its cached blocks are given back after the test."""
    yield torch.device("cuda")
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
