"""GeoAware-SC's pose-variant augmentation on keypoints (golden/train_augment.json): the flip
permutation of every training flip table and the flipped keypoints."""

from __future__ import annotations

import torch

from corr.keypoint_tables import load_groups
from corr.train import flip_keypoints, flip_permutation_for


def test_bundled_training_tables_are_the_references(golden):
    data = golden("train_augment.json")
    spair = load_groups("spair_flip")
    for cat, raw in data["spair_tables"].items():
        as_groups = [e if isinstance(e, list) else [e] for e in raw]
        assert spair[cat] == as_groups, cat
    ap10k = next(iter(load_groups("ap10k_flip").values()))
    assert ap10k == [e if isinstance(e, list) else [e] for e in data["ap10k_table"]]


def test_flip_permutations_match_permute_indices(golden):
    data = golden("train_augment.json")
    spair = load_groups("spair_flip")
    for cat, want in data["spair_perms"].items():
        assert flip_permutation_for(spair[cat]).tolist() == want, cat
    ap10k = next(iter(load_groups("ap10k_flip").values()))
    assert flip_permutation_for(ap10k).tolist() == data["ap10k_perm"]


def test_flipped_keypoints_match_flip_keypoints(golden):
    data = golden("train_augment.json")
    spair = load_groups("spair_flip")
    ap10k = next(iter(load_groups("ap10k_flip").values()))
    for name, case in data["flips"].items():
        table = ap10k if name == "ap10k" else spair[name]
        got = flip_keypoints(torch.tensor(case["kps"]), data["size"], flip_permutation_for(table))
        torch.testing.assert_close(got, torch.tensor(case["flipped"]), atol=0, rtol=0)


def test_wrong_flips_fail_the_golden(golden):
    """Mirroring without reordering the keypoints, or about ``size - 1`` instead of ``size``,
    misses ``flip_keypoints``'s output."""
    data = golden("train_augment.json")
    case = data["flips"]["cat"]
    perm = flip_permutation_for(load_groups("spair_flip")["cat"])
    kps, want = torch.tensor(case["kps"]), torch.tensor(case["flipped"])
    identity = list(range(len(perm)))
    assert not torch.equal(flip_keypoints(kps, data["size"], identity), want)
    assert not torch.equal(flip_keypoints(kps, data["size"] - 1, perm), want)
