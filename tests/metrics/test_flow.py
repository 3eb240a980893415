"""Dense-flow metrics (TSS) against figures worked out by hand."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from corr.metrics.flow import (
    format_flow_table,
    pad_to,
    score_flow_pair,
    smoothness,
    summarize_flow,
    write_flow_csv,
)


def test_smoothness_by_hand():
    u = np.array([[0.0, 1.0], [3.0, 4.0]])
    flow = np.stack([u, np.zeros_like(u)], -1)
    # all four pixels: |0-1| + |3-4| across, |0-3| + |1-4| down = 8 over 4 pixels
    assert smoothness(flow, np.ones((2, 2), bool)) == pytest.approx(2.0)
    # (1, 1) outside the mask: set to 0 first -> |0-1| + |3-0| + |0-3| + |1-0| = 8 over 3
    mask = np.array([[True, True], [True, False]])
    assert smoothness(flow, mask) == pytest.approx(8 / 3)
    # v counts as much as u
    assert smoothness(flow[..., ::-1], mask) == pytest.approx(8 / 3)
    assert smoothness(flow, np.zeros((2, 2), bool)) is None


def test_the_common_grid_counts_the_edge_of_a_smaller_target():
    """sd-dino pads both images to the larger size, the mask with 0: a foreground pixel in the
    target's last column then differs from the padded 0 beside it."""
    gt = np.full((1, 2, 2), [5.0, 0.0])
    mask = np.ones((1, 2), bool)
    same = score_flow_pair(gt, gt, mask, 100.0, (1, 2))
    padded = score_flow_pair(gt, gt, mask, 100.0, (1, 3))
    assert same["smoothness_gt"] == 0.0 and padded["smoothness_gt"] == pytest.approx(5 / 2)
    assert padded["aepe"] == 0.0 and padded["n_pixels"] == 2
    assert pad_to(mask, (2, 3)).sum() == 2


def test_pck_is_inclusive_and_uses_the_pairs_own_t_ref():
    gt = np.zeros((1, 4, 2))
    est = gt.copy()
    est[0, :, 0] = [4.0, 5.0, 6.0, np.nan]  # EPE 4, 5, 6 and a missing estimate
    mask = np.ones((1, 4), bool)
    s = score_flow_pair(est, gt, mask, 100.0, (1, 4), alphas=(0.05, 0.10))
    assert s["correct"] == {"0.05": 2, "0.10": 3} and s["n_pixels"] == 4
    # a second pair: 1 pixel, EPE 1, T_ref 10 -> right at 0.10 only
    est2 = np.full((1, 1, 2), [1.0, 0.0])
    s2 = score_flow_pair(
        est2, np.zeros((1, 1, 2)), np.ones((1, 1), bool), 10.0, (1, 1), (0.05, 0.10)
    )
    s["subset"], s2["subset"] = "JODS", "PASCAL"
    res = summarize_flow([s, s2], alphas=(0.05, 0.10))
    overall = res["overall"]
    assert overall["pck_per_image"] == pytest.approx(
        {"0.05": (2 / 4 + 0) / 2, "0.10": (3 / 4 + 1) / 2}
    )
    assert overall["pck_per_pixel"] == pytest.approx({"0.05": 2 / 5, "0.10": 4 / 5})
    assert res["subsets"]["PASCAL"]["aepe"] == 1.0 and overall["n_pixels"] == 5
    assert "T_ref = max(H, W) of the source image" in format_flow_table(res)


def test_bad_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="flow shapes differ"):
        score_flow_pair(
            np.zeros((2, 2, 2)), np.zeros((2, 3, 2)), np.ones((2, 3), bool), 9.0, (2, 3)
        )
    with pytest.raises(ValueError, match="invalid T_ref"):
        score_flow_pair(
            np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), np.ones((1, 1), bool), 0.0, (1, 1)
        )
    s = score_flow_pair(
        np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), np.ones((1, 1), bool), 9.0, (1, 1)
    )
    s["subset"] = "FG3DCar"
    write_flow_csv(summarize_flow([s]), tmp_path / "r.csv")
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["subset"] for r in rows] == ["FG3DCar", "overall"] and rows[1]["aepe"] == "0.0"
