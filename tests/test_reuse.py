"""Per-image descriptors reused across pairs (corr/reuse.py): the same numbers as building
them for every pair, kept only where no co-PCA ties them to a pair, within their bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import corr.matcher
from corr import Matcher
from corr.extractors import ModuleExtractor
from corr.fusion import build_descriptors_many, l2_normalize
from corr.matching import match_points
from corr.reuse import DescriptorMemo, reusable_key


def _extractor(name: str, channels: int, reduce: bool = False, seed: int = 0) -> ModuleExtractor:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, channels, 5, 2, 2))
    return ModuleExtractor(net, input_size=64, name=name, reduce=reduce)


def _photo(w: int, h: int, seed: int) -> np.ndarray:
    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 255, (h // 5, w // 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def test_memo_keeps_the_recent_entries_within_its_bounds():
    memo = DescriptorMemo(items=2, max_bytes=None)
    made = []

    def make(v):
        return lambda: made.append(v) or torch.full((4,), float(v))

    assert memo.get_or_make("a", make(1))[0] == 1 and memo.get_or_make("b", make(2))[0] == 2
    assert memo.get_or_make("a", make(9))[0] == 1  # kept: not made again
    memo.get_or_make("c", make(3))  # "b" is the least recently used: it leaves
    assert made == [1, 2, 3] and len(memo) == 2
    assert memo.get_or_make("b", make(4))[0] == 4 and (memo.hits, memo.misses) == (1, 4)
    by_bytes = DescriptorMemo(items=10, max_bytes=40)  # room for 2 tensors of 16 bytes
    for k in "xyz":
        by_bytes.put(k, torch.zeros(4))
    assert len(by_bytes) == 2 and by_bytes.held_bytes == 32
    by_bytes.put("big", torch.zeros(11))  # 44 bytes alone: never kept
    assert len(by_bytes) == 2 and by_bytes.held_bytes == 32
    nothing = DescriptorMemo(items=0)
    nothing.put("a", torch.zeros(1))
    assert len(nothing) == 0


@pytest.mark.parametrize("protocol", ["corr", "geoaware"])
def test_reused_descriptors_give_the_per_pair_numbers_bit_for_bit(protocol):
    """Two extractors, weights 0.5 / 0.5, neither reduced: every pair of three images matched
    through the reused per-image descriptors equals the per-pair build of the code before
    (build_descriptors_many on the pair, match_points normalising both)."""
    m = Matcher([_extractor("a", 12), _extractor("b", 6, seed=1)], protocol=protocol, device="cpu")
    images = [_photo(90, 60, 1), _photo(70, 80, 2), _photo(64, 64, 3)]
    pts = np.array([[10.0, 20.0], [50.0, 40.0], [3.0, 55.0]])
    for i, j in [(0, 1), (1, 2), (2, 0), (0, 2)]:
        pair = m.pair(images[i], images[j])
        pts_ij = pts.copy()
        pts_ij[:, 0] = np.minimum(pts_ij[:, 0], pair.features[0].width - 1)
        got = pair.match(pts_ij).keypoints1
        fs, ft = pair.features
        grid = max(t.shape[-1] for t in fs.maps[-1].values())
        ds, dt = build_descriptors_many(
            [fs.maps, ft.maps], [False, False], m.weights, grid, mode=m.fusion, pca_dim=m.pca_dim
        )
        assert torch.equal(pair.descriptors[0], ds) and torch.equal(pair.descriptors[1], dt)
        us, ut = pair.unit_descriptors
        assert torch.equal(us, l2_normalize(ds)) and torch.equal(ut, l2_normalize(dt))
        cells = torch.tensor([[3, 4], [10, 2]])
        a = match_points(ds, dt, cells, m.method, m.window, m.temperature)
        b = match_points(us, ut, cells, m.method, m.window, m.temperature, normalized=True)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        fresh = Matcher(list(m.extractors), protocol=protocol, device="cpu")
        fresh.reuse.items = 0  # nothing reused: built for this pair alone
        np.testing.assert_array_equal(got, fresh.match(images[i], images[j], pts_ij).keypoints1)
    assert m.reuse.hits > 0  # the images' descriptors served several pairs


def test_co_pca_descriptors_are_never_reused(monkeypatch):
    m = Matcher([_extractor("sd-like", 12, reduce=True), _extractor("b", 6)], pca_dim=4)
    assert m.weights == [0.5, 0.5]
    a, b, c = _photo(90, 60, 1), _photo(70, 80, 2), _photo(64, 64, 3)
    built = []
    real = corr.matcher.build_descriptors_many
    monkeypatch.setattr(
        corr.matcher,
        "build_descriptors_many",
        lambda maps, *x, **k: built.append(len(maps)) or real(maps, *x, **k),
    )
    for s, t in [(a, b), (a, c), (a, b)]:
        m.pair(s, t).match([[10.0, 20.0]])
    assert built == [2, 2, 2] and len(m.reuse) == 0  # one co-PCA per pair, nothing kept
    # a reduced extractor with weight 0 takes no part: the descriptor is per image again
    f = m.features(a)
    assert reusable_key(m, f.sources, (0.0, 1.0)) is not None
    assert reusable_key(m, f.sources, (0.5, 0.5)) is None
    assert reusable_key(m, (), (0.0, 1.0)) is None  # maps of unknown origin


def test_adapters_are_reused_only_when_opened_from_a_file_and_in_eval_mode(tmp_path):
    from corr.adapters import AdapterConfig, AggregationNetwork, adapter_groups, save_adapter

    ext = _extractor("a", 12)
    maps = Matcher([ext], device="cpu").features(_photo(90, 60, 1)).maps
    recipe = {"extractors": ["a"], "protocol": "corr", "soft_eval": False}
    torch.manual_seed(0)
    net = AggregationNetwork(
        AdapterConfig.for_groups(adapter_groups(maps), projection_dim=128, recipe=recipe)
    )
    path = save_adapter(net, tmp_path / "adapter")
    src, tgt = _photo(90, 60, 1), _photo(70, 80, 2)
    from_file = Matcher([ext], adapter=str(path), device="cpu")
    from_module = Matcher([ext], adapter=net.eval(), device="cpu")
    f = from_file.features(src)
    key = reusable_key(from_file, f.sources, (1.0,))
    assert key is not None and reusable_key(from_module, f.sources, (1.0,)) is None
    with torch.no_grad():
        next(from_file.adapter.parameters()).mul_(1.0)  # an in-place change: another key
    assert reusable_key(from_file, f.sources, (1.0,)) != key
    from_file.adapter.train()
    assert reusable_key(from_file, f.sources, (1.0,)) is None
    from_file.adapter.eval()
    pts = [[10.0, 20.0], [60.0, 30.0]]
    np.testing.assert_array_equal(
        from_file.match(src, tgt, pts).keypoints1, from_module.match(src, tgt, pts).keypoints1
    )
    assert len(from_file.reuse) == 4 and len(from_module.reuse) == 0  # descriptor + unit each
