"""The pair stage's threads (corr/devices.py, corr/eval/runner.py): one by default or
``--threads N``, for the pair stage only; the extraction stage keeps the process's own."""

from __future__ import annotations

import json

import pytest
import torch

from corr.devices import PAIR_STAGE_THREADS, pair_stage_threads, torch_threads
from corr.eval.cli import main


def test_the_pair_stage_takes_one_thread_unless_told_and_restores_the_setting():
    assert PAIR_STAGE_THREADS == 1 and pair_stage_threads() == 1 and pair_stage_threads(3) == 3
    with pytest.raises(ValueError, match="threads must be >= 1"):
        pair_stage_threads(0)
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), torch_threads(1):
        raise KeyError("stopped")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("given", [None, 2])
def test_eval_runs_its_pair_stage_with_its_own_threads(minireal, tmp_path, monkeypatch, given):
    import corr.matcher

    seen = {"pair": set(), "extract": set()}
    real_pair, real_extract = corr.matcher.Matcher.pair, corr.matcher.Matcher.extract

    def pair(self, *a, **k):
        seen["pair"].add(torch.get_num_threads())
        return real_pair(self, *a, **k)

    def extract(self, *a, **k):
        seen["extract"].add(torch.get_num_threads())
        return real_extract(self, *a, **k)

    monkeypatch.setattr(corr.matcher.Matcher, "pair", pair)
    monkeypatch.setattr(corr.matcher.Matcher, "extract", extract)
    outer = torch.get_num_threads()
    torch.set_num_threads(3)  # the process's own setting: extraction keeps it
    before = torch.get_num_threads()
    out = tmp_path / "run"
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", "tiny"]
    args += ["--no-pretrained", "--limit", "2", "--out", str(out), "--no-progress"]
    args += ["--sd-size", "64", "--dino-size", "56"]
    try:
        assert main(args + ([] if given is None else ["--threads", str(given)])) == 0
        assert torch.get_num_threads() == before == 3
    finally:
        torch.set_num_threads(outer)
    assert seen == {"pair": {given or 1}, "extract": {3}}
    timing = json.loads((out / "results.json").read_text())["timing"]
    assert timing["pair_stage_threads"] == (given or 1)
    assert set(timing["descriptors_reused"]) == {"hits", "misses"}
