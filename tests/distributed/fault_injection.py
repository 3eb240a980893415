"""An extractor for the torchrun tests: the ImageNet MobileNetV2, whose rank 1 dies at its
second batch when ``CORR_TEST_KILL_RANK1`` names the run's cache folder (imported by
``--extractor`` in a subprocess).

Rank 1 first waits until the folder holds at least four feature files: its own first batch is
at most two, so rank 0 has saved some work of its own before the crash. Without the wait the
test raced: on a loaded machine rank 1 could die before rank 0 had written anything, and the
rerun then had nothing of rank 0's to resume (seen once in CI)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from corr.contrib.mobilenet import mobilenetv2

WAIT_S = 120.0  # past it rank 1 dies anyway; the test's own assertions then say what is missing


def _wait_for_files(folder: Path, n: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if sum(1 for _ in folder.rglob("*.safetensors")) >= n:
            return
        time.sleep(0.05)


def mobilenet_rank1_dies(**kwargs):
    ext = mobilenetv2(**kwargs)
    inner = ext.extract
    calls = {"n": 0}

    def extract(pixels, category=None):
        calls["n"] += 1
        cache = os.environ.get("CORR_TEST_KILL_RANK1")
        if cache and os.environ.get("RANK") == "1" and calls["n"] > 1:
            _wait_for_files(Path(cache), 4)
            os._exit(17)  # a crash, not an exception: nothing gets to clean up
        return inner(pixels, category=category)

    ext.extract = extract
    return ext
