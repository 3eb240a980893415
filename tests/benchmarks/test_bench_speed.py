"""benchmarks/bench_speed.py (code in benchmarks/speed/) at toy size: the stages it reports,
the A/B interleaving and its ratio, the extrapolation, and partial results after a stop."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "corr" / "samples"


def _load():
    spec = importlib.util.spec_from_file_location(
        "_bench_speed", REPO / "benchmarks" / "bench_speed.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path: ``speed`` is importable
    return module


bench = _load()
import speed.matching  # noqa: E402
from speed import extraction, interleave, workloads  # noqa: E402

# figures of every stage, by unit
PER_IMAGE = ["letterbox", "vae_encode", "unet", "sd_total", "dino_forward", "ab_ours_extract"]
PER_PAIR = [
    "fusion",
    "match_points",
    "match_dense",
    "single_pair",
    "dense_pair",
    "match_cached",
    "match_cached_flip",
    "eval_per_pair",
    "ab_ours_match",
    "ref_per_pair",
    "spair_ours_per_pair",
]
RATES = {
    "eval_extract_rate": "images/s",
    "flip_extract_rate": "images/s",
    "extract_b1_w0": "images/s",
    "extract_b4_w0": "images/s",
    "extract_b4_w2": "images/s",
    "match_cached_rate": "pairs/s",
    "match_cached_flip_rate": "pairs/s",
    "ratio_spair": "x",
    "ratio_eval": "x",
    "ratio_cold": "x",
    "ratio_per_image": "x",
    "ratio_per_pair": "x",
    "ratio_reuse_factor": "x",
    "spair_ours_h": "h total",
    "spair_ours_flip_h": "h total",
    "spair_ref_h": "h total",
}


def _argv(out: Path, *extra: str) -> list[str]:
    return [
        "--tiny",
        "--sd-size",
        "128",
        "--dino-size",
        "112",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--pairs",
        "3",
        "--points",
        "20",
        "--out",
        str(out),
        "--no-startup",
        "--spair-root",
        str(REPO / "tests" / "data" / "minireal" / "SPair-71k"),
        "--image-files",
        str(ASSETS / "gazelle.jpg"),
        str(ASSETS / "jaguar.jpg"),
        *extra,
    ]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert bench.main(_argv(out, "--reference-pairs", "2")) == 0
    return json.loads(out.read_text()), out


def test_every_stage_reported_with_its_unit(full_run, capsys):
    data, out = full_run
    st = data["stages"]
    assert data["complete"] is True
    assert data["stages_done"] == ["single_pair", "evaluation", "ab_rounds", "flip", "extraction"]
    for key in PER_IMAGE:
        assert st[key]["unit"] == "s/image", key
    for key in PER_PAIR:
        assert st[key]["unit"] == "s/pair", key
    for key, unit in RATES.items():
        assert st[key]["unit"] == unit, key
    for key, f in st.items():  # every figure names its resolution / grid and device
        assert "cpu" in f["context"], key
    assert "SD 128 / DINO 112 px, fp32" in st["eval_per_pair"]["context"]
    assert "4 tiles of 64" in st["ref_per_pair"]["context"]
    # each image extracted once for the 3 pairs; the pair stage read only the cache
    assert data["evaluation"]["extractions"] == 2 and data["evaluation"]["pairs"] == 3
    assert len(st["match_cached"]["samples"]) == 3
    assert st["match_cached_rate"]["value"] == pytest.approx(
        3 / sum(data["evaluation"]["match_s_per_pair"]), rel=1e-3
    )
    variants = data["extraction"]["variants"]
    assert [(v["batch_size"], v["num_workers"]) for v in variants] == [(1, 0), (4, 0), (4, 2)]
    assert variants[0]["measured_in"] == "evaluation stage 1"
    assert all(v["images"] == 2 for v in variants)
    assert data["flip"]["mirrored_sources"] == 2  # both photos are sources of the 3 pairs
    assert set(data["memory"]["phases_mb"]) == set(data["stages_done"])
    assert data["config"]["weights"] == "random" and "random weights" in data["note"]
    assert data["config"]["sd_size"] == 128 and data["config"]["reference_tile"] == 64
    m = data["machine"]
    assert m["torch"] and len(m["loadavg_1_5_15_before"]) == 3 and m["cpu_count"] >= 1
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["key"] for r in rows] == list(st)


def test_ab_rounds_alternate_and_give_the_ratio(full_run):
    """Rounds alternate their order (A B, then B A), keep the load before each side, and the
    ratio of a workload is the median of the paired per-round ratios."""
    data, _ = full_run
    rounds = data["ab_rounds"]
    assert len(rounds) == 2
    assert [r["order"] for r in rounds] == [["A", "B"], ["B", "A"]]
    starts = [t for r in rounds for t in r["started_at"]]
    assert starts == sorted(starts)
    for r in rounds:
        for key in ("loadavg_before_A", "loadavg_before_B", "loadavg_after"):
            assert len(r[key]) == 3, key
        assert 0 < r["reference_extract_s_per_image"] * 2 < r["reference_s_per_pair"]
        assert 0 < r["reference_match_s_per_pair"] < r["reference_s_per_pair"]
    assert [r["pair"] for r in rounds] == data["config"]["pair_indices"][:2]

    def per_round(images, pairs):
        return [
            r["reference_s_per_pair"]
            / (r["ours_extract_s_per_image"] * images / pairs + r["ours_match_s_per_pair"])
            for r in rounds
        ]

    rat = data["ratio"]
    w = rat["workload"]  # the bundled minireal's split file: its distinct images are counted
    assert w["source"] == "split file" and (w["images"], w["pairs"]) == (33, 27)
    for key, (images, pairs) in {
        "spair_test": (33, 27),
        "this_evaluation": (2, 3),
        "no_reuse": (2, 1),
    }.items():
        want = per_round(images, pairs)
        assert rat[key]["per_round"] == pytest.approx(want, abs=0.006), key
        assert rat[key]["ratio"] == pytest.approx(statistics.median(want), abs=0.006), key
        assert rat[key]["spread"]["min"] == pytest.approx(min(want), abs=0.006), key
    assert data["stages"]["ratio_spair"]["value"] == rat["spair_test"]["ratio"]
    assert rat["target_met_spair"] == (rat["spair_test"]["ratio"] >= 10)
    # amortising extraction over more pairs per image can only raise the ratio
    assert rat["this_evaluation"]["ratio"] > rat["no_reuse"]["ratio"]
    split = rat["split"]
    per_image = [r["reference_extract_s_per_image"] / r["ours_extract_s_per_image"] for r in rounds]
    assert split["per_image"]["median"] == pytest.approx(statistics.median(per_image), abs=0.006)
    pairs = zip(rat["spair_test"]["per_round"], rat["no_reuse"]["per_round"], strict=True)
    reuse = [a / b for a, b in pairs]
    assert split["reuse_factor"]["median"] == pytest.approx(statistics.median(reuse), abs=0.02)
    # from the unrounded median of the paired values, as computed (the JSON's median is rounded
    # to 2 decimals, which moves the share by far more than its own rounding where the ratio
    # is near 1, as in this tiny run on a fast CPU)
    share = math.log(statistics.median(reuse)) / math.log(rat["spair_test"]["ratio"])
    assert split["reuse_share_of_ratio"] == pytest.approx(share, abs=0.0006)


def test_the_spair_workload_counts_the_split_files_images(tmp_path):
    """Pairs and distinct images (and sources, mirrored with flip) from Layout/large/test.txt;
    without it, 1,800 images as an upper bound, said so."""
    from corr.datasets import load_spair

    root = REPO / "tests" / "data" / "minireal" / "SPair-71k"
    w = workloads.spair_workload(root)
    recs = load_spair(root)
    images = {r.src_image for r in recs} | {r.tgt_image for r in recs}
    assert (w["pairs"], w["images"]) == (len(recs), len(images))
    assert w["images_flip"] == len(images) + len({r.src_image for r in recs})
    missing = workloads.spair_workload(tmp_path)
    assert missing["source"] == "upper bound" and missing["images"] == 1800
    assert missing["pairs"] == 12234 and "test.txt" in missing["missing"]


def test_startup_commands_are_timed_in_fresh_processes():
    from speed import startup

    res = startup.time_command(startup.COMMANDS["import_corr"], repeats=1)
    assert res["min_s"] == res["median_s"] == res["max_s"] > 0
    assert "torch" not in res["heavy_modules"]  # corr's public names load lazily
    res = startup.time_command(startup.COMMANDS["eval_help"], repeats=1)
    assert res["heavy_modules"] == []


def test_extrapolation_is_the_formula_on_the_measured_rates(full_run):
    data, _ = full_run
    ex, st = data["extrapolation"], data["stages"]
    assert "extrapolation" in ex["what"]
    best = max(data["extraction"]["variants"], key=lambda v: v["images_per_s"])
    assert ex["images_per_s"] == best["images_per_s"]
    assert ex["pairs_per_s"] == st["match_cached_rate"]["value"]
    ips, pps, ppsf = ex["images_per_s"], ex["pairs_per_s"], ex["pairs_per_s_flip"]
    w = ex["workload"]
    assert (w["images"], w["pairs"]) == (33, 27) and w["images_flip"] > 33
    assert "split file" in w["source"] and "Layout/large/test.txt" in ex["images_from"]
    assert ex["ours"]["total_s"] == pytest.approx(33 / ips + 27 / pps, abs=2e-3)
    assert ex["ours_flip"]["total_s"] == pytest.approx(w["images_flip"] / ips + 27 / ppsf, abs=2e-3)
    assert st["spair_ours_h"]["value"] == pytest.approx(ex["ours"]["total_s"] / 3600, abs=1e-3)
    ref = st["ref_per_pair"]["value"]
    assert ex["reference"]["total_s"] == pytest.approx(27 * ref, abs=0.1)
    w = workloads.workload_seconds(1800, 12234, 2.0, 100.0)
    assert w == {
        "extract_s": 900.0,
        "match_s": 122.34,
        "total_s": 1022.34,
        "per_pair_s": 1022.34 / 12234,
    }


def test_rates_and_totals_are_the_measured_seconds(full_run):
    """Every derived figure is its definition applied to the measured seconds (rounded as
    reported: 4 decimals, 4 significant digits below 1)."""
    data, _ = full_run
    st, ev = data["stages"], data["evaluation"]
    t_ext, match = st["eval_extract"]["value"], st["match_cached"]["samples"]
    assert ev["extract_s"] == pytest.approx(t_ext, abs=6e-5)
    assert ev["match_s_per_pair"] == pytest.approx(match, abs=2e-6)
    assert st["eval_extract_rate"]["value"] == pytest.approx(2 / t_ext, rel=2e-3)
    assert st["match_cached"]["value"] == pytest.approx(sum(match) / 3, rel=2e-3, abs=1e-4)
    assert ev["total_s"] == pytest.approx(t_ext + sum(match), abs=2e-4)
    assert st["eval_per_pair"]["value"] == pytest.approx((t_ext + sum(match)) / 3, rel=2e-3)
    for v in data["extraction"]["variants"]:
        key = f"extract_b{v['batch_size']}_w{v['num_workers']}"
        assert v["images_per_s"] == pytest.approx(v["images"] / v["seconds"], rel=2e-3), key
        assert v["s_per_image"] == pytest.approx(v["seconds"] / v["images"], abs=1e-4), key
        assert st[key]["value"] == pytest.approx(v["images"] / v["seconds"], rel=2e-3), key
    first = data["extraction"]["variants"][0]  # batch 1, no workers: the evaluation's own run
    assert first["seconds"] == pytest.approx(t_ext, abs=2e-4)


def test_stage_timer_on_a_fake_clock(monkeypatch):
    """A sample is the clock difference around the block, also when the block raises, and a
    timed wrapper records one sample per call."""
    from types import SimpleNamespace

    import torch
    from speed import timing

    ticks = iter([10.0, 12.5, 20.0, 20.25, 30.0, 31.0, 40.0, 40.125])
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    stages = timing.Stages(torch.device("cpu"))
    with stages.time("a"):
        pass
    with pytest.raises(KeyError), stages.time("a"):
        raise KeyError("stopped")
    assert stages.samples["a"] == [2.5, 0.25] and stages.last("a") == 0.25

    class Box:
        def f(self, x):
            return x + 1

    box = Box()
    with stages.wrap(box, "f", "f"):
        assert box.f(1) == 2 and box.f(2) == 3
    assert "f" not in vars(box) and box.f(5) == 6  # the wrapper is gone afterwards
    assert stages.samples["f"] == [1.0, 0.125]


def test_partial_results_survive_a_stop_mid_run(tmp_path, monkeypatch, capsys):
    def killed(*_a, **_k):
        raise KeyboardInterrupt  # stands for a run stopped during the flip stage

    monkeypatch.setattr(speed.matching, "run_flip_matching", killed)
    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        bench.main(_argv(out, "--reference-pairs", "1"))
    data = json.loads(out.read_text())
    assert data["complete"] is False
    assert data["stages_done"] == ["single_pair", "evaluation", "ab_rounds"]
    assert "ratio_spair" in data["stages"] and "match_cached_rate" in data["stages"]
    assert "flip" not in data and "extraction" not in data and "spair_ours_h" not in data["stages"]
    assert len(data["ab_rounds"]) == 1
    assert out.with_suffix(".csv").is_file()
    assert not list(tmp_path.glob("*.tmp*"))  # written through a temp file + os.replace
    err = capsys.readouterr().err
    assert "stage done: evaluation" in err and "A/B round 1/1" in err  # progress on stderr


def test_sizes_pairs_variants():
    args = bench.build_parser().parse_args(["--resolution-scale", "0.5"])
    assert bench.resolve_sizes(args) == {"sd": 512, "dino": 420, "tile": 256}
    args = bench.build_parser().parse_args([])
    assert bench.resolve_sizes(args) == {"sd": 960, "dino": 840, "tile": 512}
    pairs = bench.draw_pairs(4, 6)
    assert sorted(tuple(sorted(p)) for p in pairs) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 3),
    ]
    pts = bench.query_grid(640, 427, 20)
    assert pts.shape == (20, 2) and (pts[:, 0] < 640).all() and (pts[:, 1] < 427).all()
    assert extraction.parse_variant("4x2") == (4, 2)
    with pytest.raises(ValueError, match="BATCHxWORKERS"):
        extraction.parse_variant("4")
    assert interleave.TARGET_RATIO == 10.0


def test_entry_point_runs_as_a_script():
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_speed.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "--extract-variants" in res.stdout and "--reference-pairs" in res.stdout
