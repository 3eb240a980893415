"""Several processes under torchrun (gloo, CPU): same numbers as one, faults resume, shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("real_mobilenet")  # every test here uses it
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{HERE}{os.pathsep}{REPO}")
    env.pop("CORR_TEST_KILL_RANK1", None)
    env.update(extra)
    return env


def _launch(nproc, module, args, env, check=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    cmd += ["--standalone", "--max_restarts=0", "-m", module, *args]
    if nproc == 1:
        cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a hung launch is killed with all its workers
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} did not finish in 240 s") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return proc


def _eval_args(minireal, out, extractor="corr.contrib.mobilenet:mobilenetv2"):
    return [
        "spair", "--root", str(minireal / "SPair-71k"), "--extractor", extractor,
        "--limit", "8", "--flip", "--flip-table", str(minireal / "flip.json"),
        "--out", str(out), "--no-progress", "--batch-size", "2",
    ]  # fmt: skip


def _figures(out: Path) -> dict:
    res = json.loads((out / "results.json").read_text())
    return {k: res[k] for k in ("results", "results_without_alignment", "flip")}


@pytest.fixture(scope="module")
def one_process(minireal, tmp_path_factory):
    """The figures of one plain process (run in this one: no second interpreter to start)."""
    from corr.eval.cli import main

    out = tmp_path_factory.mktemp("one") / "run"
    assert main(_eval_args(minireal, out)) == 0
    return _figures(out)


def test_two_processes_give_the_numbers_of_one(minireal, tmp_path, one_process):
    _launch(2, "corr.eval", _eval_args(minireal, tmp_path / "two"), _env())
    assert _figures(tmp_path / "two") == one_process
    lines = {
        r: (tmp_path / "two" / f"predictions.{r}.jsonl").read_text().splitlines() for r in (0, 1)
    }
    ids = [json.loads(x)["pair_id"] for r in (0, 1) for x in lines[r]]
    assert len(lines[0]) == len(lines[1]) == 4 and len(set(ids)) == 8  # disjoint shards


def test_a_rank_that_dies_leaves_the_others_work_and_the_rerun_completes(
    minireal, tmp_path, one_process
):
    out = tmp_path / "run"
    spec = "fault_injection:mobilenet_rank1_dies"
    dead = _launch(
        2,
        "corr.eval",
        _eval_args(minireal, out, spec),
        _env(CORR_TEST_KILL_RANK1=str(out / "cache")),
        check=False,
    )
    assert dead.returncode != 0 and not (out / "results.json").exists()
    saved = list((out / "cache").rglob("*.safetensors"))
    assert len(saved) >= 4  # rank 0's extracted images (and rank 1's first batch) stayed
    _launch(2, "corr.eval", _eval_args(minireal, out, spec), _env())
    res = json.loads((out / "results.json").read_text())
    assert res["results"]["overall"]["n_pairs"] == 8
    assert res["timing"]["extraction_this_run"]["cached"] > 0  # rank 0 resumed from its files
    assert _figures(out) == one_process


def test_sharded_extract_is_read_back_by_the_feature_store(tmp_path):
    from corr import FeatureStore
    from corr.matcher import Matcher

    assets = REPO / "corr" / "samples"
    args = ["--images", str(assets), "--out", str(tmp_path / "f"), "--flip", "--no-progress"]
    args += ["--extractor", "corr.contrib.mobilenet:mobilenetv2"]
    _launch(2, "corr.extract", args, _env())
    assert sorted(p.name for p in (tmp_path / "f").glob("manifest*")) == [
        "manifest.0.jsonl",
        "manifest.1.jsonl",
    ]
    store = FeatureStore(tmp_path / "f")
    photos = sorted(assets.glob("*.jpg"))  # each photo and its mirror (--flip)
    assert len(photos) >= 2 and len(store.images()) == 2 * len(photos)
    assert len(store.configs()) == 1
    # corr.extract's default --dtype auto: bf16 autocast on a CPU where it is faster
    want = Matcher(["corr.contrib.mobilenet:mobilenetv2"], dtype="auto").features(
        assets / "jaguar.jpg", mirrored=True
    )
    got = store.get(assets / "jaguar.jpg", mirrored=True)
    assert set(got) == set(want.maps[0])
    for k in got:  # equal up to fp16 rounding (other processes, other thread counts)
        torch.testing.assert_close(got[k], want.maps[0][k], rtol=2e-3, atol=2e-3)
    with pytest.raises(KeyError, match="not in"):
        store.get(assets / "README.md")
