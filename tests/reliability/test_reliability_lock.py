"""Issue 14.10: two evaluations into the same ``--out`` at once: the second refuses, naming the
owner's pid; a lock left by a killed run is detected as stale and taken over."""

from __future__ import annotations

import json
import os
import time

import pytest
from fault_points import eval_args, start_eval

from corr.eval.cli import main
from corr.eval.lock import LOCK_FILE, RunLock, RunLockedError

# every test here runs the real MobileNetV2 stand-in (skipped, with the reason, without it)
pytestmark = pytest.mark.usefixtures("real_mobilenet")


def test_a_second_run_into_the_same_folder_is_refused_until_the_owner_dies(
    minireal, tmp_path, capsys
):
    out = tmp_path / "run"
    held = tmp_path / "held"
    owner = start_eval(
        "hold", 2, eval_args(minireal, out), env=dict(os.environ, CORR_TEST_HELD=str(held))
    )
    try:
        deadline = time.monotonic() + 120
        while not held.exists():  # the owner is in its second pair, holding the lock
            assert owner.poll() is None, owner.communicate()
            assert time.monotonic() < deadline, "the evaluation never reached its second pair"
            time.sleep(0.1)
        lock = json.loads((out / LOCK_FILE).read_text())
        assert lock["pid"] == owner.pid
        before = (out / "predictions.jsonl").read_bytes()
        assert main(eval_args(minireal, out)) == 2
        err = capsys.readouterr().err
        assert f"in use by another evaluation (process {owner.pid} on" in err
        assert "use another --out" in err and "Traceback" not in err
        assert main(["score", str(out)]) == 2  # re-scoring waits for the owner too
        assert f"process {owner.pid}" in capsys.readouterr().err
        assert (out / "predictions.jsonl").read_bytes() == before  # nothing touched
    finally:
        owner.kill()  # SIGKILL: the owner gets no chance to remove its lock
        owner.communicate()
    assert (out / LOCK_FILE).exists()
    assert main(eval_args(minireal, out)) == 0
    printed = capsys.readouterr().out
    assert f"stale lock of process {owner.pid} on" in printed and "taken over" in printed
    assert "resuming: 1 of 4 pairs already done" in printed
    assert not (out / LOCK_FILE).exists()  # released at the end


def test_lock_is_exclusive_within_one_machine(tmp_path):
    with RunLock(tmp_path, log=lambda s: None):
        with pytest.raises(RunLockedError, match=f"process {os.getpid()} on"):
            with RunLock(tmp_path, log=lambda s: None):
                pass
    with RunLock(tmp_path, log=lambda s: None):  # released: can be taken again
        pass
