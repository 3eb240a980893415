"""Flip permutations and geometry-aware groups as GeoAware-SC's evaluation applies them
(golden/keypoint_tables.json)."""

from __future__ import annotations

from corr.keypoint_tables import flip_permutation, load_groups, reference_groups


def test_spair_flip_table_is_the_reference_permutation_in_spair_ids(golden):
    data = golden("keypoint_tables.json")["spair_flip"]
    ours = load_groups("spair_flip")
    for cat, ref in data.items():
        k = max(ref["used"]) + 1
        perm = flip_permutation(ours[cat], k)
        got = {str(i): int(perm[i]) for i in ref["used"]}
        assert got == ref["perm"], cat  # bus: 10<->20 ... 28<->29, not the literal 8<->18


def test_reference_rule_reads_the_verbatim_flip_list_as_positions(golden):
    data = golden("keypoint_tables.json")["spair_flip"]
    verbatim = load_groups("spair_flip_geoaware")
    for cat, ref in data.items():
        groups = reference_groups(verbatim[cat], ref["used"], "flip")
        perm = flip_permutation(groups, max(ref["used"]) + 1)
        assert {str(i): int(perm[i]) for i in ref["used"]} == ref["perm"], cat


def test_reference_geo_groups_are_renumbered_in_listing_order(golden):
    data = golden("keypoint_tables.json")
    ours = load_groups("spair_geo_groups")
    for cat, expected in data["spair_geo"].items():
        used = data["spair_flip"][cat]["used"]
        assert reference_groups(ours[cat], used, "geo") == expected, cat
    assert (
        reference_groups(load_groups("ap10k_geo_groups")["all"], data["ap10k_used"], "geo")
        == data["ap10k_geo"]
    )
    # the renumbering really changes groups: SPair car's lights are [2, 3, 6, 7] as written
    assert [2, 3, 6, 7] in ours["car"] and [2, 3, 6, 7] not in data["spair_geo"]["car"]


def test_ap10k_flip_table_matches_the_reference(golden):
    data = golden("keypoint_tables.json")
    perm = flip_permutation(load_groups("ap10k_flip")["all"], 17)
    assert perm.tolist() == data["ap10k_flip_perm"]
    groups = reference_groups(load_groups("ap10k_flip")["all"], data["ap10k_used"], "flip")
    assert flip_permutation(groups, 17).tolist() == data["ap10k_flip_perm"]
