"""Golden numbers computed once by the reference implementations (see each file's ``source``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def load_golden(name: str) -> dict:
    """A golden fixture; each names the repository, commit, file and function it came from."""
    data = json.loads((GOLDEN / name).read_text())
    sources = data["source"] if isinstance(data["source"], list) else [data["source"]]
    assert all(len(s["commit"]) == 40 for s in sources), f"{name}: provenance needs full commits"
    return data


@pytest.fixture
def golden():
    return load_golden
