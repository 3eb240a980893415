"""Test-time pose alignment: exact label/visibility rules, and real mirror pairs."""

import json

import numpy as np
import pytest
import torch

import corr
from corr.alignment import (
    flip_permutation_from_pairs,
    flipped_queries,
    instance_distance,
    mask_to_grid,
    replace_where_aligned,
)
from corr.geometry import Letterbox


def test_flip_permutation_from_pairs():
    assert flip_permutation_from_pairs([(0, 2)], 4).tolist() == [2, 1, 0, 3]
    assert flip_permutation_from_pairs([], 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="two flip pairs"):
        flip_permutation_from_pairs([(0, 1), (1, 2)], 3)
    with pytest.raises(ValueError, match="outside"):
        flip_permutation_from_pairs([(0, 5)], 3)


def test_flipped_query_is_the_mirrored_twin():
    # keypoint 0 = left eye at x=10, keypoint 1 = right eye at x=30, keypoint 2 = nose at x=20
    pts = np.array([[10.0, 5.0], [30.0, 6.0], [20.0, 9.0]])
    perm = np.array([1, 0, 2])
    q = flipped_queries(pts, perm, width=100)
    # left eye asks where the right eye lands in the mirror: x' = W - 1 - 30
    assert q.tolist() == [[69.0, 6.0], [89.0, 5.0], [79.0, 9.0]]


def test_replacement_needs_i_and_its_twin_visible_in_source_and_target():
    # GeoAware-SC's vis_flip: i's prediction is replaced only when i AND its twin perm[i] are
    # visible in both images (keypoint 0's twin 1 is missing in the target: 0 keeps its match)
    plain = np.zeros((6, 2))
    aligned = np.ones((6, 2))
    perm = np.array([1, 0, 3, 2, 5, 4])
    src_vis = np.array([True, True, True, False, True, True])  # 3 invisible: 2's twin missing
    tgt_vis = np.array([True, False, True, True, True, True])
    out, used = replace_where_aligned(plain, aligned, src_vis, perm, tgt_vis)
    assert used.tolist() == [False, False, False, False, True, True]
    assert out[:, 0].tolist() == [0, 0, 0, 0, 1, 1]
    _, used = replace_where_aligned(plain, aligned, src_vis, perm)
    assert used.tolist() == [True, True, False, False, True, True]


def test_instance_distance_prefers_the_matching_layout():
    g = torch.Generator().manual_seed(0)
    tgt = torch.randn(8, 6, 6, generator=g)
    same = tgt + 0.01 * torch.randn(8, 6, 6, generator=g)
    other = torch.randn(8, 6, 6, generator=g)
    ones = torch.ones(6, 6, dtype=torch.bool)
    assert instance_distance(same, tgt, ones, ones) < instance_distance(other, tgt, ones, ones)
    assert instance_distance(same, tgt, ones, ones, mutual=False) < 0.1
    none = torch.zeros(6, 6, dtype=torch.bool)
    assert np.isnan(instance_distance(same, tgt, none, ones))


def test_mask_to_grid_follows_the_letterbox():
    mask = np.zeros((50, 100), bool)
    mask[:, 50:] = True  # right half
    m = mask_to_grid(mask, Letterbox(100, 50, 40), 4)
    assert m[1].tolist() == [False, False, True, True]
    assert not m[0].any() and not m[3].any()  # padding rows
    with pytest.raises(ValueError, match="mask is 10x10"):
        mask_to_grid(np.zeros((10, 10)), Letterbox(100, 50, 40), 4)


def test_flip_errors_are_clear():
    m = corr.Matcher(
        [corr.ModuleExtractor(torch.nn.Conv2d(3, 4, 4, 4), input_size=32)], device="cpu"
    )
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="flip=True needs flip_pairs"):
        m.match(img, img, [[1, 1]], flip=True)
    with pytest.raises(ValueError, match="needs labelled points"):
        m.match(img, img, flip=True)
    with pytest.raises(ValueError, match="both src_mask and tgt_mask"):
        m.match(img, img, [[1, 1]], flip=True, flip_pairs=[], src_mask=np.ones((20, 30)))


# ---------------------------------------------------------------- real features on minireal
@pytest.fixture(scope="module")
def mobilenet(real_mobilenet):
    # every image of the module stays in memory: the full copy's run reuses the subset's
    # features and the identity pairs reuse the mirror pairs' sources
    return corr.Matcher([real_mobilenet], device="cpu", memory_cache=256)


def _pairs(minireal, mirror):
    from corr.datasets import load_spair

    return [r for r in load_spair(minireal / "SPair-71k") if bool(r.flags.get("mirror")) == mirror]


def _flip_pairs(minireal, category, k):
    table = json.loads((minireal / "flip.json").read_text())[category]
    pairs = [g for g in table if isinstance(g, list)]
    return flip_permutation_from_pairs(pairs, k)


# the in-repo subset (15 mirror pairs), and the full copy where it is here (36)
@pytest.mark.parametrize("copy, at_least", [("minireal", 15), ("minireal_full", 30)])
def test_mirror_pairs_choose_the_flip_and_are_matched(copy, at_least, mobilenet, request):
    minireal = request.getfixturevalue(copy)
    records = _pairs(minireal, mirror=True)
    assert len(records) >= at_least
    flipped = correct = total = 0
    for r in records:
        res = mobilenet.match(
            r.src_image,
            r.tgt_image,
            np.where(r.src_vis[:, None], r.src_kps, np.nan),
            flip=True,
            flip_pairs=_flip_pairs(minireal, r.table_category, len(r.src_kps)),
            tgt_visible=r.tgt_vis,
        )
        flipped += res["flip"]["flipped"]
        m = r.mutual
        dist = np.linalg.norm(res["keypoints1"][m] - r.tgt_kps[m], axis=1)
        correct += int((dist < 0.05 * r.pck_size).sum())
        total += int(m.sum())
    # measured: flip chosen for 36/36, PCK@0.05 = 0.98 per keypoint (0.23 without alignment);
    # on the subset 15/15 and 1.00
    assert flipped / len(records) >= 0.9, f"flip chosen for {flipped}/{len(records)} mirror pairs"
    assert correct / total >= 0.9, f"PCK@0.05 on mirror pairs = {correct / total:.3f}"


def test_identity_pair_is_not_flipped(minireal, mobilenet):
    for r in _pairs(minireal, mirror=False)[:6]:
        res = mobilenet.match(
            r.src_image,
            r.src_image,
            np.where(r.src_vis[:, None], r.src_kps, np.nan),
            flip=True,
            flip_pairs=_flip_pairs(minireal, r.table_category, len(r.src_kps)),
        )
        assert not res["flip"]["flipped"], r.pair_id
        assert res["flip"]["distance"] < res["flip"]["distance_flipped"]


def test_masked_decision_on_a_mirror_pair(minireal, mobilenet):
    r = _pairs(minireal, mirror=True)[0]

    def box_mask(size, box):
        m = np.zeros((size[1], size[0]), bool)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        m[y1:y2, x1:x2] = True
        return m

    res = mobilenet.match(
        r.src_image,
        r.tgt_image,
        np.where(r.src_vis[:, None], r.src_kps, np.nan),
        flip=True,
        flip_pairs=_flip_pairs(minireal, r.table_category, len(r.src_kps)),
        src_mask=box_mask(r.src_size, r.src_bbox),
        tgt_mask=box_mask(r.tgt_size, r.tgt_bbox),
    )
    assert res["flip"]["masked"] and res["flip"]["flipped"]
