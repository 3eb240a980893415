"""``python -m corr.eval tss`` end to end on a synthetic TSS copy with the real MobileNetV2
stand-in: a pair's figures recomputed by hand from its flow, the averages from the per-pair
lines, resuming, and the errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from synthetic_benchmarks import make_tss

from corr.datasets.tss import load_tss, read_flo, read_mask
from corr.eval.cli import main
from corr.eval.tss import tss_flow
from corr.matcher import Matcher

MOBILENET = "corr.contrib.mobilenet:mobilenetv2"


@pytest.mark.usefixtures("real_mobilenet")
def test_tss_end_to_end(tmp_path, capsys):
    root, out = tmp_path / "TSS_CVPR2016", tmp_path / "run"
    make_tss(root)
    args = ["tss", "--root", str(root), "--extractor", MOBILENET, "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "T_ref = max(H, W) of the source image" in printed and "smooth" in printed
    res = json.loads((out / "results.json").read_text())
    lines = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert res["n_pairs"] == len(lines) == 6
    # one pair by hand: its flow from the pair API, EPE and smoothness written out here
    pair = load_tss(root)[1]  # FG3DCar, image2 -> image1: the target is 40 x 30
    est = tss_flow(Matcher([MOBILENET], device="cpu", dtype="auto"), pair)  # as the eval's
    gt, mask = read_flo(pair.flow), read_mask(pair.mask)
    assert est.shape == gt.shape == (30, 40, 2)
    epe = [math.dist(est[y, x], gt[y, x]) for y, x in zip(*np.nonzero(mask), strict=True)]
    line = lines[1]
    assert line["pair_id"] == pair.pair_id and line["n_pixels"] == len(epe)
    assert line["correct"]["0.05"] == sum(e <= 0.05 * 36 for e in epe)  # T_ref: source 36 x 32
    assert line["aepe"] == pytest.approx(sum(epe) / len(epe), rel=1e-6)
    grid = np.zeros((32, 40, 2))  # the common grid: 32 high (image2), 40 wide (image1)
    grid[:30] = np.where(mask[..., None], est, 0)
    smooth = (
        np.abs(np.diff(grid, axis=1)).sum() + np.abs(np.diff(grid, axis=0)).sum()
    ) / mask.sum()
    assert line["smoothness_est"] == pytest.approx(smooth, rel=1e-6)
    # the averages from the lines: per image over pairs, per pixel over pixels
    overall = res["results"]["overall"]
    assert overall["pck_per_image"]["0.10"] == pytest.approx(
        np.mean([x["correct"]["0.10"] / x["n_pixels"] for x in lines])
    )
    assert overall["pck_per_pixel"]["0.10"] == pytest.approx(
        sum(x["correct"]["0.10"] for x in lines) / sum(x["n_pixels"] for x in lines)
    )
    assert overall["smoothness_gt"] == pytest.approx(np.mean([x["smoothness_gt"] for x in lines]))
    assert set(res["results"]["subsets"]) == {"FG3DCar", "JODS", "PASCAL"}
    # a re-run resumes and gives the same figures
    assert main([*args, "--no-progress"]) == 0
    assert "resuming: 6 pairs" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["results"] == res["results"]


@pytest.mark.usefixtures("real_mobilenet")
def test_tss_errors(tmp_path, capsys):
    assert main(["tss", "--root", str(tmp_path / "absent"), "--extractor", "tiny"]) == 2
    assert "download tss" in capsys.readouterr().err
    root = tmp_path / "TSS_CVPR2016"
    make_tss(root)
    base = ["tss", "--root", str(root), "--extractor", MOBILENET, "--no-progress"]
    assert main([*base, "--limit", "0"]) == 2
    assert main([*base, "--out", str(tmp_path / "a"), "--limit", "2"]) == 0
    assert main([*base, "--out", str(tmp_path / "a"), "--limit", "4"]) == 2
    assert "different configuration" in capsys.readouterr().err
