"""Batched extraction on CUDA gives the CPU's features: fp32 within TF32 / fp32 rounding, bf16
autocast within bf16 rounding; the DataLoader workers hand over pinned batches.

Tolerances (relative L2 error of each map, ``||cuda - cpu|| / ||cpu||``; both sides stored as
fp16 by the cache, which alone gives about 3e-4):

- fp32 with TF32 off (``torch.backends.cudnn.allow_tf32 = False``): <= 2e-3, fp32 rounding;
- fp32 as it runs by default (cuDNN convolutions in TF32, 10-bit mantissa): <= 1e-2;
- bf16 autocast: at most 4x the CPU's own bf16 autocast error plus 1e-2 (the same model's
  sensitivity to bf16 rounding), and larger than the fp32 error (autocast really ran).
"""

from __future__ import annotations

import pytest
import torch
from cuda_helpers import cached_maps, map_errors, photos

import corr

pytestmark = pytest.mark.cuda

N_IMAGES = 6


def _extract(device, paths, batch_size=1, num_workers=0, **kwargs):
    m = corr.Matcher("tiny", pretrained=False, device=device, memory_cache=64, **kwargs)
    report = m.extract(paths, batch_size=batch_size, num_workers=num_workers, progress=False)
    assert report.computed == len(paths) and not report.bad
    return m, cached_maps(m, paths)


@pytest.fixture(scope="module")
def cpu_fp32():
    paths = photos(N_IMAGES)
    m, maps = _extract("cpu", paths)
    return paths, m, maps


@pytest.fixture
def strict_fp32():
    """TF32 off for convolutions and matrix products, restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _same_weights(a, b) -> None:
    for ea, eb in zip(a.extractors, b.extractors, strict=True):
        sa, sb = ea.state_dict(), eb.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k].cpu(), sb[k].cpu()), k


def test_batched_cuda_extraction_equals_cpu_in_strict_fp32(cpu_fp32, cuda, strict_fp32):
    paths, m_cpu, want = cpu_fp32
    m, got = _extract(cuda, paths, batch_size=4)
    assert all(e.device.type == "cuda" for e in m.extractors)
    _same_weights(m, m_cpu)
    errs = map_errors(got, want)
    assert max(errs.values()) <= 2e-3, errs


def test_batched_cuda_extraction_equals_cpu_with_default_tf32(cpu_fp32, cuda):
    paths, _, want = cpu_fp32
    _, got = _extract(cuda, paths, batch_size=4)
    errs = map_errors(got, want)
    assert max(errs.values()) <= 1e-2, errs


def test_bf16_autocast_on_cuda_is_within_bf16_rounding(cpu_fp32, cuda, strict_fp32):
    paths, _, want = cpu_fp32
    m_amp, amp = _extract(cuda, paths, batch_size=4, autocast="bf16")
    assert all(e.autocast == torch.bfloat16 for e in m_amp.extractors)
    _, cpu_amp = _extract("cpu", paths, autocast="bf16")
    _, fp32 = _extract(cuda, paths, batch_size=4)
    e_gpu, e_cpu, e_fp32 = (map_errors(x, want) for x in (amp, cpu_amp, fp32))
    for key in e_gpu:
        assert e_cpu[key] < 0.2, (key, e_cpu[key])  # the tiny model is not chaotic in bf16
        assert e_gpu[key] <= 4 * e_cpu[key] + 1e-2, (key, e_gpu[key], e_cpu[key])
    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    assert mean(e_gpu) > mean(e_fp32), (mean(e_gpu), mean(e_fp32))  # bf16 arithmetic ran


def test_dataloader_workers_hand_over_pinned_batches(cuda, monkeypatch):
    """The real path: DataLoader workers decode and letterbox, the batches arrive pinned (for
    the non-blocking copy), and the features equal those extracted without workers."""
    import corr.extraction as extraction

    seen = []

    class Spy(extraction.DataLoader):
        def __iter__(self):
            for batch in super().__iter__():
                seen.append(
                    (self.pin_memory, self.num_workers, [p.is_pinned() for p in batch["pixels"]])
                )
                yield batch

    monkeypatch.setattr(extraction, "DataLoader", Spy)
    paths = photos(N_IMAGES)
    _, got = _extract(cuda, paths, batch_size=3, num_workers=2)
    assert len(seen) == 2, seen  # 6 images, batches of 3
    for pin, workers, pinned in seen:
        assert pin and workers == 2 and pinned == [True, True], seen  # one tensor per extractor
    monkeypatch.undo()
    _, want = _extract(cuda, paths, batch_size=3, num_workers=0)
    errs = map_errors(got, want)
    assert max(errs.values()) <= 1e-3, errs  # the same batches on the same GPU
