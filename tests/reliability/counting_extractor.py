"""A tiny custom extractor for the shared-cache tests (``counting_extractor:counting``).

Its maps are 8 x 8 average-pooled pixels (deterministic, no weights). Every image it computes
is logged as a line ``PID SHA256-OF-ITS-PIXELS`` to ``$CORR_TEST_EXTRACT_LOG``, and each call
takes ``$CORR_TEST_SECONDS`` seconds per image, so that two processes overlap. With
``$CORR_TEST_BARRIER`` (a folder) and ``$CORR_TEST_PARTIES`` (a count) the first call waits
until that many processes have reached it, so that they start extracting at the same moment.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import torch
from torch import nn

from corr.extractors import ModuleExtractor


def _barrier() -> None:
    folder = os.environ.get("CORR_TEST_BARRIER")
    if not folder:
        return
    parties = int(os.environ.get("CORR_TEST_PARTIES", "2"))
    (Path(folder) / f"ready.{os.getpid()}").write_text("")
    deadline = time.monotonic() + 120
    while len(list(Path(folder).glob("ready.*"))) < parties and time.monotonic() < deadline:
        time.sleep(0.02)


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.calls == 0:
            _barrier()
        self.calls += 1
        time.sleep(float(os.environ.get("CORR_TEST_SECONDS", "0")) * len(x))
        log = os.environ.get("CORR_TEST_EXTRACT_LOG")
        if log:
            with open(log, "a") as f:
                for image in x:
                    digest = hashlib.sha256(
                        image.detach().contiguous().numpy().tobytes()
                    ).hexdigest()
                    f.write(f"{os.getpid()} {digest}\n")
        return {"feat": nn.functional.avg_pool2d(x, 8)}


def counting(pretrained: bool = True, input_size: int = 64) -> ModuleExtractor:
    """The counting extractor (``pretrained`` changes nothing: it has no weights)."""
    return ModuleExtractor(
        Counting(), input_size=input_size, name="counting", weights_id="counting-test"
    )
