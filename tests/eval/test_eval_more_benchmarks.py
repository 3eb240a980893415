"""``python -m corr.eval pfwillow`` and ``spair-u`` end to end on synthetic copies in the
published formats, with the real MobileNetV2 stand-in; the figures recomputed by hand from the
raw files (each benchmark's own T_ref), and what the new data sets refuse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from synthetic_benchmarks import make_pfwillow, make_spair_u

from corr.eval.cli import main

MOBILENET = "corr.contrib.mobilenet:mobilenetv2"


def _run(dataset: str, root: Path, out: Path, *extra: str) -> dict:
    args = [dataset, "--root", str(root), "--extractor", MOBILENET, "--out", str(out)]
    assert main([*args, "--no-progress", *extra]) == 0
    return json.loads((out / "results.json").read_text())


def _by_hand(items: list[tuple[list, list, float]], alphas: dict[str, float]) -> dict:
    """``items``: (predicted points, ground-truth points, T_ref) per pair."""
    out = {"pck_per_image": {}, "pck_per_keypoint": {}}
    for key, alpha in alphas.items():
        ratios, hits, total = [], 0, 0
        for pred, gt, t_ref in items:
            ok = [
                p is not None and math.dist(p, g) < alpha * t_ref
                for p, g in zip(pred, gt, strict=True)
            ]
            ratios.append(sum(ok) / len(ok))
            hits, total = hits + sum(ok), total + len(ok)
        out["pck_per_image"][key] = sum(ratios) / len(ratios)
        out["pck_per_keypoint"][key] = hits / total
    return out


def _entries(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.usefixtures("real_mobilenet")
def test_pfwillow_end_to_end(tmp_path, capsys):
    root = tmp_path / "PF-WILLOW"
    rows = make_pfwillow(root)
    res = _run("pfwillow", root, tmp_path / "run")
    printed = capsys.readouterr().out
    assert "T_ref = max(w, h) of the tight box around the target keypoints" in printed
    assert "keypoints" in res["metric"]["T_ref"] and res["dataset"] == "pfwillow"
    items = []
    for e in _entries(tmp_path / "run"):
        row = rows[int(e["pair_id"][:4]) - 1]  # the pair id starts with its CSV row
        gt = row["trg"].tolist()
        t_ref = max(row["trg"].max(0) - row["trg"].min(0))
        items.append((e["pred"], gt, t_ref))
    want = _by_hand(items, {"0.05": 0.05, "0.10": 0.10, "0.15": 0.15})
    overall = res["results"]["overall"]
    assert overall["n_pairs"] == 3 and overall["n_keypoints"] == 30
    assert set(res["results"]["categories"]) == {"car", "duck"}
    for avg in want:
        assert overall[avg] == pytest.approx(want[avg], abs=1e-12)


@pytest.mark.usefixtures("real_mobilenet")
def test_spair_u_end_to_end(tmp_path):
    root = tmp_path / "SPair-U"
    make_spair_u(root)
    res = _run("spair-u", root, tmp_path / "run")
    assert res["metric"]["T_ref"] == "max(width, height) of the target's bounding box"
    assert res["metric"]["geo_groups"] is None  # SPair's twin groups are not SPair-U's points
    items = []
    for e in _entries(tmp_path / "run"):
        pair = json.loads(
            (root / "ExtraPairAnnotation" / "test" / f"{e['pair_id']}.json").read_text()
        )
        x1, y1, x2, y2 = pair["trg_bndbox"]
        pred = [e["pred"][int(i)] for i in pair["kps_ids"]]
        items.append((pred, pair["trg_kps"], max(x2 - x1, y2 - y1)))
    want = _by_hand(items, {"0.10": 0.10, "0.05": 0.05, "0.01": 0.01})
    overall = res["results"]["overall"]
    assert overall["n_pairs"] == 3 and overall["n_keypoints"] == sum(len(g) for _, g, _ in items)
    for avg in want:
        assert overall[avg] == pytest.approx(want[avg], abs=1e-12)


def test_refusals_name_the_fix(tmp_path, capsys):
    willow, spair_u = tmp_path / "PF-WILLOW", tmp_path / "SPair-U"
    make_pfwillow(willow)
    make_spair_u(spair_u)
    base = ["--extractor", "tiny", "--no-pretrained", "--no-progress"]
    assert main(["pfwillow", "--root", str(willow), "--flip", *base]) == 2
    assert "PF-Willow keypoints have no fixed semantic ids" in capsys.readouterr().err
    assert main(["pfwillow", "--root", str(willow), "--geo-groups", "x.json", *base]) == 2
    assert "PF-Willow has no geometry-aware subset" in capsys.readouterr().err
    assert main(["spair-u", "--root", str(spair_u), "--flip", *base]) == 2
    assert "pass --flip-table FILE" in capsys.readouterr().err
    assert main(["spair-u", "--root", str(willow), *base]) == 2
    assert "ExtraPairAnnotation" in capsys.readouterr().err
