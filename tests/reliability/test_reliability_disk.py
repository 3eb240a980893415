"""Issue 14.11 (and 7b): a full disk or a read-only output folder stops the run with one line
naming the file and its folder, keeps everything already written intact, and the same command
resumes. Tested on a real size-limited, then read-only, tmpfs where this machine lets a test
mount one (``unshare -rm``), and always by injecting ``OSError(ENOSPC)`` / ``OSError(EROFS)``."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fault_points import HERE, REPO, eval_args

from corr.eval.cli import main

# every test here runs the real MobileNetV2 stand-in (skipped, with the reason, without it)
pytestmark = pytest.mark.usefixtures("real_mobilenet")


@pytest.mark.parametrize(
    "code, hint",
    [(errno.ENOSPC, "free space on that disk"), (errno.EROFS, "make the folder writable")],
)
def test_write_error_while_appending_predictions(
    minireal, tmp_path, monkeypatch, capsys, code, hint
):
    out = tmp_path / "run"
    real_fsync = os.fsync
    seen = {"n": 0}

    def fsync(fd: int) -> None:  # the disk "fills up" after the second prediction line
        if os.readlink(f"/proc/self/fd/{fd}").endswith("predictions.jsonl"):
            seen["n"] += 1
            if seen["n"] > 2:
                raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(eval_args(minireal, out)) == 1
    err = capsys.readouterr().err.strip()
    pred = out / "predictions.jsonl"
    assert "Traceback" not in err and err.count("error:") == 1
    err = err.splitlines()[-1]  # one line
    assert err.startswith("error: ")
    assert f"cannot write {pred}: {os.strerror(code)} (folder {out}); {hint}" in err
    assert "run the same command to resume" in err
    # the line whose fsync failed was taken back: two whole lines remain
    data = pred.read_bytes()
    assert data.count(b"\n") == 2 and data.endswith(b"\n")
    assert json.loads((out / "config.json").read_text())["run"]["limit"] == 4
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(eval_args(minireal, out)) == 0
    assert "resuming: 2 of 4 pairs already done" in capsys.readouterr().out
    assert pred.read_bytes().startswith(data)  # (same figures after resuming: test_..._kill)
    assert json.loads((out / "results.json").read_text())["results"]["overall"]["n_pairs"] == 4


def _can_mount_tmpfs(tmp_path) -> bool:
    if shutil.which("unshare") is None:
        return False
    (tmp_path / "probe").mkdir()
    probe = f"mount -t tmpfs -o size=64k tmpfs {tmp_path / 'probe'}"
    r = subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True, timeout=30)
    return r.returncode == 0


SCRIPT = """
mount -t tmpfs -o size=12k tmpfs "$DISK"
run() { "$PY" "$FAULTS" none 0 -- "$@" >"$LOGS/$N.out" 2>"$LOGS/$N.err"; echo $? >"$LOGS/$N.rc"; }
N=full run "$@"; cp -r "$DISK/run" "$LOGS/after-full"
mount -o remount,ro "$DISK"
N=readonly run "$@"; cp -r "$DISK/run" "$LOGS/after-readonly"
"""


def test_real_full_and_read_only_tmpfs(minireal, tmp_path):
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs here (unshare -rm); the injected errors test this")
    disk, logs = tmp_path / "disk", tmp_path / "logs"
    disk.mkdir()
    logs.mkdir()
    out = disk / "run"
    # the features go to the normal disk; the 12 KiB output folder fills up with predictions
    args = eval_args(minireal, out, "--cache-dir", str(tmp_path / "cache"), limit=12)
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
        DISK=str(disk),
        LOGS=str(logs),
        PY=sys.executable,
        FAULTS=str(HERE / "fault_points.py"),
    )
    subprocess.run(
        ["unshare", "-rm", "sh", "-c", SCRIPT, "sh", *args], env=env, check=True, timeout=300
    )

    def outcome(name: str) -> tuple[int, str, str]:
        return (
            int((logs / f"{name}.rc").read_text()),
            (logs / f"{name}.out").read_text(),
            (logs / f"{name}.err").read_text().strip(),
        )

    rc, _, err = outcome("full")
    pred = "predictions.jsonl"
    assert rc == 1 and "Traceback" not in err, err
    assert f"cannot write {out / pred}: No space left on device (folder {out})" in err
    kept = (logs / "after-full" / pred).read_bytes()
    lines = kept.split(b"\n")
    assert kept.endswith(b"\n") and 0 < len(lines) - 1 < 12  # whole lines only, none torn
    assert all(json.loads(x)["pair_id"] for x in lines[:-1])

    # (resuming after a full disk is tested with the injected error above)
    rc, _, err = outcome("readonly")
    assert rc == 1 and "Traceback" not in err, err
    assert f"cannot write {out / 'run.lock'}: Read-only file system (folder {out})" in err
    assert "make the folder writable" in err
    before, after = logs / "after-full", logs / "after-readonly"
    assert sorted(p.name for p in after.iterdir()) == sorted(p.name for p in before.iterdir())
    for name in (pred, "config.json"):  # nothing changed
        assert (after / name).read_bytes() == (before / name).read_bytes()


def _demo():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_demo_kt_disk", REPO / "demos" / "keypoint_transfer.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEMO = [sys.executable, str(REPO / "demos" / "keypoint_transfer.py")]


def test_demo_into_a_read_only_folder_is_one_line_without_traceback(tmp_path, monkeypatch, capsys):
    """Issue 23.10: the demo's WriteError is its whole output (exit 1), for the figure and for
    the warp; on a real read-only tmpfs where one can be mounted, else injected (EROFS)."""
    import tempfile

    import corr.io

    folder = tmp_path / "ro"
    base = ["--extractor", "corr.contrib.mobilenet:mobilenetv2", "--device", "cpu"]
    cases = {
        "figure": [*base, "--out", str(folder / "fig.png")],
        "warp": [*base, "--out", str(tmp_path / "fig.png"), "--warp", str(folder / "w.png")],
    }
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir) == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(corr.io.tempfile, "mkstemp", mkstemp)
    demo = _demo()
    for name, argv in cases.items():
        assert demo.main(argv) == 1, name
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, (name, err)
        assert err.startswith(f"error: cannot write {folder / Path(argv[-1]).name}: "), err
        assert "Read-only file system" in err and "make the folder writable" in err
    monkeypatch.undo()
    if not _can_mount_tmpfs(tmp_path):
        return
    folder.mkdir(exist_ok=True)
    script = f'mount -t tmpfs -o size=64k,ro tmpfs "{folder}" && exec "$@"'
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", *DEMO, *cases["figure"]],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)),
        timeout=300,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == (
        f"error: cannot write {folder / 'fig.png'}: Read-only file system (folder {folder}); "
        "make the folder writable, or write elsewhere; everything written before is kept"
    )
