"""``Matcher(compile=True)`` on CUDA: the compiled extractors (inductor, Triton kernels) give
the eager features. Run apart from the other CUDA tests (the compilation takes a while): the
GPU check's ``cuda_compile_tests`` stage.

Tolerance, relative L2 error per map: fp32 1e-2 (TF32 convolutions on both sides, fused and
reordered arithmetic in the compiled kernels, fp16 storage in the cache); under bf16 autocast
3e-2 (the compiled kernels round to bf16 at other points than the eager ones).
"""

from __future__ import annotations

import pytest
from cuda_helpers import cached_maps, map_errors, photos

import corr

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize(
    "autocast,tol", [(None, 1e-2), ("bf16", 3e-2)], ids=["fp32", "autocast-bf16"]
)
def test_compiled_extractors_give_the_eager_features_on_cuda(cuda, autocast, tol):
    paths = photos(4)
    maps = {}
    for compiled in (False, True):
        m = corr.Matcher(
            "tiny", pretrained=False, device=cuda, compile=compiled, autocast=autocast,
            memory_cache=16,
        )  # fmt: skip
        for ext in m.extractors:  # the dynamo wrapper is in place (or not)
            wrapped = getattr(ext.extract, "_torchdynamo_orig_callable", None) is not None
            assert wrapped == compiled
        m.extract(paths, batch_size=2, progress=False)
        maps[compiled] = cached_maps(m, paths)
    errs = map_errors(maps[True], maps[False])
    assert max(errs.values()) <= tol, errs
