"""An extractor for the torchrun tests: the ImageNet MobileNetV2, whose rank 1 dies after its
first batch when ``CORR_TEST_KILL_RANK1`` is set (imported by ``--extractor`` in a subprocess)."""

from __future__ import annotations

import os

from corr.contrib.mobilenet import mobilenetv2


def mobilenet_rank1_dies(**kwargs):
    ext = mobilenetv2(**kwargs)
    inner = ext.extract
    calls = {"n": 0}

    def extract(pixels, category=None):
        calls["n"] += 1
        if (
            os.environ.get("CORR_TEST_KILL_RANK1")
            and os.environ.get("RANK") == "1"
            and calls["n"] > 1
        ):
            os._exit(17)  # a crash, not an exception: nothing gets to clean up
        return inner(pixels, category=category)

    ext.extract = extract
    return ext
