"""PF-Willow, SPair-U and TSS under torchrun (two ranks, gloo, CPU): the figures of one process."""

from __future__ import annotations

import json

import pytest
from synthetic_benchmarks import make_pfwillow, make_spair_u, make_tss
from test_torchrun import _env, _launch

from corr.eval.cli import main

pytestmark = pytest.mark.usefixtures("real_mobilenet")


@pytest.mark.parametrize(
    ("dataset", "make"), [("pfwillow", make_pfwillow), ("spair-u", make_spair_u)]
)
def test_two_ranks_give_the_figures_of_one(dataset, make, tmp_path):
    root = tmp_path / "data"
    make(root)

    def args(out):
        return [dataset, "--root", str(root), "--extractor", "corr.contrib.mobilenet:mobilenetv2",
                "--out", str(out), "--no-progress"]  # fmt: skip

    assert main(args(tmp_path / "one")) == 0
    _launch(2, "corr.eval", args(tmp_path / "two"), _env())
    one, two = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("one", "two"))
    assert two["results"] == one["results"] and two["timing"]["processes"] == 2
    shards = [
        (tmp_path / "two" / f"predictions.{r}.jsonl").read_text().splitlines() for r in (0, 1)
    ]
    assert all(shards) and sum(map(len, shards)) == 3  # both ranks matched pairs


def test_tss_two_ranks_give_the_figures_of_one(tmp_path):
    root = tmp_path / "TSS_CVPR2016"
    make_tss(root)

    def args(out):
        return ["tss", "--root", str(root), "--extractor", "corr.contrib.mobilenet:mobilenetv2",
                "--out", str(out), "--no-progress"]  # fmt: skip

    assert main(args(tmp_path / "one")) == 0
    _launch(2, "corr.eval", args(tmp_path / "two"), _env())
    one, two = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("one", "two"))
    assert two["results"] == one["results"]
    shards = [(tmp_path / "two" / f"pairs.{r}.jsonl").read_text().splitlines() for r in (0, 1)]
    assert [len(s) for s in shards] == [4, 2]  # folders 1 and 3 on rank 0, folder 2 on rank 1
