"""Keypoint group tables: loading, geo groups and flip permutations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corr.keypoint_tables import (
    BUNDLED,
    default_tables,
    flip_permutation,
    geo_group_of,
    load_groups,
)


def test_flip_synthetic() -> None:
    # pair swaps, singleton stays, triple rotates forward (3 -> 4 -> 5 -> 3), 6 unmentioned
    perm = flip_permutation([[0, 1], [2], [3, 4, 5]], 7)
    assert perm.tolist() == [1, 0, 2, 4, 5, 3, 6]
    pairs_only = flip_permutation([[0, 1], [2, 4]], 5)
    assert pairs_only[pairs_only].tolist() == list(range(5))  # a flip of pairs is an involution
    assert flip_permutation([], 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="permutation"):
        flip_permutation([[0, 1], [1, 2]], 3)
    with pytest.raises(ValueError, match="outside"):
        flip_permutation([[2, 3]], 3)
    assert flip_permutation([[5, 6]], 3).tolist() == [0, 1, 2]  # wholly out of range: ignored


def test_flip_bundled_by_hand() -> None:
    bird = load_groups("spair_flip")["bird"]
    # [0, [1, 2], 3, [4, 5], 6, [7, 8], 9, [10, 11], [12, 13], [14, 15], 16]
    assert flip_permutation(bird, 17).tolist() == [
        0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 13, 12, 15, 14, 16,
    ]  # fmt: skip
    ap = flip_permutation(load_groups("ap10k_flip")["all"], 17)
    # left eye <-> right eye, shoulders/elbows/paws/hips/knees swap, nose/neck/tail stay
    assert ap.tolist() == [1, 0, 2, 3, 4, 8, 9, 10, 5, 6, 7, 14, 15, 16, 11, 12, 13]
    # SPair ImageAnnotations have 30 keys: extra ids map to themselves
    assert flip_permutation(bird, 30)[17:].tolist() == list(range(17, 30))


def test_geo_groups() -> None:
    gid = geo_group_of(load_groups("ap10k_geo_groups")["all"], 17)
    assert gid.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 8, 6, 7, 8, 6, 7]
    # unmentioned ids are singletons; ids >= K (the published bicycle 13) are ignored
    gid = geo_group_of([[0, 2], [13]], 4)
    assert gid[0] == gid[2] and len({gid[0], gid[1], gid[3]}) == 3
    bicycle = load_groups("spair_geo_groups")["bicycle"]
    assert [13] in bicycle and geo_group_of(bicycle, 12).shape == (12,)
    assert geo_group_of(None, 3).tolist() == [0, 1, 2]


def test_bundled_and_paths(minireal: Path) -> None:
    for name in BUNDLED:
        table = load_groups(name)
        assert table and all(isinstance(g, list) for gs in table.values() for g in gs)
    assert len(load_groups("spair_geo_groups")) == 18
    mini = load_groups(minireal / "geo_groups.json")
    assert mini["aic"][0] == [0, 3]
    assert default_tables("spair") == ("spair_geo_groups", "spair_flip")
    assert default_tables("ap10k") == ("ap10k_geo_groups", "ap10k_flip")
    assert default_tables("pfpascal") == (None, None)
    with pytest.raises(ValueError):
        default_tables("cub")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"cat": [[0, 1], ', "malformed JSON"),
        ("[[0, 1]]", "expected an object"),
        ('{"cat": [[0, "1"]]}', "bad entry"),
        ('{"cat": [[0, [1]]]}', "bad entry"),
        ('{"cat": [-1]}', "bad entry"),
        ('{"cat": [true]}', "bad entry"),
        ('{"cat": [[]]}', "bad entry"),
        ('{"cat": [[0, 1], 1]}', "repeats"),
        ('{"cat": 3}', "expected a list"),
    ],
)
def test_malformed(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "table.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as err:
        load_groups(path)
    assert str(path) in str(err.value)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="spair_flip"):
        load_groups("spair_flips")
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"x": [[0, 1], 2]}))
    assert load_groups(str(path)) == {"x": [[0, 1], [2]]}
