"""Mixed precision: extractors under ``torch.autocast`` (bf16 / fp16), weights left as they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import corr
from corr.extractors import sd as S
from corr.extractors.base import parse_autocast

T = 128


@pytest.fixture(scope="module")
def tiny() -> S.SDExtractor:
    return S.sd_tiny(pretrained=False, input_size=T)


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.rand(1, 3, T, T, generator=torch.Generator().manual_seed(0))


def conv_dtypes(ext: torch.nn.Module, pixels: torch.Tensor) -> set[torch.dtype]:
    """The dtypes the convolutions of ``ext`` produced during one forward pass."""
    seen: set[torch.dtype] = set()
    handles = [
        m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
        for m in ext.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    try:
        ext(pixels)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_sd_under_bf16_autocast_runs_convolutions_in_bf16_and_keeps_fp32_weights(tiny, pixels):
    full = tiny(pixels)
    assert conv_dtypes(tiny, pixels) == {torch.float32}
    tiny.set_autocast("bf16")
    try:
        assert conv_dtypes(tiny, pixels) == {torch.bfloat16}
        mixed = tiny(pixels)
        assert {p.dtype for p in tiny.parameters()} == {torch.float32}
    finally:
        tiny.set_autocast(None)
    assert conv_dtypes(tiny, pixels) == {torch.float32}  # off again
    assert full.keys() == mixed.keys()
    for name in full:
        assert mixed[name].dtype == torch.float32
        a, b = full[name].flatten(), mixed[name].flatten()
        # bf16 keeps 8 bits of mantissa: close to the fp32 features, but not equal to them
        assert not torch.equal(a, b), name
        cos = torch.nn.functional.cosine_similarity(a, b, dim=0)
        assert cos > 0.99, (name, float(cos))


def test_autocast_spellings_and_refusals():
    assert parse_autocast("bf16") is torch.bfloat16
    assert parse_autocast("bfloat16") is torch.bfloat16
    assert parse_autocast("fp16") is torch.float16
    assert parse_autocast(torch.float16) is torch.float16
    assert parse_autocast(None) is None and parse_autocast("off") is None
    with pytest.raises(ValueError, match="autocast.*fp64"):
        parse_autocast("fp64")
    with pytest.raises(ValueError, match="autocast"):
        parse_autocast(torch.float32)


def test_matcher_autocast_is_part_of_the_cache_key_and_config(tiny):
    plain = corr.Matcher(["dinov2-tiny"], pretrained=False, device="cpu")
    mixed = corr.Matcher(["dinov2-tiny"], pretrained=False, device="cpu", autocast="bf16")
    assert "autocast" not in plain.config()["extractors"][0]  # old cache keys stay valid
    assert mixed.config()["extractors"][0]["autocast"] == "bf16"
    img = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    a = plain.features(img).maps[0]
    b = mixed.features(img).maps[0]
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_eval_cli_accepts_autocast():
    from corr.eval.cli import build_parser

    args = build_parser().parse_args(["spair", "--autocast", "bf16"])
    assert args.autocast == "bf16"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["spair", "--autocast", "fp64"])
