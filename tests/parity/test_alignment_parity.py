"""GeoAware-SC's flip decision distances and replacement rule (golden/flip_distances.json,
golden/flip_replacement.json)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corr.alignment import (
    flip_permutation_from_pairs,
    instance_distance,
    mirror_in_letterbox,
    reference_masked_distance,
    reference_mutual_distance,
    replace_where_aligned,
)


def _descriptors():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(8, 60, 60, generator=g)
    b = torch.randn(8, 60, 60, generator=g) + 0.5 * a.flip(-1)
    return F.normalize(a, dim=0), F.normalize(b, dim=0)


def test_mutual_distance_matches_the_reference(golden):
    a, b = _descriptors()
    assert reference_mutual_distance(a, b) == pytest.approx(
        golden("flip_distances.json")["mutual"], rel=1e-5
    )
    # ours (content cells, here all of them) is computed differently and must not be mistaken for it
    every = torch.ones(60, 60, dtype=torch.bool)
    assert instance_distance(a, b, every, every) == pytest.approx(
        reference_mutual_distance(a, b), rel=1e-4
    )


def test_masked_distance_matches_the_reference(golden):
    a, b = _descriptors()
    m1 = np.zeros((840, 840), np.float32)
    m1[100:700, 200:640] = 1
    m2 = np.zeros((840, 840), np.float32)
    m2[150:800, 60:500] = 1
    expected = golden("flip_distances.json")["masked"]
    assert reference_masked_distance(a, b, m1, m2) == pytest.approx(expected, rel=1e-5)
    # pooling the masks onto the 60 grid (our rule) gives another number
    fg1 = torch.from_numpy(m1).reshape(60, 14, 60, 14).mean((1, 3)) > 0.5
    fg2 = torch.from_numpy(m2).reshape(60, 14, 60, 14).mean((1, 3)) > 0.5
    assert instance_distance(a, b, fg1, fg2, mutual=False) != pytest.approx(expected, rel=1e-3)


def test_replacement_and_mirrored_queries_match_the_reference(golden):
    data = golden("flip_replacement.json")
    pairs = [e for e in data["flip_list"] if isinstance(e, list)]
    k = len(data["src_visible"])
    perm = flip_permutation_from_pairs(pairs, k)
    plain, aligned = np.zeros((k, 2)), np.ones((k, 2))
    _, replaced = replace_where_aligned(
        plain, aligned, np.array(data["src_visible"]), perm, np.array(data["tgt_visible"])
    )
    assert replaced.tolist() == data["replaced"]
    # where the pair is replaced, point i asks at its twin's mirrored position (x' = 840 - x)
    src = np.asarray(data["src_kps"])
    mirrored = mirror_in_letterbox(src[perm], 840, arithmetic="float32")
    expected = np.asarray(data["queries"])
    assert np.allclose(mirrored[replaced], expected[replaced])
