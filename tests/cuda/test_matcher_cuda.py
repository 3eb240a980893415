"""``Matcher(device="cuda")`` end to end with the real MobileNetV2 stand-in: the same matches
as on the CPU, and ``python -m corr.eval`` on minireal gives the CPU's figures.

What "the same" allows: the GPU runs cuDNN convolutions in TF32 (relative error about 1e-3
in the features), which can move a soft-argmax match by a fraction of a pixel and, where two
cells nearly tie, change which cell wins. So: at least 95 % of the predicted points within
1 px of the CPU's, every PCK within 2 keypoints' worth of the CPU's, and the same flip
decision for all pairs but at most one.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cuda_helpers import photos

import corr

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("real_mobilenet")]
MOBILENET = "corr.contrib.mobilenet:mobilenetv2"


def test_matcher_on_cuda_gives_the_cpu_matches(cuda):
    paths = photos(6)
    pairs = list(zip(paths[0::2], paths[1::2], strict=True))
    cpu = corr.Matcher([MOBILENET], device="cpu")
    gpu = corr.Matcher([MOBILENET], device="cuda")
    assert gpu.device.type == "cuda" and all(e.device.type == "cuda" for e in gpu.extractors)
    close = total = 0
    for src, tgt in pairs:
        want = cpu.match(src, tgt)  # every source grid cell on the content
        got = gpu.match(src, tgt, return_tensors="pt")
        assert got["keypoints1"].device.type == "cuda"
        np.testing.assert_allclose(got["keypoints0"].cpu().numpy(), want["keypoints0"])
        dist = np.linalg.norm(got["keypoints1"].cpu().numpy() - want["keypoints1"], axis=1)
        close += int((dist <= 1.0).sum())
        total += len(dist)
    assert total > 100 and close / total >= 0.95, (close, total)
    dense_cpu = cpu.dense(*pairs[0])
    dense_gpu = gpu.dense(*pairs[0])
    agree = np.linalg.norm(dense_gpu["coords1"] - dense_cpu["coords1"], axis=-1) <= 1.0
    assert agree.mean() >= 0.95, agree.mean()


def _eval(main, minireal, out, *extra):
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", MOBILENET]
    args += [
        "--out",
        str(out),
        "--no-progress",
        "--flip",
        "--flip-table",
        str(minireal / "flip.json"),
    ]
    args += ["--geo-groups", str(minireal / "geo_groups.json"), *extra]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    entries = {
        e["pair_id"]: e
        for e in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())
        if "pred" in e
    }
    return res, entries


def test_eval_on_cuda_gives_the_cpu_figures(minireal, tmp_path, cuda):
    from corr.eval.cli import main

    res_cpu, pred_cpu = _eval(main, minireal, tmp_path / "cpu", "--device", "cpu")
    res_gpu, pred_gpu = _eval(
        main, minireal, tmp_path / "cuda", "--device", "cuda", "--batch-size", "4",
        "--num-workers", "2",
    )  # fmt: skip
    assert res_gpu["config"]["matcher"] == res_cpu["config"]["matcher"]
    o_cpu, o_gpu = res_cpu["results"]["overall"], res_gpu["results"]["overall"]
    n = o_cpu["n_keypoints"]
    assert o_gpu["n_pairs"] == o_cpu["n_pairs"] > 0 and o_gpu["n_keypoints"] == n
    # two keypoints' worth: 2 / n per keypoint; per image, each moves its pair's share by at
    # most 1, so 2 / pairs
    bound = {"pck_per_keypoint": 2 / n, "pck_per_image": 2 / o_cpu["n_pairs"]}
    for avg, tol in bound.items():
        for alpha, value in o_cpu[avg].items():
            assert abs(o_gpu[avg][alpha] - value) <= tol + 1e-12, (avg, alpha)
    assert pred_gpu.keys() == pred_cpu.keys()
    close = total = flips_differ = 0
    for pid, e in pred_cpu.items():
        g = pred_gpu[pid]
        for a, b in zip(g["pred"], e["pred"], strict=True):
            if a is None or b is None:
                assert a is None and b is None, pid
                continue
            close += math.dist(a, b) <= 1.0
            total += 1
        flips_differ += g["flip"]["flipped"] != e["flip"]["flipped"]
    assert close / total >= 0.95, (close, total)
    assert flips_differ <= 1, flips_differ
