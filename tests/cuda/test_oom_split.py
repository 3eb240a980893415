"""Out of memory during extraction: the batch is split in halves and recovers (a real CUDA OOM,
the memory capped with ``torch.cuda.set_per_process_memory_fraction``), and an image that does
not fit alone is refused by name. One CPU test (not marked ``cuda``) checks, with a simulated
OOM, that the failed pass's tensors are freed before the halves run."""

from __future__ import annotations

import logging
import weakref

import pytest
import torch
from cuda_helpers import cached_maps, map_errors, photos
from torch import nn

import corr

MIB = 2**20
SIZE = 512  # each 64-channel activation of one image: 64 x 512 x 512 x 4 bytes = 64 MiB


class TwoConvs(nn.Module):
    """Two 64-channel full-resolution convolutions: a batch of ``B`` needs ``B x 128`` MiB at
    its peak (both activations alive), then a strided head to a small map."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.head = nn.Conv2d(64, 8, 8, stride=8)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    def forward(self, x):
        h = self.conv1(x)
        h = self.conv2(h)
        return self.head(h)


def _matcher(device):
    ext = corr.ModuleExtractor(TwoConvs(), input_size=SIZE, name="two-convs")
    return corr.Matcher([ext], device=device, memory_cache=32)


@pytest.fixture
def capped(cuda):
    """``cap(extra_mib)``: the allocator may hold only what it holds now plus ``extra_mib``;
    the fraction is reset to 1 afterwards."""

    index = torch.cuda.current_device()  # this call wants an index, not torch.device("cuda")

    def cap(extra_mib: float) -> None:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(index).total_memory
        allowed = torch.cuda.memory_reserved(index) + extra_mib * MIB
        torch.cuda.set_per_process_memory_fraction(allowed / total, index)

    yield cap
    torch.cuda.set_per_process_memory_fraction(1.0, index)
    torch.cuda.empty_cache()


@pytest.mark.cuda
def test_real_oom_is_split_in_halves_and_recovers(cuda, capped, caplog):
    """Batch 8 needs about 1 GiB and fails under a 700 MiB cap; each half (about 540 MiB with
    its input) fits, so one split suffices, provided the failed pass's 512 MiB activation is
    freed first (held by the exception's traceback, it would make the halves fail too)."""
    paths = photos(8)
    want_m = _matcher(cuda)
    want_m.extract(paths, batch_size=1, progress=False)  # uncapped, one image at a time
    want = cached_maps(want_m, paths)
    m = _matcher(cuda)
    capped(700)
    with caplog.at_level(logging.WARNING, logger="corr"):
        report = m.extract(paths, batch_size=8, progress=False)
    splits = [r.getMessage() for r in caplog.records if "out of memory at batch" in r.getMessage()]
    assert splits == ["out of memory at batch 8: splitting it in halves"], splits
    assert report.computed == 8
    errs = map_errors(cached_maps(m, paths), want)
    assert max(errs.values()) <= 1e-2, errs  # TF32 convolutions, maybe other algorithms


@pytest.mark.cuda
def test_an_image_that_does_not_fit_alone_is_refused_by_name(cuda, capped):
    m = _matcher(cuda)
    capped(100)  # one image needs about 131 MiB
    with pytest.raises(MemoryError, match=r"two-convs: one \(512, 512\) image does not fit"):
        m.extract(photos(2), batch_size=2, progress=False)


class FailsAboveTwo(nn.Module):
    """Allocates a tensor standing for a pass's activations, then (batch > 2) raises the error
    PyTorch raises when CUDA runs out of memory; records which earlier tensors are alive."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[tuple[int, list[bool]]] = []
        self._refs: list[weakref.ref] = []

    def forward(self, x):
        activations = torch.empty(x.shape[0], 1 << 16)
        self.attempts.append((x.shape[0], [r() is not None for r in self._refs]))
        self._refs.append(weakref.ref(activations))
        if x.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return x[:, :1, ::8, ::8]


def test_failed_pass_is_freed_before_the_halves_run():
    net = FailsAboveTwo()
    m = corr.Matcher([corr.ModuleExtractor(net, input_size=32, name="fails")], device="cpu")
    report = m.extract(photos(8), batch_size=8, progress=False)
    assert report.computed == 8
    assert [n for n, _ in net.attempts] == [8, 4, 2, 2, 4, 2, 2]
    for n, alive in net.attempts:
        assert not any(alive), f"batch {n} ran while an earlier pass's tensors were alive"
