"""An audit hook proves that a run over hostile data sets opens nothing outside their folders.

A subprocess (audit hooks cannot be removed) installs ``sys.addaudithook`` recording the path of
every ``open``, ``os.listdir`` and ``os.scandir`` event, then, job by job: loads each hostile
data set of hostile_data.py (a name leading outside in one field of one file, a bait file
there), checks it with ``corr.datasets check``, downloads and reads a SPair-71k archive whose
links chain outside, and runs ``corr.eval`` with the tiny random models on a SPair-71k copy
whose pair list names a pair file outside. Every path opened during a job must resolve
(realpath) inside that job's own folders or the allow-list: the Python installation and the
virtual environment (``sys.prefix``, ``sys.base_prefix``, ``sys.exec_prefix``,
``sys.base_exec_prefix``), the ``corr`` package, the subprocess's own ``/proc/self/...``
(torch reads ``/proc/self/maps`` when imported) and ``/dev/null`` (torch 2.15's import opens
it; it holds nothing to read); and the folders on ``sys.path`` may be listed
(``os.listdir``, by the import system), not opened. Nothing else: not the test's temporary
folder, where the baits are, nor the working folder. With the fix every hostile job stops at
the refused name, ``corr.eval`` included (exit 2, the error naming the list, line and field).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from hostile_data import CASES, make_case
from minireal_subset import copy_spair

import corr

SCRIPT = r"""
import json, os, sys

spec = json.loads(open(sys.argv[1]).read())
import corr.datasets, corr.datasets.check, corr.datasets.download, corr.datasets.ap10k  # noqa

recording = {"job": None}
events = []


def hook(event, args):
    job = recording["job"]
    if job is None or event not in ("open", "os.listdir", "os.scandir"):
        return
    path = args[0] if args else None
    if path is None and event != "open":
        path = "."  # listdir()/scandir() of the working folder
    if isinstance(path, int) or path is None:
        return  # an open file descriptor: its path was recorded when it was opened
    path = os.fsdecode(path)
    if not os.path.isabs(path):  # shutil.rmtree opens each entry relative to its folder's fd
        frame = sys._getframe(1)
        while frame is not None and "fullname" not in frame.f_locals:
            frame = frame.f_back
        if frame is not None and frame.f_code.co_filename.endswith("shutil.py"):
            path = frame.f_locals["fullname"]
    events.append([job, event, os.path.abspath(path), os.path.realpath(path)])


sys.addaudithook(hook)


def run(job):
    kind = job["kind"]
    if kind == "load":
        if job["dataset"] == "ap10k-raw":
            corr.datasets.ap10k.build_ap10k(job["root"], job["out"])
        else:
            corr.datasets.load_pairs(job["dataset"], job["root"])
        return "loaded"
    if kind == "check":
        report = corr.datasets.check.check_dataset(
            job["dataset"], job["root"], splits=["test"], progress=False
        )
        return report.format()
    if kind == "download":
        res = corr.datasets.download.download(
            "spair", job["root"], origins=[job["archive"]], progress=False, log=lambda m: None
        )
        corr.datasets.check_images(corr.datasets.load_spair(res.folder))
        return "downloaded and read"
    if kind == "eval":
        from corr.eval.cli import main

        return f"exit {main(job['argv'])}"
    raise ValueError(kind)


results = {}
for job in spec["jobs"]:
    recording["job"] = job["id"]
    try:
        results[job["id"]] = run(job)
    except Exception as err:
        results[job["id"]] = f"{type(err).__name__}: {err}"
    recording["job"] = None
print(json.dumps({"results": results, "events": events, "pid": os.getpid(), "path": sys.path}))
"""


def _chained_spair_archive(minireal: Path, base: Path) -> Path:
    """SPair-71k.tar.gz whose first fly image is the end of a chain of links leading outside."""
    folder = base / "src" / "SPair-71k"
    copy_spair(minireal, folder)
    victim = sorted((folder / "JPEGImages" / "fly").glob("*.jpg"))[0]
    rel = victim.relative_to(folder).as_posix()
    (base / "secret.jpg").write_bytes(victim.read_bytes())  # where the chain leads
    victim.unlink()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname="SPair-71k")
        chain = [("r", "."), ("up", "r/.."), ("up2", "up/.."), (rel, "../../up2/secret.jpg")]
        for name, target in chain:
            m = tarfile.TarInfo(f"SPair-71k/{name}")
            m.type, m.linkname = tarfile.SYMTYPE, target
            tf.addfile(m)
    archive = base / "SPair-71k.tar.gz"
    archive.write_bytes(buf.getvalue())
    return archive


def _allowed_everywhere() -> list[str]:
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return [os.path.realpath(p) for p in prefixes] + [os.path.realpath(Path(corr.__file__).parent)]


def _inside(real: str, folders: list[str]) -> bool:
    return any(real == f or real.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _own_process_state(real: str, pid: int) -> bool:
    """The subprocess's own /proc entries (torch reads /proc/self/maps when imported)."""
    return real.startswith(("/proc/self/", f"/proc/{pid}/"))


def test_hostile_data_sets_open_nothing_outside_their_folders(
    minireal: Path, tmp_path: Path
) -> None:
    jobs, expect = [], {}
    for name in CASES:
        case = make_case(name, minireal, tmp_path / name)
        out = tmp_path / name / "out"
        mine = [case.root] + ([out] if case.dataset == "ap10k-raw" else [])
        jobs.append({"id": f"load {name}", "kind": "load", "dataset": case.dataset,
                     "root": str(case.root), "out": str(out), "mine": [str(p) for p in mine]})  # fmt: skip
        expect[f"load {name}"] = "DataPathError"
        if case.dataset != "ap10k-raw":
            jobs.append({"id": f"check {name}", "kind": "check", "dataset": case.dataset,
                         "root": str(case.root), "mine": [str(case.root)]})  # fmt: skip
            expect[f"check {name}"] = "outside the data set folder"
    archive = _chained_spair_archive(minireal, tmp_path / "chain")
    data = tmp_path / "chain" / "data"
    jobs.append({"id": "download chained archive", "kind": "download", "archive": str(archive),
                 "root": str(data), "mine": [str(data), str(archive)]})  # fmt: skip
    expect["download chained archive"] = "UnsafeArchiveError"
    # corr.eval with the tiny random models on a SPair-71k copy listing a pair file outside
    case = make_case("spair-layout-line", minireal, tmp_path / "eval")
    out = tmp_path / "eval" / "run"
    argv = ["spair", "--root", str(case.root), "--extractor", "tiny", "--no-pretrained",
            "--limit", "2", "--out", str(out), "--no-progress", "--timestep", "50"]  # fmt: skip
    jobs.append({"id": "eval", "kind": "eval", "argv": argv, "mine": [str(case.root), str(out)]})
    expect["eval"] = "exit 2"

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"jobs": jobs}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cwd = tmp_path / "cwd"  # -P: the working folder is not on sys.path (imports do not list it)
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-P", "-c", SCRIPT, str(spec)], capture_output=True, text=True, env=env,
        timeout=600, cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.splitlines()[-1])
    for job_id, want in expect.items():
        assert want in got["results"][job_id], (job_id, got["results"][job_id])
    assert "field 'pair stem'" in proc.stderr  # eval's error names the list, line and field

    everywhere = _allowed_everywhere()
    mine = {job["id"]: [os.path.realpath(p) for p in job["mine"]] for job in jobs}
    imports = {os.path.realpath(p) for p in got["path"] if p}  # the import system lists these

    def allowed(job: str, event: str, real: str) -> bool:
        if event == "os.listdir" and real in imports:
            return True
        if real == os.devnull:
            return True
        return _inside(real, mine[job] + everywhere) or _own_process_state(real, got["pid"])

    outside = [e for e in got["events"] if not allowed(e[0], e[1], e[3])]
    assert not outside, "\n".join(map(str, outside[:20]))
    # it recorded: the loads, the eval, and the unpacking (the staging folder, removed again)
    assert {job for job, *_ in got["events"]} >= {"load spair-category", "eval"}
    staged = [p for job, _, p, _ in got["events"] if job.startswith("download") and "unpack-" in p]
    assert staged, "the download job recorded no unpacking"
