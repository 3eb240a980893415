"""``python -m corr.eval`` end to end on minireal: results, resume, errors, re-scoring."""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from corr.eval.cli import main
from corr.matcher import Matcher
from corr.pair import Pair

# the real small model (tests that run it take the ``real_mobilenet`` fixture of conftest.py)
MOBILENET = "corr.contrib.mobilenet:mobilenetv2"
SPAIR_ALPHAS = {"0.10": 0.10, "0.05": 0.05, "0.01": 0.01}


# ---------------------------------------------------------------- PCK written out by hand
# Independent of corr's loaders and metric: the truth is read from the raw annotation files
# and a keypoint is correct when its distance is below alpha * T_ref.


def _entries(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


def _spair_truth(minireal: Path, pair_id: str) -> dict:
    """The pair file's target points of the keypoints labelled in both images, T_ref = the
    longer side of the target box, and the geo ids: keypoints with a twin group
    (geo_groups.json) of which at least two members are labelled in the target image."""
    root = minireal / "SPair-71k"
    pair = json.loads((root / "PairAnnotation" / "test" / f"{pair_id}.json").read_text())
    x1, y1, x2, y2 = pair["trg_bndbox"]
    gt = {int(i): xy for i, xy in zip(pair["kps_ids"], pair["trg_kps"], strict=True)}
    cat = pair["category"]
    trg = root / "ImageAnnotation" / cat / (Path(pair["trg_imname"]).stem + ".json")
    labelled = {int(k) for k, v in json.loads(trg.read_text())["kps"].items() if v is not None}
    groups = json.loads((minireal / "geo_groups.json").read_text())[cat]
    geo = {
        i for i in gt for grp in groups if i in grp and len(set(grp) & (labelled | set(gt))) >= 2
    }
    return {"gt": gt, "t_ref": max(x2 - x1, y2 - y1), "geo": geo}


def _pck(items: list[tuple[list, dict, float]], alphas: dict[str, float]) -> dict:
    """``items``: (predictions by keypoint index, {index: ground truth}, T_ref) per pair."""
    out = {"n_keypoints": sum(len(gt) for _, gt, _ in items)}
    out["pck_per_image"], out["pck_per_keypoint"] = {}, {}
    for key, alpha in alphas.items():
        ratios, hits = [], 0
        for pred, gt, t_ref in items:
            ok = [
                pred[i] is not None and math.dist(pred[i], xy) < alpha * t_ref
                for i, xy in gt.items()
            ]
            if ok:
                ratios.append(sum(ok) / len(ok))
                hits += sum(ok)
        out["pck_per_image"][key] = sum(ratios) / len(ratios)
        out["pck_per_keypoint"][key] = hits / out["n_keypoints"]
    return out


def _spair_by_hand(minireal: Path, entries: list[dict], plain: bool = False) -> dict:
    """Overall PCK and its geo subset of the stored predictions (``plain``: without alignment)."""
    items, geo_items = [], []
    for e in entries:
        truth = _spair_truth(minireal, e["pair_id"])
        pred = e["flip"]["pred_plain"] if plain else e["pred"]
        items.append((pred, truth["gt"], truth["t_ref"]))
        geo_gt = {i: xy for i, xy in truth["gt"].items() if i in truth["geo"]}
        if geo_gt:
            geo_items.append((pred, geo_gt, truth["t_ref"]))
    res = _pck(items, SPAIR_ALPHAS)
    res["geo"] = _pck(geo_items, SPAIR_ALPHAS)
    res["geo"]["share_keypoints"] = res["geo"]["n_keypoints"] / res["n_keypoints"]
    return res


def _assert_block(got: dict, want: dict) -> None:
    assert got["n_keypoints"] == want["n_keypoints"]
    for avg in ("pck_per_image", "pck_per_keypoint"):
        assert got[avg] == pytest.approx(want[avg], rel=1e-12, abs=1e-12), avg


def _args(minireal, out, *extra, dataset="spair"):
    root = minireal / ("SPair-71k" if dataset == "spair" else "PF-Pascal")
    return [
        dataset,
        "--root",
        str(root),
        "--extractor",
        MOBILENET,
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.mark.usefixtures("real_mobilenet")
def test_spair_run_writes_tables_and_files(minireal, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            _args(minireal, out, "--limit", "12", "--geo-groups", str(minireal / "geo_groups.json"))
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "per image" in printed and "per keypoint" in printed and "overall" in printed
    res = json.loads((out / "results.json").read_text())
    overall = res["results"]["overall"]
    assert overall["n_pairs"] == 12
    assert (
        set(overall["pck_per_image"])
        == set(overall["pck_per_keypoint"])
        == {"0.10", "0.05", "0.01"}
    )
    # the numbers, recomputed from the predictions and the raw annotation files
    want = _spair_by_hand(minireal, _entries(out))
    _assert_block(overall, want)
    _assert_block(overall["geo"], want["geo"])
    assert overall["geo"]["n_keypoints"] < overall["n_keypoints"]  # a real subset
    assert overall["geo"]["share_keypoints"] == pytest.approx(want["geo"]["share_keypoints"])
    assert res["config"]["matcher"]["extractors"][0]["name"] == "mobilenetv2"
    assert res["environment"]["versions"]["torch"]
    rows = {r["category"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert "overall" in rows
    assert float(rows["overall"]["pck@0.10_per_image"]) == pytest.approx(
        overall["pck_per_image"]["0.10"], abs=1e-6
    )
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 12
    # the features of each image were computed once: pairs share images
    assert res["timing"]["feature_cache"]["misses"] < 2 * 12


@pytest.mark.usefixtures("real_mobilenet")
def test_interrupted_run_resumes_with_identical_numbers(minireal, tmp_path, monkeypatch):
    full = tmp_path / "full"
    cache = [
        "--cache-dir",
        str(tmp_path / "cache"),
    ]  # shared: results must not depend on cache state
    assert main(_args(minireal, full, "--limit", "10", *cache)) == 0
    expected = json.loads((full / "results.json").read_text())["results"]

    cut = tmp_path / "cut"
    real_match = Pair.match  # the runner asks a Pair per pair
    calls = {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_match(self, *a, **k)

    monkeypatch.setattr(Pair, "match", interrupted)
    assert main(_args(minireal, cut, "--limit", "10", *cache)) == 130  # Ctrl-C: saved, resumable
    monkeypatch.setattr(Pair, "match", real_match)
    assert len((cut / "predictions.jsonl").read_text().splitlines()) == 4
    with open(cut / "predictions.jsonl", "a") as f:
        f.write('{"pair_id": "torn-wri')  # a write cut off mid-line
    assert main(_args(minireal, cut, "--limit", "10", *cache)) == 0
    assert json.loads((cut / "results.json").read_text())["results"] == expected
    assert len((cut / "predictions.jsonl").read_text().splitlines()) == 10


@pytest.mark.usefixtures("real_mobilenet")
def test_rerun_with_other_config_is_refused(minireal, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(minireal, out, "--limit", "2")) == 0
    assert main(_args(minireal, out, "--limit", "2", "--matcher", "nn")) == 2
    assert "different configuration" in capsys.readouterr().err


@pytest.mark.usefixtures("real_mobilenet")
def test_score_rescores_without_features(minireal, tmp_path):
    out = tmp_path / "run"
    assert main(_args(minireal, out, "--limit", "4")) == 0
    before = json.loads((out / "results.json").read_text())["results"]
    shutil.rmtree(out / "cache")
    (out / "results.json").unlink()
    assert main(["score", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["results"] == before


@pytest.mark.usefixtures("real_mobilenet")
def test_bad_image_is_named_or_skipped(minireal, tmp_path, capsys):
    root = tmp_path / "SPair-71k"
    shutil.copytree(minireal / "SPair-71k", root)
    victim = sorted((root / "JPEGImages" / "aic").glob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    truncated = sorted((root / "JPEGImages" / "aic").glob("*.jpg"))[1]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.6)])  # header intact, pixels cut off
    args = ["spair", "--root", str(root), "--extractor", MOBILENET, "--no-progress", "--limit", "6"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and truncated.name in err and "--skip-bad" in err
    assert main([*args, "--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    bad_names = {victim.name, truncated.name}
    assert res["skipped"] and all(Path(s["path"]).name in bad_names for s in res["skipped"])
    assert res["results"]["overall"]["n_pairs"] == 6 - len({s["pair_id"] for s in res["skipped"]})


def test_wrong_root_names_the_layout(tmp_path, capsys):
    assert main(["spair", "--root", str(tmp_path / "nowhere"), "--extractor", MOBILENET]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "PairAnnotation" in err


@pytest.mark.usefixtures("real_mobilenet")
def test_pfpascal_run_and_flip_refusal(minireal, tmp_path, capsys):
    out = tmp_path / "pf"
    assert main(_args(minireal, out, "--limit", "6", dataset="pfpascal")) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["results"]["overall"]["pck_per_image"]) == {"0.05", "0.10", "0.15"}
    # by hand from the CSV: pair ids start with the 1-based row; T_ref = max(W, H) of the target
    from PIL import Image

    root = minireal / "PF-Pascal"
    rows = list(csv.DictReader(open(root / "test_pairs_pf_pascal.csv")))
    items = []
    for e in _entries(out):
        row = rows[int(e["pair_id"][:6]) - 1]
        xs, ys = ([float(v) for v in row[c].split(";")] for c in ("XB", "YB"))
        with Image.open(root / row["target_image"]) as im:
            t_ref = max(im.size)
        items.append((e["pred"], dict(enumerate(zip(xs, ys, strict=True))), t_ref))
    assert len(items) == 6
    want = _pck(items, {"0.05": 0.05, "0.10": 0.10, "0.15": 0.15})
    _assert_block(res["results"]["overall"], want)
    assert main(_args(minireal, tmp_path / "pf2", "--flip", dataset="pfpascal")) == 2
    assert "PF-Pascal" in capsys.readouterr().err


@pytest.mark.usefixtures("real_mobilenet")
def test_flip_run_reports_rates_and_both_geo_figures(minireal, tmp_path):
    out = tmp_path / "flip"
    args = _args(
        minireal,
        out,
        "--flip",
        "--flip-table",
        str(minireal / "flip.json"),
        "--geo-groups",
        str(minireal / "geo_groups.json"),
        "--limit",
        "8",
    )
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    entries = _entries(out)
    flips = {e["pair_id"]: e["flip"] for e in entries}
    assert len(flips) == 8
    for pid, f in flips.items():  # the decision: the mirrored source is nearer
        assert np.isfinite([f["distance"], f["distance_flipped"]]).all(), pid
        assert f["flipped"] == (f["distance_flipped"] < f["distance"]), pid
        if not f["flipped"]:  # nothing replaced
            assert f["pred_plain"] == next(e["pred"] for e in entries if e["pair_id"] == pid)
    # the mirror pairs among the first 8 (their targets are flipped copies) are flipped
    pair_files = sorted((minireal / "SPair-71k" / "PairAnnotation" / "test").glob("*.json"))
    first = [json.loads(f.read_text()) | {"pair_id": f.stem} for f in pair_files[:8]]
    assert {p["pair_id"] for p in first} == set(flips)
    mirror = {p["pair_id"] for p in first if p["mirror"]}
    assert 0 < len(mirror) < 8 and all(flips[p]["flipped"] for p in mirror)
    n_flipped = sum(f["flipped"] for f in flips.values())
    assert res["flip"]["overall"] == {
        "n_pairs": 8,
        "n_flipped": n_flipped,
        "flip_rate": n_flipped / 8,
    }
    for cat, c in res["flip"]["per_category"].items():
        mine = [f for pid, f in flips.items() if pid.endswith(f":{cat}")]
        assert c == {
            "n_pairs": len(mine),
            "n_flipped": sum(f["flipped"] for f in mine),
            "flip_rate": sum(f["flipped"] for f in mine) / len(mine),
        }, cat
    # PCK with and without alignment, each from its own stored predictions
    for key, plain in (("results", False), ("results_without_alignment", True)):
        want = _spair_by_hand(minireal, entries, plain=plain)
        _assert_block(res[key]["overall"], want)
        _assert_block(res[key]["overall"]["geo"], want["geo"])
    assert (out / "results_without_alignment.csv").exists()


def test_tiny_random_sd_dino_end_to_end(minireal, tmp_path, capsys):
    out = tmp_path / "tiny"
    args = [
        "spair",
        "--root",
        str(minireal / "SPair-71k"),
        "--extractor",
        "tiny",
        "--no-pretrained",
        "--limit",
        "3",
        "--out",
        str(out),
        "--no-progress",
        "--timestep",
        "50",
        "--fuse",
        "0.5",
    ]
    assert main(args) == 0
    assert "meaningless" in capsys.readouterr().err  # random weights are announced
    res = json.loads((out / "results.json").read_text())
    sd, dino = res["config"]["matcher"]["extractors"]
    assert (
        sd["class"] == "SDExtractor" and sd["timestep"] == 50 and sd["model"].startswith("random:")
    )
    assert dino["class"] == "DinoExtractor" and dino["model"].startswith("random:")
    assert res["config"]["matcher"]["weights"] == [0.5, 0.5]
    assert res["results"]["overall"]["n_pairs"] == 3
    # each distinct image was extracted once, in the extraction stage; the pairs only read
    from corr.datasets import load_spair

    recs = load_spair(minireal / "SPair-71k")[:3]
    images = {r.src_image for r in recs} | {r.tgt_image for r in recs}
    assert res["timing"]["extraction_this_run"]["computed"] == len(images)
    assert res["timing"]["feature_cache"]["misses"] == 0


def test_missing_weights_give_the_actionable_error(minireal, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert (
        main(
            [
                "spair",
                "--root",
                str(minireal / "SPair-71k"),
                "--limit",
                "1",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "weights sd15 (" in err and "weights dinov2_vitb14 (" in err and "looked in:" in err
    assert "python -m corr.weights download sd15 dinov2_vitb14 " in err  # both, at once


def test_bad_factory_spec_is_a_clear_error(minireal, tmp_path, capsys):
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--out", str(tmp_path / "o")]
    assert main([*args, "--extractor", "corr.contrib.mobilenet:nope"]) == 2
    assert "has no attribute 'nope'" in capsys.readouterr().err


def test_prompt_categories_are_per_image_for_ap10k():
    from corr.eval.plan import prompt_categories

    class Rec:
        category = "Felidae"
        flags = {"src_species": "cat", "trg_species": "leopard"}

    assert prompt_categories(Rec()) == ("cat", "leopard")
    Rec.flags = {}
    assert prompt_categories(Rec()) == "Felidae"


@pytest.mark.usefixtures("real_mobilenet")
def test_limit_must_be_positive_and_is_part_of_the_run(minireal, tmp_path, capsys):
    base = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", MOBILENET]
    for bad in ("0", "-1"):
        assert main([*base, "--limit", bad, "--out", str(tmp_path / "x")]) == 2
        assert "--limit must be a positive number of pairs" in capsys.readouterr().err
    out = str(tmp_path / "run")
    assert main([*base, "--limit", "3", "--out", out, "--no-progress"]) == 0
    # a run of another size into the same folder is refused, not mixed
    assert main([*base, "--limit", "5", "--out", out, "--no-progress"]) == 2
    assert "different configuration" in capsys.readouterr().err


@pytest.mark.usefixtures("real_mobilenet")
def test_ctrl_c_says_where_the_run_stopped(minireal, tmp_path, capsys, monkeypatch):
    import corr.eval.runner as runner

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_eval", interrupted)
    code = main(_args(minireal, tmp_path / "r", "--limit", "2"))
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and "run the same command to resume" in err
    assert "Traceback" not in err


def test_help_gives_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "images per extraction batch (default: 1)" in " ".join(text.split())


def test_a_non_factory_is_named(minireal, tmp_path, capsys):
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--out", str(tmp_path / "o")]
    assert main([*args, "--extractor", "corr.contrib.mobilenet:DEFAULT_STAGES"]) == 2
    assert "'DEFAULT_STAGES' is a tuple, not a factory function" in capsys.readouterr().err


@pytest.mark.usefixtures("real_mobilenet")
def test_default_run_folder_is_named_by_the_configuration(minireal, tmp_path, monkeypatch, capsys):
    """Without --out: runs/{dataset}-{split}-{8 hex digits} in the current directory, the same
    folder for the same run (so it resumes), another for another configuration; where the
    work runs (--device) is not part of the name."""
    import re

    monkeypatch.chdir(tmp_path)
    base = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", MOBILENET]
    base += ["--no-progress"]

    def run(*extra):
        assert main([*base, *extra]) == 0
        err = capsys.readouterr().err
        found = re.search(r" -> (\S+)\n", err)
        assert found, err
        return found[1]

    first = run("--limit", "1")
    assert re.fullmatch(r"runs/spair-test-[0-9a-f]{8}", first), first
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [Path(first).name]
    assert (
        json.loads((tmp_path / first / "results.json").read_text())["results"]["overall"]["n_pairs"]
        == 1
    )
    assert run("--limit", "1", "--device", "cpu") == first  # resumed: nothing new
    assert len((tmp_path / first / "predictions.jsonl").read_text().splitlines()) == 1
    other = run("--limit", "2")
    assert re.fullmatch(r"runs/spair-test-[0-9a-f]{8}", other) and other != first
    assert run("--limit", "1", "--matcher", "nn") not in (first, other)
    assert len(list((tmp_path / "runs").iterdir())) == 3


def test_cuda_device_without_cuda_is_refused_before_any_work(
    minireal, tmp_path, capsys, monkeypatch
):
    import torch

    import corr.matcher

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    built = []
    monkeypatch.setattr(corr.matcher, "Matcher", lambda *a, **k: built.append(1))
    out = tmp_path / "o"
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", "tiny"]
    for device in ("cuda", "cuda:1"):
        assert main([*args, "--no-pretrained", "--device", device, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert (
            f"error: --device {device}: no CUDA device is available here; use --device cpu" in err
        )
    assert built == [] and not out.exists()  # no model was built, no folder written


def test_dtype_reaches_the_networks_end_to_end(minireal, tmp_path, monkeypatch):
    """--dtype bfloat16 (an alias) runs both networks in bf16 and is recorded as bf16."""
    import torch

    import corr.matcher

    matchers = []

    def spy(*args, **kwargs):
        matchers.append(Matcher(*args, **kwargs))  # the real class, imported above
        return matchers[-1]

    monkeypatch.setattr(corr.matcher, "Matcher", spy)  # the CLI imports it when it runs
    out = tmp_path / "bf16"
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", "tiny"]
    args += ["--no-pretrained", "--limit", "1", "--out", str(out), "--no-progress"]
    args += ["--sd-size", "64", "--dino-size", "56", "--dtype", "bfloat16"]
    assert main(args) == 0
    (m,) = matchers
    for ext in m.extractors:
        assert {p.dtype for p in ext.parameters() if p.is_floating_point()} == {torch.bfloat16}
    res = json.loads((out / "results.json").read_text())
    sd, dino = res["config"]["matcher"]["extractors"]
    assert sd["dtype"] == dino["dtype"] == "bf16"
    assert res["results"]["overall"]["n_pairs"] == 1
