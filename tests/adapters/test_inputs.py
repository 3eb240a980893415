"""The adapter's input from extractor maps, its output normalisation, and the end-to-end path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from corr.adapters import (
    AdapterConfig,
    AggregationNetwork,
    adapter_descriptor,
    adapter_groups,
    adapter_input,
    normalize_descriptor,
)


def sd_dino_like(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sd = {
        "sd2": torch.randn(12, 3, 3, generator=g),
        "sd5": torch.randn(10, 6, 6, generator=g),
        "sd8": torch.randn(8, 12, 12, generator=g),
    }
    dino = {"dino": torch.randn(6, 12, 12, generator=g)}
    return [sd, dino]


def test_input_is_the_references_concatenation():
    """cat([s3, up(s4), up(s5), dino]) with one bilinear step each (pck_train.py)."""
    maps = sd_dino_like()
    sd, dino = maps

    def up(m):
        return F.interpolate(m[None], size=(12, 12), mode="bilinear", align_corners=False)[0]

    want = torch.cat([sd["sd8"], up(sd["sd5"]), up(sd["sd2"]), dino["dino"]])
    torch.testing.assert_close(adapter_input(maps), want, atol=0, rtol=0)
    assert adapter_groups(maps) == [("sd8", 8), ("sd5", 10), ("sd2", 12), ("dino", 6)]


def test_grid_defaults_to_the_last_extractors_finest_map():
    sd, dino = sd_dino_like()
    small_dino = {"dino": dino["dino"][:, :6, :6]}
    assert adapter_input([sd, small_dino]).shape == (36, 6, 6)
    assert adapter_input([sd, small_dino], grid=9).shape == (36, 9, 9)
    cfg = AdapterConfig.for_groups(adapter_groups([sd, dino]), projection_dim=128, grid=24)
    assert adapter_input([sd, dino], config=cfg).shape == (36, 24, 24)


def test_fp16_maps_become_float32():
    sd, dino = sd_dino_like()
    half = [{k: v.half() for k, v in m.items()} for m in (sd, dino)]
    assert adapter_input(half).dtype == torch.float32


def test_input_checked_against_the_adapter_config():
    maps = sd_dino_like()
    cfg = AdapterConfig(
        feature_dims=(8, 10, 12, 6), group_names=("sd8", "sd5", "sd2", "dino"), projection_dim=128
    )
    adapter_input(maps, config=cfg)
    wrong = AdapterConfig(feature_dims=(8, 10, 12, 7), group_names=None, projection_dim=128)
    with pytest.raises(
        ValueError, match=r"groups sd8 8 \+ sd5 10 \+ sd2 12 \+ dino 6, but the adapter"
    ):
        adapter_input(maps, config=wrong)
    renamed = AdapterConfig(
        feature_dims=(8, 10, 12, 6), group_names=("a", "b", "c", "d"), projection_dim=128
    )
    with pytest.raises(ValueError, match="a 8 \\+ b 10"):
        adapter_input(maps, config=renamed)


def test_bad_maps_are_refused():
    sd, dino = sd_dino_like()
    with pytest.raises(TypeError, match="sequence of per-extractor map dicts"):
        adapter_input(sd)
    with pytest.raises(ValueError, match="at least one extractor"):
        adapter_input([])
    with pytest.raises(ValueError, match=r"map 'dino' must be \(C, h, w\)"):
        adapter_input([sd, {"dino": dino["dino"][None]}])


def test_normalize_descriptor_is_normalize_feats():
    d = torch.randn(2, 16, 5, 5)
    n = normalize_descriptor(d)
    torch.testing.assert_close(n.norm(dim=1), torch.ones(2, 5, 5), atol=1e-6, rtol=0)
    want = d / (torch.linalg.norm(d, dim=1, keepdim=True) + 1e-10)
    assert torch.equal(n, want)
    assert torch.equal(normalize_descriptor(d[0]), want[0])


def test_dinov2_only_adapter_end_to_end_on_tiny_features():
    """A one-group adapter on the real (tiny, random) DINOv2 extractor's maps."""
    import corr

    ext = corr.create_extractor("dinov2-tiny", pretrained=False)
    with torch.no_grad():
        maps = {
            k: v[0]
            for k, v in ext.extract(torch.rand(1, 3, ext.input_size, ext.input_size)).items()
        }
    groups = adapter_groups([maps])
    assert groups == [("dino", maps["dino"].shape[0])]
    net = AggregationNetwork(AdapterConfig.for_groups(groups, projection_dim=128)).eval()
    with torch.no_grad():
        desc = adapter_descriptor(net, [maps])
    g = maps["dino"].shape[-1]
    assert desc.shape == (128, g, g)
    torch.testing.assert_close(desc.norm(dim=0), torch.ones(g, g), atol=1e-5, rtol=0)
