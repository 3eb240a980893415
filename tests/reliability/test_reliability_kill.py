"""Issue 14.9 and 7c: ``kill -9`` at any moment of ``python -m corr.eval``, then the same command,
gives the figures of an uninterrupted run; torn and damaged prediction lines are reported by line
number, removed from the file by one atomic rewrite (issue 23.11) and recomputed; a killed
write's temporary file is removed on the next start."""

from __future__ import annotations

import json
import re
import signal

import pytest
import torch
from fault_points import eval_args, run_eval

from corr.eval.cli import main

# every test here runs the real MobileNetV2 stand-in (skipped, with the reason, without it)
pytestmark = pytest.mark.usefixtures("real_mobilenet")
KILLED = -signal.SIGKILL


def _figures(out) -> dict:
    res = json.loads((out / "results.json").read_text())
    return {k: res[k] for k in ("results", "n_pairs", "skipped")}


def _temporaries(folder) -> list:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def _in_process(args: list[str]) -> int:
    """``main(args)`` with one thread, as the subprocesses (``OMP_NUM_THREADS=1``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)


def test_kill_9_at_every_moment_then_resume_gives_the_same_figures(minireal, tmp_path, capsys):
    ref = tmp_path / "ref"
    assert _in_process(eval_args(minireal, ref, limit=3)) == 0  # the uninterrupted run
    want = _figures(ref)
    out = tmp_path / "run"
    args = eval_args(minireal, out, limit=3)
    pred = out / "predictions.jsonl"

    # 1. mid-cache-write: the third feature entry is on disk as a temporary file, not renamed
    r = run_eval("cache-write", 3, args)
    assert r.returncode == KILLED, r.stderr
    orphans = _temporaries(out / "cache")
    assert len(orphans) == 1 and orphans[0].endswith(".tmp") and not pred.exists()
    assert (out / "run.lock").exists()  # left behind by the killed process

    # 2. mid-pair: the stale lock is taken over, the orphan removed, one pair saved
    r = run_eval("pair", 2, args)
    assert r.returncode == KILLED, r.stderr
    assert "stale lock of process" in r.stdout
    assert "removed 1 temporary file(s)" in r.stderr
    assert _temporaries(out) == []
    assert len(pred.read_text().splitlines()) == 1

    # 3. mid-append: the second pair of this run is half written (a torn last line)
    r = run_eval("append", 2, args)
    assert r.returncode == KILLED, r.stderr
    data = pred.read_bytes()
    assert data.count(b"\n") == 2 and not data.endswith(b"\n")

    # a damaged middle line (valid JSON, one digit changed): caught by its checksum
    lines = data.split(b"\n")
    entry = json.loads(lines[0])
    first = next(p for p in entry["pred"] if p is not None)
    old = json.dumps(first[0]).encode()
    assert lines[0].count(old) == 1
    lines[0] = lines[0].replace(old, json.dumps(first[0] + 1).encode())
    json.loads(lines[0])  # still a valid record to a JSON reader
    pred.write_bytes(b"\n".join(lines))

    # 4. mid-results-write: every pair is done, results.json is only a temporary file
    r = run_eval("results", 1, args)
    assert r.returncode == KILLED, r.stderr
    assert re.search(r"predictions\.jsonl:3: torn last line .*recomputed", r.stdout), r.stdout
    assert re.search(r"predictions\.jsonl:1: damaged .*recomputed", r.stdout), r.stdout
    assert not (out / "results.json").exists()
    assert [n for n in _temporaries(out) if n.startswith(".results.json.")]
    # the run repaired the file once, atomically: the good line kept, the bad ones removed,
    # the two recomputed pairs appended after it
    repaired = pred.read_bytes().split(b"\n")
    assert repaired[0] == lines[1] and lines[0] not in repaired and len(repaired) == 3 + 1

    # 5. the same command finishes (here in this process): the uninterrupted run's figures
    capsys.readouterr()
    assert _in_process(args) == 0
    assert _figures(out) == want
    assert _temporaries(out) == [] and not (out / "run.lock").exists()
    # nothing is reported again: the file holds the 3 pairs, each once
    printed = capsys.readouterr().out
    assert "damaged" not in printed and "torn" not in printed, printed
    assert pred.read_bytes().split(b"\n") == repaired
