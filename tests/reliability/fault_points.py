"""Run ``python -m corr.eval`` with a ``kill -9`` at a chosen moment (used by the kill tests).

Usage: ``python tests/reliability/fault_points.py MOMENT N -- EVAL ARGS...`` where MOMENT is

- ``cache-write``: the N-th feature-cache entry is fully written to its temporary file, then the
  process is killed before the rename (an orphan ``.tmp`` is left, the entry is not);
- ``pair``: killed inside the N-th ``Pair.match`` call (mid-pair);
- ``append``: the N-th predictions line is half written (no newline), then killed;
- ``results``: ``results.json`` is written to its temporary file, then killed before the rename;
- ``hold``: the N-th ``Pair.match`` call writes ``$CORR_TEST_HELD`` and sleeps (the run keeps
  its lock), until the test kills it;
- ``none``: no fault.

``SIGKILL`` is sent by the process to itself: nothing gets to clean up, as with ``kill -9``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MOBILENET = "corr.contrib.mobilenet:mobilenetv2"


def eval_args(minireal: Path, out: Path, *extra: str, limit: int = 4) -> list[str]:
    """``corr.eval`` arguments of the small run the reliability tests use (MobileNetV2)."""
    root = minireal / "SPair-71k"
    return ["spair", "--root", str(root), "--extractor", MOBILENET, "--limit", str(limit),
            "--out", str(out), "--no-progress", *extra]  # fmt: skip


def _command(moment: str, n: int, args: list[str], threads: int, env: dict | None):
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return [sys.executable, str(HERE / "fault_points.py"), moment, str(n), "--", *args], env


def run_eval(
    moment: str, n: int, args: list[str], threads: int = 1, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python -m corr.eval ARGS`` in a subprocess, killed at ``moment`` (see above)."""
    cmd, env = _command(moment, n, args, threads, env)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def start_eval(
    moment: str, n: int, args: list[str], threads: int = 1, env: dict | None = None
) -> subprocess.Popen:
    """The same, started in the background."""
    cmd, env = _command(moment, n, args, threads, env)
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
    )


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(moment: str, n: int) -> None:
    """Patch the moment's function so that its ``n``-th call kills the process."""
    import corr.eval.store as store
    from corr.pair import Pair

    calls = {"n": 0}

    def hit() -> bool:
        calls["n"] += 1
        return calls["n"] == n

    if moment in ("cache-write", "results"):
        suffix = ".safetensors" if moment == "cache-write" else "results.json"
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if str(dst).endswith(suffix) and hit():
                _die()  # the temporary file is complete on disk, the rename never happens
            return real_replace(src, dst, *a, **k)

        os.replace = replace
    elif moment in ("pair", "hold"):
        real_match = Pair.match

        def match(self, *a, **k):
            if hit():
                if moment == "pair":
                    _die()
                with open(os.environ["CORR_TEST_HELD"], "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(600)
            return real_match(self, *a, **k)

        Pair.match = match
    elif moment == "append":
        real_append = store.PredictionStore.append

        def append(self, entry):
            if hit():
                line = json.dumps(entry).encode()
                with open(self.path, "ab") as f:
                    f.write(line[: len(line) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                _die()
            return real_append(self, entry)

        store.PredictionStore.append = append
    elif moment != "none":
        raise SystemExit(f"unknown moment {moment!r}")


if __name__ == "__main__":
    moment, count, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: fault_points.py MOMENT N -- EVAL ARGS"
    install(moment, int(count))
    from corr.eval.cli import main

    sys.exit(main(args))
