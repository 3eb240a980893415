"""Issue 14.12: the same command gives byte-identical ``results.json`` figures across runs and
across thread counts (``OMP_NUM_THREADS=1`` vs ``2``)."""

from __future__ import annotations

import json

import pytest
import torch
from fault_points import eval_args, run_eval

from corr.eval.cli import main

# every test here runs the real MobileNetV2 stand-in (skipped, with the reason, without it)
pytestmark = pytest.mark.usefixtures("real_mobilenet")


def _figures(out) -> str:
    """Every figure of results.json (not timing or environment), as the bytes written."""
    res = json.loads((out / "results.json").read_text())
    return json.dumps({k: res[k] for k in ("results", "n_pairs", "metric", "notes", "skipped")})


def test_same_command_same_figures_across_runs_and_thread_counts(minireal, tmp_path):
    outs = {name: tmp_path / name for name in "abc"}
    for name, threads in (("a", 1), ("c", 2)):  # separate processes, OMP_NUM_THREADS=1 / 2
        r = run_eval("none", 0, eval_args(minireal, outs[name], limit=5), threads=threads)
        assert r.returncode == 0, r.stderr
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # one more run with one thread, in this process
        assert main(eval_args(minireal, outs["b"], limit=5)) == 0
    finally:
        torch.set_num_threads(threads)
    a, b, c = (_figures(outs[k]) for k in "abc")
    assert a == b == c
    assert json.loads(a)["results"]["overall"]["n_pairs"] == 5
    # same thread count: the stored predictions themselves are byte-identical
    pred = [(outs[k] / "predictions.jsonl").read_bytes() for k in "ab"]
    assert pred[0] == pred[1]
    # and the configuration that identifies the run does not record the thread count
    cfg = [(outs[k] / "config.json").read_text() for k in "ac"]
    assert cfg[0].replace(str(outs["a"]), "") == cfg[1].replace(str(outs["c"]), "")
