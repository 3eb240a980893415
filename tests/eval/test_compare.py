"""``python -m corr.eval compare``: two real minireal runs (MobileNetV2 at its stride-8 and its
stride-16 stage), the table recomputed by hand from their files, and every refusal."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from corr.eval.cli import main
from corr.eval.plan import EvalOptions
from corr.eval.runner import run_eval
from corr.matcher import Matcher

MOBILENET = "corr.contrib.mobilenet:mobilenetv2"
ALPHAS = {"0.05": 0.05, "0.10": 0.10, "0.15": 0.15}
OUTCOMES = ("both_fail", "a_fails_b_right", "a_right_b_fails", "both_right")


@pytest.fixture(scope="module")
def two_runs(real_mobilenet, minireal, tmp_path_factory) -> tuple[Path, Path]:
    """The first 5 SPair-format pairs of minireal, with the features of stage 6 (A) and of
    stage 13 (B) of MobileNetV2 (``stages=`` of :func:`corr.contrib.mobilenet.mobilenetv2`)."""
    base = tmp_path_factory.mktemp("compare")
    opts = EvalOptions(dataset="spair", root=str(minireal / "SPair-71k"), limit=5)
    runs = []
    for stage in (6, 13):
        options = {real_mobilenet: {"stages": [stage]}}
        m = Matcher([real_mobilenet], extractor_options=options, device="cpu")
        m.cache.root = None  # features in memory only
        out = base / f"stage{stage}"
        run_eval(opts, m, out, progress=False, log=lambda *a, **k: None)
        runs.append(out)
    return runs[0], runs[1]


def _by_hand(minireal: Path, run_a: Path, run_b: Path) -> dict:
    """The outcome counts from the two runs' predictions.jsonl and the raw pair files: a
    keypoint of the pair file is right when its prediction lies within alpha * T_ref (T_ref:
    the longer side of the target box)."""
    preds = [
        {e["pair_id"]: e["pred"] for e in map(json.loads, (run / "predictions.jsonl").open())}
        for run in (run_a, run_b)
    ]
    counts = {k: dict.fromkeys(OUTCOMES, 0) for k in ALPHAS}
    for pair_id in preds[0]:
        path = minireal / "SPair-71k" / "PairAnnotation" / "test" / f"{pair_id}.json"
        pair = json.loads(path.read_text())
        x1, y1, x2, y2 = pair["trg_bndbox"]
        t_ref = max(x2 - x1, y2 - y1)
        for i, gt in zip(pair["kps_ids"], pair["trg_kps"], strict=True):
            for key, alpha in ALPHAS.items():
                right = [
                    p[int(i)] is not None and math.dist(p[int(i)], gt) < alpha * t_ref
                    for p in (preds[0][pair_id], preds[1][pair_id])
                ]
                counts[key][OUTCOMES[2 * right[0] + right[1]]] += 1
    return counts


def test_compare_two_real_runs(two_runs, minireal, tmp_path, capsys):
    run_a, run_b = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", str(run_a), str(run_b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("both fail", "A fails, B right", "A right, B fails", "both right", "T_ref"):
        assert text in printed
    assert "stages=[6]" in printed and "stages=[13]" in printed  # which run is A, which B
    res = json.loads((out / "complementarity.json").read_text())
    overall = res["overall"]
    assert overall["n_pairs"] == 5
    assert overall["counts"] == _by_hand(minireal, run_a, run_b)
    assert res["run_a"]["folder"] == str(run_a.resolve()) and res["configs"]["run_b"]
    # each side's PCK per keypoint is the figure its own run reported (0.05 and 0.10 are in
    # SPair's alphas)
    for run, side in ((run_a, "a"), (run_b, "b")):
        own = json.loads((run / "results.json").read_text())["results"]["overall"]
        for key in ("0.05", "0.10"):
            assert overall[f"pck_per_keypoint_{side}"][key] == pytest.approx(
                own["pck_per_keypoint"][key], abs=1e-12
            )
    rows = list(csv.DictReader((out / "complementarity.csv").open()))
    last = rows[-1]
    assert (last["category"], last["alpha"]) == ("overall", "0.15")
    assert int(last["both_right"]) == overall["counts"]["0.15"]["both_right"]
    # the two stages do disagree: the table is not degenerate
    assert (
        overall["counts"]["0.10"]["a_fails_b_right"] + overall["counts"]["0.10"]["a_right_b_fails"]
        > 0
    )


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("run.lock"))
    return dest


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_compare_refuses_what_it_cannot_compare(two_runs, tmp_path, capsys):
    run_a, run_b = two_runs

    def refused(a: Path, b: Path) -> str:
        assert main(["compare", str(a), str(b), "--out", str(tmp_path / "never")]) == 2
        assert not (tmp_path / "never").exists()
        return capsys.readouterr().err

    # other pairs: B limited to 3 of the 5
    fewer = _copy(run_b, tmp_path / "fewer")
    _edit(fewer / "config.json", lambda c: c["run"].update(limit=3))
    err = refused(run_a, fewer)
    assert "different pairs" in err and str(run_a) in err and str(fewer) in err
    assert "A 5, B 3" in err and "2 only in A" in err
    # another threshold reference, another comparison
    other_ref = _copy(run_b, tmp_path / "other-ref")
    _edit(other_ref / "results.json", lambda r: r["metric"].update(T_ref="max(W, H) of the image"))
    err = refused(run_a, other_ref)
    assert "different thresholds" in err and str(run_a) in err and str(other_ref) in err
    inclusive = _copy(run_b, tmp_path / "inclusive")
    _edit(inclusive / "config.json", lambda c: c["run"].update(pck="<="))
    assert "different thresholds" in refused(run_a, inclusive)
    # unfinished: no results yet, or a pair without its prediction
    unscored = _copy(run_b, tmp_path / "unscored")
    (unscored / "results.json").unlink()
    assert "not finished" in refused(run_a, unscored)
    partial = _copy(run_b, tmp_path / "partial")
    lines = (partial / "predictions.jsonl").read_text().splitlines(keepends=True)
    (partial / "predictions.jsonl").write_text("".join(lines[:-1]))
    err = refused(partial, run_a)
    assert "not finished" in err and "1 of 5 pairs" in err
    # the same folder twice, a folder that is no run
    assert "two different run folders" in refused(run_a, run_a)
    assert "not an evaluation folder" in refused(run_a, tmp_path)
    # bad thresholds
    assert main(["compare", str(run_a), str(run_b), "--alphas", "0.1,x"]) == 2
    assert main(["compare", str(run_a), str(run_b), "--alphas", "5"]) == 2
