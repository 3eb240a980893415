"""corr.train.train: a run resumes after kill -9 with the weights of an uninterrupted one, two
torchrun processes train the weights of one process with their pairs in one batch, a run's
configuration is recorded and guarded, and the command line records every override."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def data(minireal, train_minireal, tmp_path_factory):
    """minireal's SPair-71k subset with trn (19 pairs) and val (8) splits."""
    root = tmp_path_factory.mktemp("splits") / "SPair-71k"
    splits = train_minireal.make_splits(minireal, root)
    assert len(splits["trn"]) == 19 and len(splits["val"]) == 8
    return root


def _run(args, nproc=1, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{HERE}{os.pathsep}{REPO}")
    if nproc == 1:
        cmd = [sys.executable, str(HERE / "toy_training.py"), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
        cmd += ["--standalone", "--max_restarts=0", str(HERE / "toy_training.py"), *args]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "last.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    _run([str(data), str(out)])
    return out


@pytest.mark.parametrize("kill", ["step:5", "checkpoint:2", "step:23"])
def test_kill_9_then_the_same_command_gives_the_same_weights(data, uninterrupted, tmp_path, kill):
    out = tmp_path / "run"
    killed = _run([str(data), str(out), "--kill", kill], check=False)
    assert killed.returncode in (KILLED, 128 + signal.SIGKILL), killed.stderr[-2000:]
    assert not (out / "last.safetensors").exists()
    _run([str(data), str(out)])
    want, got = _weights(uninterrupted), _weights(out)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    whole = [json.loads(x) for x in (uninterrupted / "train_log.jsonl").read_text().splitlines()]
    assert log == whole  # no step logged twice, none missing, the same losses
    assert not list(out.rglob(".*.tmp"))  # the killed write's temporary file was removed


def test_two_processes_train_what_one_does_with_both_pairs_in_a_batch(data, tmp_path):
    one = tmp_path / "one"
    _run([str(data), str(one), "--batch-size", "2"])
    two = tmp_path / "two"
    _run([str(data), str(two)], nproc=2)
    a, b = _weights(one), _weights(two)
    for k in a:  # DDP averages gradients; one process sums loss / 2: equal to float rounding
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    ra = json.loads((one / "results.json").read_text())
    rb = json.loads((two / "results.json").read_text())
    assert ra["steps"] == rb["steps"] == 18  # 19 pairs: 9 steps of two pairs per epoch, 2 epochs
    assert rb["config"]["processes"] == 2


def test_config_is_recorded_and_another_one_is_refused(data, uninterrupted, tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import toy_training
    finally:
        sys.path.remove(str(HERE))
    from corr.train import train
    from corr.train.loop import TrainConfigMismatchError

    cfg = json.loads((uninterrupted / "config.json").read_text())
    assert cfg["recipe"]["epochs"] == 2 and cfg["recipe"]["projection_dim"] == 128
    assert cfg["overrides"] == {
        "batch_size": 1,
        "epochs": 2,
        "eval_every": 10**6,
        "projection_dim": 128,
    }
    assert cfg["recipe"]["name"] == "geoaware/spair" and cfg["data"]["split"] == "trn"
    assert cfg["matcher"]["extractors"][0]["name"] == "toy-two-scales"
    with pytest.raises(TrainConfigMismatchError, match="another configuration"):
        train(
            toy_training.options(data, epochs=3),
            toy_training.matcher(uninterrupted / "cache"),
            uninterrupted,
            progress=False,
            log=lambda *a: None,
        )


def test_the_command_line_records_every_override(
    data, real_mobilenet, mobilenet_feature_cache, tmp_path, capsys
):
    from corr.train.cli import main

    out = tmp_path / "cli"
    args = [
        "spair", "--root", str(data), "--out", str(out), "--extractor", real_mobilenet,
        "--cache-dir", str(mobilenet_feature_cache), "--recipe", "sd-dino-s", "--limit", "3",
        "--val-limit", "2", "--epochs", "1", "--lr", "0.004", "--projection-dim", "128",
        "--scheduler", "none", "--train-seed", "7", "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["overrides"] == {
        "epochs": 1, "lr": 0.004, "projection_dim": 128, "scheduler": None, "seed": 7,
    }  # fmt: skip
    assert cfg["recipe"]["name"] == "sd-dino-s/spair" and cfg["recipe"]["dense_obj"] is False
    assert cfg["data"]["limit"] == 3 and cfg["data"]["val_split"] == "val"
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 3 and len(res["validations"]) == 1  # one epoch: one validation
    assert (out / "best.safetensors").is_file() and (out / "last.safetensors").is_file()
    assert (out / "validation.csv").read_text().startswith("step,pairs_seen,pck_per_image@0.10")
    printed = capsys.readouterr().out
    assert "trained 3 steps" in printed and "best validation: PCK@0.10" in printed
    # a recipe that does not exist, and data that is not there: refused with the reason
    with pytest.raises(SystemExit):
        main([*args[:8], "--recipe", "nope"])
    assert main(["spair", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err
