"""PCK against hand-computed expectations on small synthetic records."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from corr.datasets import PairRecord
from corr.metrics import ALPHAS, alpha_key, evaluate, format_table, pair_distances, write_csv

K = 6


def rec(pair_id: str, cat: str, src_vis, tgt_vis, pck_size: float = 100.0) -> PairRecord:
    sv = np.zeros(K, bool)
    sv[list(src_vis)] = True
    tv = np.zeros(K, bool)
    tv[list(tgt_vis)] = True
    kps = np.column_stack([np.arange(K) * 20.0, np.full(K, 50.0)])
    src = kps.copy()
    src[~sv] = np.nan
    tgt = kps.copy()
    tgt[~tv] = np.nan
    return PairRecord(
        dataset="spair", pair_id=pair_id, category=cat, src_image=Path("s.jpg"),
        tgt_image=Path("t.jpg"), src_kps=src, tgt_kps=tgt, src_vis=sv, tgt_vis=tv,
        pck_size=pck_size, src_size=(200, 100), tgt_size=(200, 100), src_bbox=None,
        tgt_bbox=(0, 0, pck_size, 10), flags={}, table_category=cat,
    )  # fmt: skip


def pred_at(r: PairRecord, offsets: dict[int, float]) -> np.ndarray:
    """Predictions displaced from the truth by the given distances (along (3, 4) directions)."""
    p = np.nan_to_num(r.tgt_kps, nan=-1.0).copy()
    for k, d in offsets.items():
        p[k] += (0.6 * d, 0.8 * d)
    return p


GROUPS = {"cat1": [[0, 1], [2, 3, 4], [5]], "cat2": []}


@pytest.fixture
def case() -> tuple[list[PairRecord], list[np.ndarray]]:
    # A: mutual {0, 1, 2, 5}; target sees 0, 1 (group [0, 1] -> geo), 2 alone of [2, 3, 4]
    a = rec("A", "cat1", range(K), [0, 1, 2, 5])
    # B: mutual {3}; target sees 3 and 4 -> 3 is geo although 4 is not visible in the source
    b = rec("B", "cat1", [3], [3, 4])
    # D: mutual {5} (singleton group)
    d = rec("D", "cat1", [5], [5])
    # C: no mutual keypoint; E: one mutual keypoint in another category
    c = rec("C", "cat2", [0, 1], [2, 3])
    e = rec("E", "cat2", [0], [0, 1])
    # distances: A 3 / 7 / 9.99 / 10 (exactly at alpha 0.10 * 100: wrong, strict <)
    preds = [
        pred_at(a, {0: 3.0, 1: 7.0, 2: 9.99}) + np.array([[0, 0]] * 5 + [[6.0, 8.0]]),
        pred_at(b, {3: 50.0}),
        pred_at(d, {}),
        pred_at(c, {}),
        pred_at(e, {0: 4.0}),
    ]
    return [a, b, d, c, e], preds


def test_pair_distances(case) -> None:
    recs, preds = case
    dist = pair_distances(preds[0], recs[0])
    assert np.isnan(dist[[3, 4]]).all()
    assert np.allclose(dist[[0, 1, 2, 5]], [3.0, 7.0, 9.99, 10.0])
    assert dist[5] == 10.0
    p = preds[0].copy()
    p[1] = np.nan  # a missing prediction of a mutual keypoint is a miss, not a skip
    assert pair_distances(p, recs[0])[1] == np.inf
    with pytest.raises(ValueError, match="shape"):
        pair_distances(np.zeros((K - 1, 2)), recs[0])


def test_evaluate_hand_computed(case) -> None:
    recs, preds = case
    res = evaluate(recs, preds, (0.10, 0.05), geo_groups=GROUPS)
    json.dumps(res, allow_nan=False)  # JSON-serialisable, no NaN
    assert res["alphas"] == ["0.10", "0.05"]
    c1 = res["categories"]["cat1"]
    assert (c1["n_pairs"], c1["n_pairs_evaluated"], c1["n_keypoints"]) == (3, 3, 6)
    # per image: A 3/4, B 0/1, D 1/1 at 0.10; A 1/4, B 0, D 1 at 0.05
    assert c1["pck_per_image"]["0.10"] == pytest.approx((0.75 + 0 + 1) / 3)
    assert c1["pck_per_image"]["0.05"] == pytest.approx((0.25 + 0 + 1) / 3)
    # per keypoint: 4/6 and 2/6 -- different from the per-image figures
    assert c1["pck_per_keypoint"]["0.10"] == pytest.approx(4 / 6)
    assert c1["pck_per_keypoint"]["0.05"] == pytest.approx(2 / 6)
    g = c1["geo"]
    # geo keypoints: A {0, 1}, B {3}; D has none
    assert (g["n_pairs"], g["n_keypoints"]) == (2, 3)
    assert g["share_pairs"] == pytest.approx(2 / 3) and g["share_keypoints"] == pytest.approx(0.5)
    assert g["pck_per_image"]["0.10"] == pytest.approx((1.0 + 0.0) / 2)
    assert g["pck_per_keypoint"]["0.10"] == pytest.approx(2 / 3)
    assert g["pck_per_image"]["0.05"] == pytest.approx((0.5 + 0.0) / 2)
    assert g["pck_per_keypoint"]["0.05"] == pytest.approx(1 / 3)

    c2 = res["categories"]["cat2"]
    assert c2["n_pairs"] == 2 and c2["n_pairs_without_keypoints"] == 1
    assert c2["n_pairs_evaluated"] == 1 and c2["n_keypoints"] == 1
    assert c2["pck_per_image"] == {"0.10": 1.0, "0.05": 1.0}
    assert c2["geo"]["n_pairs"] == 0 and c2["geo"]["pck_per_image"]["0.10"] is None
    assert c2["geo"]["share_pairs"] == 0.0

    ov = res["overall"]
    assert (ov["n_pairs"], ov["n_pairs_evaluated"], ov["n_pairs_without_keypoints"]) == (5, 4, 1)
    assert ov["n_keypoints"] == 7
    # mean over all evaluated pairs == category means weighted by their pair counts
    assert ov["pck_per_image"]["0.10"] == pytest.approx((0.75 + 0 + 1 + 1) / 4)
    assert ov["pck_per_image"]["0.10"] == pytest.approx(
        (3 * c1["pck_per_image"]["0.10"] + 1 * c2["pck_per_image"]["0.10"]) / 4
    )
    assert ov["pck_per_keypoint"]["0.10"] == pytest.approx(5 / 7)
    assert ov["geo"]["share_keypoints"] == pytest.approx(3 / 7)
    assert ov["geo"]["share_pairs"] == pytest.approx(2 / 4)
    assert "geo" not in evaluate(recs, preds, (0.1,))["overall"]


def test_strict_boundary() -> None:
    r = rec("X", "cat1", [0], [0], pck_size=200.0)
    p = r.tgt_kps.copy()
    p[0] += (6.0, 8.0)  # distance exactly 10 = 0.05 * 200
    res = evaluate([r], [np.nan_to_num(p)], (0.05, 0.051))
    assert res["overall"]["pck_per_keypoint"] == {"0.05": 0.0, "0.051": 1.0}


def test_errors(case) -> None:
    recs, preds = case
    with pytest.raises(ValueError, match="not in the geo table"):
        evaluate(recs, preds, (0.1,), geo_groups={"cat1": []})
    with pytest.raises(ValueError, match="predictions"):
        evaluate(recs, preds[:-1], (0.1,))
    bad = rec("Z", "cat1", [0], [0], pck_size=math.nan)
    with pytest.raises(ValueError, match="T_ref"):
        evaluate([bad], [np.zeros((K, 2))], (0.1,))


def test_alpha_keys() -> None:
    assert [alpha_key(a) for a in ALPHAS["pfpascal"]] == ["0.05", "0.10", "0.15"]
    assert alpha_key(0.1) == "0.10" and alpha_key(0.005) == "0.005" and alpha_key(1) == "1.00"


def test_table_and_csv(case, tmp_path: Path) -> None:
    recs, preds = case
    res = evaluate(recs, preds, ALPHAS["spair"], geo_groups=GROUPS)
    text = format_table(res, ALPHAS["spair"])
    lines = text.splitlines()
    assert "T_ref = max(width, height) of the target bounding box" in lines[1]
    assert "per image" in lines[2] and "per keypoint" in lines[2]
    assert "0.10 img" in text and "geo 0.01 kp" in text
    row = next(x for x in lines if x.startswith("cat1"))
    assert row.split()[:5] == ["cat1", "3", "6", "58.3", "66.7"]
    assert lines[-2].startswith("overall") and "1 pairs without" in lines[-1]
    assert format_table(res, (0.05,)).count("0.10") == 0

    path = tmp_path / "pck.csv"
    write_csv(res, path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["category"] for r in rows] == ["cat1", "cat2", "overall"]
    assert float(rows[0]["pck@0.10_per_image"]) == pytest.approx((0.75 + 0 + 1) / 3)
    assert float(rows[0]["pck@0.10_per_keypoint"]) == pytest.approx(4 / 6)
    assert float(rows[0]["geo_share_keypoints"]) == pytest.approx(0.5)
    assert rows[1]["geo_pck@0.10_per_image"] == ""  # nothing evaluated
    assert rows[2]["n_pairs_without_keypoints"] == "1"
    assert "geo_pck@0.01_per_keypoint" in rows[0]
