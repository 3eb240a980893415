"""corr.app.session: a click gives what Matcher.match gives, from features computed once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corr import Matcher
from corr.app import PairSession

ASSETS = Path(__file__).resolve().parents[2] / "demos" / "assets"
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
    s = PairSession(matcher, src, tgt)
    calls = []
    for ext in matcher.extractors:  # no extraction after the session is built
        monkeypatch.setattr(ext, "forward", lambda *a, **k: calls.append(1))
    clicks = [s.click(x, y) for x, y in POINTS]
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
    s = PairSession(m, src, tgt)
    cell = tgt.shape[1] / 14  # MobileNetV2 at 448 px: a 14-cell grid across the longer side
    for x, y in POINTS[:3]:
        c = s.click(x, y)
        peak = np.unravel_index(np.nanargmax(c.heatmap), c.heatmap.shape)[::-1]
        assert np.hypot(*(np.array(peak) - c.target)) < cell


def test_mirrored_clicks_and_the_decision_equal_match_with_flip(matcher, tigers):
    src, tgt = tigers
    mirror = np.ascontiguousarray(tgt[:, ::-1])  # the mirrored source *is* the target
    s = PairSession(matcher, mirror, tgt)
    decision = s.try_flip()
    want = matcher.match(mirror, tgt, POINTS[:3], flip=True, flip_pairs=[])
    assert decision.flipped and want.flip["flipped"]
    assert decision.distance == pytest.approx(want.flip["distance"], abs=0)
    assert decision.distance_flipped == pytest.approx(want.flip["distance_flipped"], abs=0)
    assert decision.distance_flipped < decision.distance
    assert "mirrored source wins" in decision.describe()
    got = np.array([s.click(x, y, mirrored=True).target for x, y in POINTS[:3]])
    np.testing.assert_allclose(got, want.keypoints1, rtol=0, atol=ATOL)
    # mirrored, a click lands near its own mirror image on the target
    for (x, y), t in zip(POINTS[:3], got, strict=True):
        assert abs(t[0] - (tgt.shape[1] - 1 - x)) < 80 and abs(t[1] - y) < 80
    plain = np.array([s.click(x, y).target for x, y in POINTS[:3]])
    np.testing.assert_allclose(plain, want.flip["keypoints1_plain"], rtol=0, atol=ATOL)


def test_the_session_keeps_its_own_fusion_weights(matcher, tigers):
    src, tgt = tigers
    before = list(matcher.weights)
    s = PairSession(matcher, src, tgt, weights=[2.0])
    assert matcher.weights == before and s.weights == [2.0]
    with pytest.raises(ValueError, match="weights has 2 entries for 1 extractors"):
        PairSession(matcher, src, tgt, weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="outside the source image"):
        s.click(src.shape[1] + 5, 10)
