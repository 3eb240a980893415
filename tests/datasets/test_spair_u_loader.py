"""SPair-U: SPair-71k's format read from the Extra* folders, on a synthetic copy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic_benchmarks import make_spair_u

from corr.datasets import DataPathError, DatasetLayoutError, load_pairs, load_spair_u


@pytest.fixture
def spair_u(tmp_path):
    root = tmp_path / "SPair-U"
    return root, make_spair_u(root)


def test_records_come_from_the_extra_annotations(spair_u):
    root, pairs = spair_u
    recs = load_spair_u(root)
    assert [r.pair_id for r in recs] == [p["filename"] for p in pairs]
    assert [r.category for r in recs] == ["cat", "cat", "dog"]
    for rec, pair in zip(recs, pairs, strict=True):
        assert rec.dataset == "spair-u" and rec.num_keypoints == 30
        ids = [int(i) for i in pair["kps_ids"]]
        assert np.flatnonzero(rec.mutual).tolist() == ids
        np.testing.assert_array_equal(rec.tgt_kps[ids], pair["trg_kps"])
        assert rec.pck_size == 40.0  # trg_bndbox [10, 8, 50, 40]: max(40, 32)
        assert rec.tgt_image == root / "JPEGImages" / pair["category"] / pair["trg_imname"]
        assert "kps_mismatch" not in rec.flags  # the pair files agree with ExtraImageAnnotation
    # point 1 is hidden in each category's second image: not evaluated in pairs that touch it
    assert not recs[0].mutual[1] and not recs[1].mutual[1] and not recs[2].mutual[1]
    assert recs[0].mutual[:5].sum() == 4


def test_layout_and_bad_names(tmp_path, spair_u):
    root, pairs = spair_u
    with pytest.raises(ValueError, match="test split only"):
        load_spair_u(root, split="trn")
    plain = tmp_path / "SPair-71k"  # a SPair-71k folder without SPair-U's annotations
    (plain / "PairAnnotation" / "test").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="SPair-U") as err:
        load_pairs("spair-u", plain)
    assert "ExtraPairAnnotation" in str(err.value)
    assert "download spair-u" in str(err.value)
    path = root / "ExtraPairAnnotation" / "test" / f"{pairs[0]['filename']}.json"
    path.write_text(json.dumps({**pairs[0], "trg_imname": "../../../outside.jpg"}))
    with pytest.raises(DataPathError, match="trg_imname"):
        load_spair_u(root)
