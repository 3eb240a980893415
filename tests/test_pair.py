"""corr.pair.Pair: every question about a pair answered from features computed once; a click
(the demo page's answer_click) gives what Matcher.match gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corr import Matcher
from corr.app import answer_click

ASSETS = Path(__file__).resolve().parents[1] / "corr" / "samples"
# inside both tigers (925 x 1080 and 1239 x 731), corners included
POINTS = [[300.0, 420.0], [512.5, 610.25], [140.0, 700.0], [0.0, 0.0], [924.0, 730.0]]
# float32 soft-argmax over a batch of points vs one point: ~1e-4 px apart
ATOL = 1e-3


@pytest.fixture(scope="module")
def matcher(real_mobilenet):
    return Matcher([real_mobilenet], device="cpu", extractor_options={}, memory_cache=8)


@pytest.fixture(scope="module")
def tigers():
    from corr.io import load_image

    return load_image(ASSETS / "tiger_a.jpg"), load_image(ASSETS / "tiger_b.jpg")


def test_clicks_equal_matcher_match_and_reuse_the_features(matcher, tigers, monkeypatch):
    src, tgt = tigers
    s = matcher.pair(src, tgt).prepare()
    calls = []
    for ext in matcher.extractors:  # no extraction once the pair has its descriptors
        monkeypatch.setattr(ext, "forward", lambda *a, **k: calls.append(1))
    clicks = [answer_click(s, x, y) for x, y in POINTS]
    monkeypatch.undo()
    assert not calls
    want = matcher.match(src, tgt, POINTS)
    got = np.array([c.target for c in clicks])
    np.testing.assert_allclose(got, want.keypoints1, rtol=0, atol=ATOL)
    np.testing.assert_allclose([c.confidence for c in clicks], want.confidence, atol=1e-6)
    assert [c.source for c in clicks] == [tuple(p) for p in POINTS]
    for c in clicks:
        assert c.heatmap.shape == tgt.shape[:2] and not c.mirrored
        # the heat map is the similarity of the clicked cell: its maximum is the best cell's
        assert np.nanmax(c.heatmap) <= 1 + 1e-6 and np.nanmax(c.heatmap) >= c.confidence - 0.05


def test_nearest_neighbour_lands_on_the_heat_maps_peak(real_mobilenet, tigers):
    m = Matcher([real_mobilenet], device="cpu", method="nn")
    src, tgt = tigers
    s = m.pair(src, tgt)
    cell = tgt.shape[1] / 14  # MobileNetV2 at 448 px: a 14-cell grid across the longer side
    for x, y in POINTS[:3]:
        c = answer_click(s, x, y)
        peak = np.unravel_index(np.nanargmax(c.heatmap), c.heatmap.shape)[::-1]
        assert np.hypot(*(np.array(peak) - c.target)) < cell


def test_mirrored_clicks_and_the_decision_equal_match_with_flip(matcher, tigers):
    src, tgt = tigers
    mirror = np.ascontiguousarray(tgt[:, ::-1])  # the mirrored source *is* the target
    s = matcher.pair(mirror, tgt)
    decision = s.flip_decision()
    want = matcher.match(mirror, tgt, POINTS[:3], flip=True, flip_pairs=[])
    assert decision.flipped and want.flip["flipped"]
    assert decision.distance == pytest.approx(want.flip["distance"], abs=0)
    assert decision.distance_flipped == pytest.approx(want.flip["distance_flipped"], abs=0)
    assert decision.distance_flipped < decision.distance
    assert "mirrored source wins" in decision.describe()
    clicks = [answer_click(s, x, y, mirrored=True) for x, y in POINTS[:3]]
    assert all(c.mirrored for c in clicks)
    got = np.array([c.target for c in clicks])
    np.testing.assert_allclose(got, want.keypoints1, rtol=0, atol=ATOL)
    # mirrored, a click lands near its own mirror image on the target
    for (x, y), t in zip(POINTS[:3], got, strict=True):
        assert abs(t[0] - (tgt.shape[1] - 1 - x)) < 80 and abs(t[1] - y) < 80
    plain = np.array([answer_click(s, x, y).target for x, y in POINTS[:3]])
    np.testing.assert_allclose(plain, want.flip["keypoints1_plain"], rtol=0, atol=ATOL)


def test_the_pair_keeps_its_own_fusion_weights(matcher, tigers):
    src, tgt = tigers
    before = list(matcher.weights)
    s = matcher.pair(src, tgt, weights=[2.0])
    assert matcher.weights == before and s.weights == [2.0]
    with pytest.raises(ValueError, match="weights has 2 entries for 1 extractors"):
        matcher.pair(src, tgt, weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="outside the source image"):
        answer_click(s, src.shape[1] + 5, 10)
    with pytest.raises(ValueError, match="outside the source image"):
        s.similarity((10, src.shape[0] + 1))


def _counting_matcher(reduce: bool = False):
    """A tiny deterministic matcher whose extractor counts its forward calls (``reduce``: its
    maps are co-PCA reduced, which ties a descriptor to its pair)."""
    import torch
    from torch import nn

    from corr.extractors import ModuleExtractor

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Conv2d(3, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, 12, 5, 2, 2))
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.net(x)

    net = Counting()
    ext = ModuleExtractor(net, input_size=64, name="counting", reduce=reduce)
    return Matcher([ext], device="cpu", pca_dim=8), net


def _photo(w, h, seed):
    rng = np.random.default_rng(seed)
    from PIL import Image

    small = rng.integers(0, 255, (h // 5, w // 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


@pytest.mark.parametrize("reduce", [False, True], ids=["per-image", "co-PCA"])
def test_one_pair_answers_everything_from_one_extraction_per_image(monkeypatch, reduce):
    """Each image is extracted once; without co-PCA each image's descriptor is built once and
    reused by every pair it is in (corr.reuse), with co-PCA the pair's two are built at once,
    once per pair."""
    import corr.matcher

    m, net = _counting_matcher(reduce)
    src, tgt = _photo(90, 60, 1), _photo(70, 80, 2)
    built = []  # images per descriptor build
    real = corr.matcher.build_descriptors_many
    monkeypatch.setattr(
        corr.matcher,
        "build_descriptors_many",
        lambda maps, *a, **k: built.append(len(maps)) or real(maps, *a, **k),
    )
    pair = m.pair(src, tgt)
    assert net.calls == 0 and not built  # nothing is computed before it is asked for
    pts = [[10.0, 20.0], [80.0, 50.0]]
    first = pair.match(pts)
    per_pair = [2] if reduce else [1, 1]
    assert (net.calls, built) == (2, per_pair)
    pair.similarity((10.0, 20.0))
    pair.dense()
    pair.dense(upsample=True)
    pair.match_sparse()
    pair.match(pts)
    assert (net.calls, built) == (2, per_pair)
    decision = pair.flip_decision()
    # the mirrored source: one extraction, and its pair's fusion (or its own descriptor)
    assert (net.calls, built) == (3, per_pair * 2 if reduce else [1, 1, 1])
    assert pair.flip_decision() is decision  # the maskless decision is kept
    pair.match(pts, flip=True, flip_pairs=[[0, 1]])
    pair.similarity((10.0, 20.0), mirrored=True)
    assert (net.calls, built) == (3, per_pair * 2 if reduce else [1, 1, 1])
    pair.warp()  # the reversed pair: its own fusion (target first) or both reused; no extraction
    assert (net.calls, built) == (3, per_pair * 3 if reduce else [1, 1, 1])
    # asking in any order gives the answers of a fresh pair, and of the one-call methods
    again = m.match(src, tgt, pts)
    np.testing.assert_array_equal(first.keypoints1, again.keypoints1)
    np.testing.assert_array_equal(pair.dense().coords1, m.dense(src, tgt).coords1)
    np.testing.assert_array_equal(pair.warp().warped, m.warp(src, tgt).warped)
    np.testing.assert_array_equal(
        pair.match_sparse().keypoints1, m.match_sparse(src, tgt).keypoints1
    )


def test_masked_decisions_are_not_kept_and_masks_come_in_twos():
    m, _ = _counting_matcher()
    src, tgt = _photo(90, 60, 3), _photo(70, 80, 4)
    pair = m.pair(src, tgt)
    src_mask = np.zeros((60, 90), bool)
    src_mask[10:50, 20:70] = True
    tgt_mask = np.zeros((80, 70), bool)
    tgt_mask[10:70, 10:60] = True
    masked = pair.flip_decision(src_mask, tgt_mask)
    assert masked.masked and not pair.flip_decision().masked
    assert pair.flip_decision(src_mask, tgt_mask) is not masked
    with pytest.raises(ValueError, match="give both src_mask and tgt_mask"):
        pair.flip_decision(src_mask, None)
    out = pair.match([[30.0, 30.0]], flip=True, flip_pairs=[], src_mask=src_mask, tgt_mask=tgt_mask)
    assert out.flip["masked"] and out.flip["distance"] == masked.distance


def test_mirrored_and_reversed_pairs():
    m, _ = _counting_matcher()
    src, tgt = _photo(90, 60, 5), _photo(70, 80, 6)
    pair = m.pair(src, tgt, category=("cat", "dog"))
    rev = pair.reversed()
    assert rev.src is tgt and rev.tgt is src and rev.category == ("dog", "cat")
    mirrored = pair.mirrored()
    assert mirrored is pair.mirrored() and mirrored.mirrored_source
    (name,) = mirrored.features[0].maps[0]
    want = m.features(np.ascontiguousarray(src[:, ::-1])).maps[0][name]
    np.testing.assert_array_equal(mirrored.features[0].maps[0][name], want)
    with pytest.raises(ValueError, match="already the mirrored one"):
        mirrored.mirrored()
    with pytest.raises(ValueError, match="cannot be reversed"):
        mirrored.reversed()
    with pytest.raises(ValueError, match="flip alignment needs labelled points"):
        pair.match(None, flip=True, flip_pairs=[])
    with pytest.raises(ValueError, match="return_tensors"):
        pair.dense(return_tensors="tf")
    assert "descriptors not computed yet" in repr(m.pair("a.jpg", "b.jpg"))
