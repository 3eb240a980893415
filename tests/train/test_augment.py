"""Keypoint flips, the flip terms' selection, the Gaussian flow noise."""

from __future__ import annotations

import pytest
import torch

from corr.keypoint_tables import load_groups
from corr.train import flip_keypoints, flip_permutation_for, flip_views, flow_noise, threshold_cells


def kps(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_flip_is_an_involution_on_the_cat_table():
    perm = flip_permutation_for(load_groups("spair_flip")["cat"])
    assert len(perm) == 15
    k = torch.cat([torch.rand(15, 2) * 840, (torch.rand(15, 1) > 0.3).float()], dim=1)
    once = flip_keypoints(k, 840, perm)
    assert torch.equal(once[0], torch.tensor([840 - k[1, 0], k[1, 1], k[1, 2]]))  # eyes swap
    torch.testing.assert_close(flip_keypoints(once, 840, perm), k, atol=1e-4, rtol=0)


def test_flip_truncates_to_the_table_and_checks_rows():
    perm = flip_permutation_for([[0, 1], 2])  # bare ids stay; length max id + 1
    assert perm.tolist() == [1, 0, 2]
    k = kps([[1, 2, 1], [3, 4, 1], [5, 6, 0], [7, 8, 1]])
    assert flip_keypoints(k, 10, perm).tolist() == [[7, 4, 1], [9, 2, 1], [5, 6, 0]]
    with pytest.raises(ValueError, match="refers to keypoint 2 but there are only 2 rows"):
        flip_keypoints(k[:2], 10, perm)
    with pytest.raises(ValueError, match=r"\(K, 3\)"):
        flip_keypoints(k[:, :2], 10, perm)
    with pytest.raises(ValueError, match="empty"):
        flip_permutation_for([])


def test_flip_views_select_the_mutually_visible_rows():
    perm = flip_permutation_for([[0, 1], 2])
    k1 = kps([[10, 10, 1], [20, 20, 0], [30, 30, 1]])
    k2 = kps([[11, 11, 1], [21, 21, 1], [31, 31, 0]])
    views = {v.name: v for v in flip_views(k1, k2, perm, 100, 1.0, 1.0, 0.25)}
    # source flip: flipped k1 row 0 is k1[1] (invisible) -> rows 1 (k1[0] vs k2[1]) only
    assert views["flip"].kps_a.tolist() == [[90, 10, 1]] and views["flip"].kps_b.tolist() == [
        [21, 21, 1]
    ]
    assert (views["flip"].desc_a, views["flip"].desc_b, views["flip"].threshold) == (
        "src_flip",
        "tgt",
        "tgt",
    )
    assert views["double_flip"].kps_b.tolist() == [[89, 11, 1]]  # k2[0] mirrored
    assert (views["double_flip"].desc_a, views["double_flip"].desc_b) == ("src_flip", "tgt_flip")
    assert views["self_flip"].kps_a.tolist() == [
        [70, 30, 1]
    ]  # row 2 (visible in k1 and flipped k1)
    assert (views["self_flip"].desc_b, views["self_flip"].threshold, views["self_flip"].weight) == (
        "src",
        "src",
        0.25,
    )
    # a zero weight or no mutually visible row leaves the term (and its weight) out
    assert [v.name for v in flip_views(k1, k2, perm, 100, 0.0, 1.0, 0.0)] == ["double_flip"]
    blind = k2.clone()
    blind[:, 2] = 0
    assert [v.name for v in flip_views(k1, blind, perm, 100, 1.0, 1.0, 0.25)] == ["self_flip"]


def test_flow_noise_scale_and_generator():
    a = flow_noise(
        (20000, 2), threshold=8.0, gaussian_augment=0.1, generator=torch.Generator().manual_seed(0)
    )
    b = flow_noise(
        (20000, 2), threshold=8.0, gaussian_augment=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert a.std().item() == pytest.approx(0.1 * 8.0 / 2, rel=0.03)
    torch.manual_seed(5)
    c = flow_noise((3, 2), 2.0)
    torch.manual_seed(5)
    assert torch.equal(c, torch.randn(3, 2) * 0.1)  # the global generator, as randn_like


def test_threshold_cells():
    assert threshold_cells(420.0, 840, 60) == pytest.approx(30.0)
