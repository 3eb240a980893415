"""Complementarity of two prediction sets against outcomes worked out by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from corr.datasets import PairRecord
from corr.metrics import (
    OUTCOMES,
    complementarity,
    format_complementarity,
    write_complementarity_csv,
)

K = 5


def rec(pair_id: str, cat: str, mutual: int, pck_size: float = 100.0) -> PairRecord:
    """K keypoints on a row, the first ``mutual`` visible in both images, the rest in the
    source only."""
    kps = np.column_stack([np.arange(K) * 30.0, np.full(K, 50.0)])
    tv = np.arange(K) < mutual
    tgt = kps.copy()
    tgt[~tv] = np.nan
    return PairRecord(
        dataset="spair", pair_id=pair_id, category=cat, src_image=Path("s.jpg"),
        tgt_image=Path("t.jpg"), src_kps=kps, tgt_kps=tgt, src_vis=np.ones(K, bool),
        tgt_vis=tv, pck_size=pck_size, src_size=(200, 100), tgt_size=(200, 100),
        src_bbox=None, tgt_bbox=None, flags={}, table_category=cat,
    )  # fmt: skip


def displaced(r: PairRecord, dists: list[float | None]) -> np.ndarray:
    """Predictions ``d`` pixels from the truth along (3, 4)/5; None: no prediction (NaN)."""
    p = np.nan_to_num(r.tgt_kps, nan=0.0).copy()
    for k, d in enumerate(dists):
        p[k] = np.nan if d is None else p[k] + d * np.array([0.6, 0.8])
    return p


def test_outcomes_by_hand(tmp_path):
    # pair 1 (cat "a"): 4 mutual keypoints, T_ref 100 -> thresholds 5, 10, 15 px
    #   A at 3, 8, 20, none; B at 12, 4, 7, 30; keypoint 4 is not visible in the target
    #   0.05: A right on kp0 only, B on kp1 only   -> A right B fails 1, A fails B right 1, both fail 2
    #   0.10: A on kp0, kp1; B on kp1, kp2          -> 1, 1, both right 1, both fail 1
    #   0.15: A on kp0, kp1; B on kp0, kp1, kp2     -> both right 2, A fails B right 1, both fail 1
    # pair 2 (cat "b"): 1 mutual keypoint, T_ref 200 -> 10, 20, 30 px; A at 15, B at 25
    #   0.05: both fail; 0.10: A right B fails; 0.15: both right
    r1, r2 = rec("p1", "a", 4), rec("p2", "b", 1, pck_size=200.0)
    a = [displaced(r1, [3, 8, 20, None, 1]), displaced(r2, [15])]
    b = [displaced(r1, [12, 4, 7, 30, 1]), displaced(r2, [25])]
    res = complementarity([r1, r2], a, b, [0.05, 0.10, 0.15])
    assert res["alphas"] == ["0.05", "0.10", "0.15"] and res["outcomes"] == list(OUTCOMES)
    want_a = {
        "0.05": {"both_fail": 2, "a_fails_b_right": 1, "a_right_b_fails": 1, "both_right": 0},
        "0.10": {"both_fail": 1, "a_fails_b_right": 1, "a_right_b_fails": 1, "both_right": 1},
        "0.15": {"both_fail": 1, "a_fails_b_right": 1, "a_right_b_fails": 0, "both_right": 2},
    }
    want_b = {
        "0.05": {"both_fail": 1, "a_fails_b_right": 0, "a_right_b_fails": 0, "both_right": 0},
        "0.10": {"both_fail": 0, "a_fails_b_right": 0, "a_right_b_fails": 1, "both_right": 0},
        "0.15": {"both_fail": 0, "a_fails_b_right": 0, "a_right_b_fails": 0, "both_right": 1},
    }
    assert res["categories"]["a"]["counts"] == want_a
    assert res["categories"]["b"]["counts"] == want_b
    overall = res["overall"]
    assert overall["n_pairs"] == 2 and overall["n_keypoints"] == 5
    for k in res["alphas"]:
        assert overall["counts"][k] == {o: want_a[k][o] + want_b[k][o] for o in OUTCOMES}
        assert sum(overall["shares"][k].values()) == pytest.approx(1.0)
    assert overall["shares"]["0.15"]["both_right"] == pytest.approx(3 / 5)
    # each side's PCK per keypoint: A right on 1, 3, 3 of 5; B on 1, 2, 4 of 5
    assert overall["pck_per_keypoint_a"] == pytest.approx({"0.05": 0.2, "0.10": 0.6, "0.15": 0.6})
    assert overall["pck_per_keypoint_b"] == pytest.approx({"0.05": 0.2, "0.10": 0.4, "0.15": 0.8})

    table = format_complementarity(res)
    assert "A fails, B right" in table and "40.0 (2)" in table  # 0.05 both fail
    write_complementarity_csv(res, tmp_path / "c.csv")
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert [(r["category"], r["alpha"]) for r in rows][-3:] == [
        ("overall", "0.05"), ("overall", "0.10"), ("overall", "0.15"),
    ]  # fmt: skip
    assert len(rows) == 9 and rows[0]["category"] == "a"
    assert int(rows[-1]["both_right"]) == 3 and float(rows[-1]["share_both_right"]) == 0.6


def test_boundary_follows_the_comparison():
    """A prediction exactly alpha * T_ref away: wrong under '<', right under '<=' (DIFT)."""
    r = rec("p", "a", 1)
    a, b = [displaced(r, [5.0])], [displaced(r, [5.5])]
    strict = complementarity([r], a, b, [0.05])["overall"]["counts"]["0.05"]
    inclusive = complementarity([r], a, b, [0.05], inclusive=True)["overall"]["counts"]["0.05"]
    assert strict["both_fail"] == 1 and inclusive["a_right_b_fails"] == 1


def test_bad_input_is_refused():
    r = rec("p", "a", 2)
    with pytest.raises(ValueError, match="records but"):
        complementarity([r], [displaced(r, [1])], [], [0.1])
    with pytest.raises(ValueError, match="distinct alphas"):
        complementarity([r], [displaced(r, [1])], [displaced(r, [1])], [0.1, 0.10])
    with pytest.raises(ValueError, match="expected"):
        complementarity([r], [np.zeros((2, 2))], [displaced(r, [1])], [0.1])
    bad = rec("q", "a", 2, pck_size=float("nan"))
    with pytest.raises(ValueError, match="invalid T_ref"):
        complementarity([bad], [displaced(bad, [1])], [displaced(bad, [1])], [0.1])
