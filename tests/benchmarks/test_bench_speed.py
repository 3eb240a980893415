"""benchmarks/bench_speed.py at toy size: every stage timed, the ratio and memory reported."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "demos" / "assets"

STAGES = [
    "build_sd",
    "build_dino",
    "letterbox",
    "vae_encode",
    "unet",
    "sd_total",
    "dino_forward",
    "fusion",
    "match_points",
    "match_dense",
    "single_pair",
    "dense_pair",
    "eval_total",
    "eval_per_pair",
    "ref_build",
    "ref_vae_encode",
    "ref_unet_full",
    "ref_vae_decode",
    "ref_sd_total",
    "ref_dino_forward",
    "ref_fusion",
    "ref_match_points",
    "ref_per_pair",
]


def _load():
    spec = importlib.util.spec_from_file_location(
        "_bench_speed", REPO / "benchmarks" / "bench_speed.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_tiny_benchmark_reports_every_stage(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
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
        "--reference-pairs",
        "1",
        "--points",
        "20",
        "--out",
        str(out),
        "--image-files",
        str(ASSETS / "gazelle.jpg"),
        str(ASSETS / "jaguar.jpg"),
    ]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    for key in STAGES:
        assert data["stages"][key]["seconds"] > 0, key
        assert data["stages"][key]["unit"] in ("s once", "s/image", "s/pair", "s total"), key
    assert data["config"]["sd_size"] == 128 and data["config"]["dino_size"] == 112
    assert data["config"]["reference_tile"] == 64
    assert data["evaluation"]["extractions"] == 2  # each image extracted once for 3 pairs
    assert data["ratio"]["reference_over_ours_eval"] > 0
    assert data["ratio"]["reference_over_ours_single_pair"] > 0
    assert data["memory"]["peak_mb"] > 0 and data["memory"]["phases_mb"]
    assert data["machine"]["torch"] and data["machine"]["torch_threads"] >= 1
    assert "random weights" in data["note"]
    table = capsys.readouterr().out
    assert "s/image" in table and "s/pair" in table and "ratio reference / ours" in table


def test_sizes_and_pairs():
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
