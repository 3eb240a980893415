"""PF-Willow: the loader on a synthetic copy in the published CSV format, its T_ref, and the
checks of the names it reads."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_benchmarks import WILLOW_SIZE, make_pfwillow

from corr.datasets import DataPathError, DatasetLayoutError, load_pairs, load_pfwillow
from corr.metrics import evaluate


@pytest.fixture
def willow(tmp_path):
    root = tmp_path / "PF-WILLOW"
    return root, make_pfwillow(root)


def test_records_follow_the_csv(willow):
    root, rows = willow
    recs = load_pfwillow(root)
    assert [r.pair_id for r in recs] == [
        "0001-car_0001-car_0002:car",
        "0002-car_0002-car_0003:car",
        "0003-duck_0001-duck_0002:duck",
    ]
    for rec, row in zip(recs, rows, strict=True):
        assert rec.dataset == "pfwillow" and rec.num_keypoints == 10
        np.testing.assert_array_equal(rec.src_kps, row["src"])
        np.testing.assert_array_equal(rec.tgt_kps, row["trg"])
        assert rec.mutual.all()
        assert rec.src_image == root / row["imageA"] and rec.tgt_image.is_file()
        assert rec.tgt_size == WILLOW_SIZE
        # T_ref: the longer side of the box around the target's ten points
        (x1, y1), (x2, y2) = row["trg"].min(0), row["trg"].max(0)
        assert rec.pck_size == pytest.approx(max(x2 - x1, y2 - y1))
        assert rec.tgt_bbox == pytest.approx((x1, y1, x2, y2))
    assert [r.category for r in recs] == ["car", "car", "duck"]
    assert recs[0].flags["subclass"] == "car(G)" and recs[2].flags["subclass"] == "duck(S)"


def test_other_roots_and_the_csv_inside(tmp_path, willow):
    inside = tmp_path / "inside"
    make_pfwillow(inside, csv_inside=True)
    assert len(load_pairs("pfwillow", inside)) == 3
    recs = load_pfwillow(inside / "PF-dataset")  # PF-dataset/ itself, the CSV in it
    assert len(recs) == 3 and all(r.tgt_image.is_file() for r in recs)
    # the CSV beside PF-dataset/ is outside that root: not looked for there
    root, _ = willow
    with pytest.raises(DatasetLayoutError, match="PF-Willow"):
        load_pfwillow(root / "PF-dataset")


def test_scored_with_the_keypoint_box(willow):
    root, _ = willow
    recs = load_pfwillow(root)
    # every prediction 0.07 * T_ref off: right at 0.10 and 0.15, wrong at 0.05
    preds = [r.tgt_kps + np.array([0.07 * r.pck_size, 0.0]) for r in recs]
    res = evaluate(recs, preds, (0.05, 0.10, 0.15))
    assert res["overall"]["pck_per_keypoint"] == {"0.05": 0.0, "0.10": 1.0, "0.15": 1.0}
    assert "tight box around the target keypoints" in res["definition"]


def test_bad_input_is_named(tmp_path, willow):
    root, _ = willow
    with pytest.raises(ValueError, match="only test"):
        load_pfwillow(root, split="val")
    with pytest.raises(DatasetLayoutError, match="PF-Willow") as err:
        load_pairs("pfwillow", tmp_path / "nowhere")
    assert "python -m corr.datasets download pfwillow" in str(err.value)
    csv_path = root / "test_pairs_pf.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([lines[0], "../outside.png" + lines[1][lines[1].index(",") :]]))
    with pytest.raises(DataPathError, match="line 2.*imageA") as err:
        load_pfwillow(root)
    assert err.value.field == "imageA"
    csv_path.write_text("\n".join([lines[0].replace("XA1", "X1"), lines[1]]))
    with pytest.raises(ValueError, match="not the published pair list"):
        load_pfwillow(root)
    csv_path.write_text("\n".join([lines[0], lines[1].replace(",", ",x", 3)]))
    with pytest.raises(ValueError, match="row 1"):
        load_pfwillow(root)
