"""Extract, then match: the two-stage evaluation gives today's numbers, resumes at both stages."""

from __future__ import annotations

import json

import pytest

from corr.eval.cli import main
from corr.matcher import Matcher

MOBILENET = "corr.contrib.mobilenet:mobilenetv2"


def _run(minireal, out, *extra):
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", MOBILENET]
    args += ["--limit", "6", "--flip", "--flip-table", str(minireal / "flip.json")]
    assert main([*args, "--out", str(out), "--no-progress", *extra]) == 0
    return (
        json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    )


@pytest.mark.usefixtures("real_mobilenet")
def test_extract_then_match_equals_per_pair_extraction(minireal, tmp_path, monkeypatch):
    staged = _run(minireal, tmp_path / "staged", "--batch-size", "4", "--num-workers", "1")
    ext = staged["timing"]["extraction_this_run"]
    assert ext["computed"] == ext["n_images"] > 6  # sources, targets and mirrored sources
    # today's path: no extraction stage, each pair's features computed inside match()
    with monkeypatch.context() as mp:
        mp.setattr(Matcher, "extract", lambda self, items, **kw: _Empty())
        lazy = _run(minireal, tmp_path / "lazy")
    for key in ("results", "results_without_alignment", "flip"):
        assert staged[key] == lazy[key], key


class _Empty:
    n_images = cached = computed = by_others = 0
    seconds = 0.0
    bad: list = []

    def as_dict(self):
        return {}


@pytest.mark.usefixtures("real_mobilenet")
def test_extract_only_fills_the_cache_and_the_next_run_extracts_nothing(minireal, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(minireal, out, "--extract-only", "--batch-size", "3") is None
    assert "--extract-only" in capsys.readouterr().out
    preds = out / "predictions.jsonl"
    assert not preds.exists() or not preds.read_text().strip()  # no pair was matched
    res = _run(minireal, out)
    ext = res["timing"]["extraction_this_run"]
    assert ext["computed"] == 0 and ext["cached"] == ext["n_images"]
    assert res["results"]["overall"]["n_pairs"] == 6


def test_bad_throughput_flags_are_refused(minireal, tmp_path, capsys):
    assert main(["spair", "--root", str(minireal / "SPair-71k"), "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err
