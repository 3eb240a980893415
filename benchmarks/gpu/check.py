#!/usr/bin/env python
"""The GPU check in one command (``bash benchmarks/gpu/check.sh``): installs the wheels it was
given into a temporary folder, then runs each stage in its own process, with a time limit taken
from what is left of ``--budget-s``, and rewrites one JSON report after every stage.

Stages, most important first (``--stages`` picks some; the rest are recorded as not selected):

1. ``install``: the wheels of ``--wheels`` (``manifest.json`` from ``prepare.sh``: each
   ``always``, or ``if-missing`` when its module cannot be imported here) into a temporary
   folder; later stages run with ``PYTHONPATH=<that folder>:<repository>``;
2. ``env``: device, driver, torch / CUDA / cuDNN, package versions and where they come from;
3. ``photos``: distinct real photos for the benchmark (bundled photos, then mirrors, crops);
4. ``cuda_tests``: ``pytest -m cuda tests/cuda`` (without the compile tests);
5. ``bench_fp32``, ``bench_bf16``, ``bench_autocast_bf16``: ``benchmarks/bench_speed.py``
   (random weights) per precision: images/s and peak memory per batch size, cached pairs/s,
   the SPair-71k extrapolation;
6. ``cuda_compile_tests``: ``tests/cuda/test_compile.py``;
7. ``bench_compile``: ``torch.compile`` on / off at the fastest setting of step 5.

Only the standard library is used here: the stages import torch and corr. A stage that fails
or runs out of time is recorded with the tail of its output and the next one still runs. The
report (``gpu_check.json``), the log (``gpu_check.log``) and the test results (JUnit XML) go
to ``--out`` (default ``$OUT``, else ``out/gpu_check``); a summary is printed last.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import check_report  # noqa: E402  (benchmarks/gpu/check_report.py)

DEFAULT_WHEELS = HERE / "wheels"
REPORT_NAME = "gpu_check.json"
LOG_NAME = "gpu_check.log"
RESERVE_S = 8.0  # kept back for the summary at the end

#: name -> (dtype, autocast) of the benchmark's precision settings, in the order they run
SETTINGS = {
    "fp32": ("float32", None),
    "bf16": ("bfloat16", None),
    "autocast_bf16": ("float32", "bf16"),
}


# ---------------------------------------------------------------------------------- the log


class Log:
    """Everything printed goes to stdout and to the log file, line by line, flushed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("a", encoding="utf-8", errors="replace")
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def line(self, text: str) -> None:
        with self.lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            self.file.write(text + "\n")
            self.file.flush()

    def note(self, text: str) -> None:
        self.line(f"[gpu-check +{time.monotonic() - self.t0:6.1f} s] {text}")

    def close(self) -> None:
        self.file.close()


# ---------------------------------------------------------------------------------- processes


@dataclass
class Outcome:
    """How one process ended: ``ok``, ``failed`` or ``timeout``, with its output."""

    status: str
    returncode: int | None
    seconds: float
    lines: list[str]

    def tail(self, n: int = 30) -> list[str]:
        return self.lines[-n:]


def run_process(
    command: list[str],
    timeout: float,
    log: Log,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> Outcome:
    """Run ``command`` in its own process group, its output copied to ``log`` as it comes; at
    ``timeout`` seconds the whole group (DataLoader workers too) is ended: TERM, then KILL."""
    t0 = time.monotonic()
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
    except OSError as err:
        return Outcome("failed", None, time.monotonic() - t0, [f"could not start: {err}"])

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.rstrip("\n")
            lines.append(text)
            log.line("  | " + text)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=max(timeout, 0.1))
        status = "ok" if rc == 0 else "failed"
    except subprocess.TimeoutExpired:
        _end_group(proc)
        rc, status = proc.returncode, "timeout"
    reader.join(timeout=10)
    return Outcome(status, rc, time.monotonic() - t0, lines)


def _end_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)  # the group this check started (start_new_session)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------------- the check


@dataclass
class Stage:
    """One step of the check: ``run(check, timeout)`` returns an :class:`Outcome`, or a string
    (the reason it was skipped). ``cap_s`` bounds its time; it does not start with less than
    ``min_s`` seconds left."""

    name: str
    what: str
    cap_s: float
    min_s: float
    run: Callable[[Check, float], Outcome | str]


class Check:
    """Options, folders, the environment of the stages, and the report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.time()
        started = args.started_at if args.started_at else self.t0
        self.deadline = started + args.budget_s
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = Log(self.out / LOG_NAME)
        self.work = Path(args.work_dir or tempfile.mkdtemp(prefix="corr-gpu-work-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.site = Path(args.site_dir or tempfile.mkdtemp(prefix="corr-gpu-site-")).resolve()
        self.site.mkdir(parents=True, exist_ok=True)
        self.python = sys.executable
        self.photos: list[str] = []
        self.report: dict[str, Any] = {
            "what": "corr GPU check (benchmarks/gpu/check.sh): CUDA tests and the speed "
            "benchmark with random weights in one command",
            "schema": 1,
            "complete": False,
            "started_at": _iso(started),
            "updated_at": _iso(time.time()),
            "budget_s": args.budget_s,
            "elapsed_s": 0.0,
            "options": {
                "device": args.device,
                "tiny": args.tiny,
                "budget_s": args.budget_s,
                "out": str(self.out),
                "wheels": str(args.wheels),
                "site_dir": str(self.site),
                "work_dir": str(self.work),
                "images": args.images,
                "batches": args.batches,
                "workers": args.workers,
                "pairs": args.pairs,
                "settings": args.settings,
                "python": self.python,
            },
            "plan": [],
            "stages": {},
        }

    # ---- environment and time
    def env(self) -> dict[str, str]:
        """The stages' environment: the installed wheels and the working tree first on the
        path, unbuffered output, no hub access (the GPU machine has no network)."""
        env = dict(os.environ)
        paths = [str(self.site), str(REPO)]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.update(
            PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
            HF_HUB_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
        )
        if self.args.device == "cpu":
            env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def left(self) -> float:
        return self.deadline - time.time()

    def write(self, complete: bool = False) -> None:
        self.report["complete"] = complete
        self.report["updated_at"] = _iso(time.time())
        self.report["elapsed_s"] = round(time.time() - self.t0, 1)
        check_report.derive(self.report)
        write_json(self.out / REPORT_NAME, self.report)

    # ---- running the plan
    def run_stage(self, stage: Stage) -> None:
        rec: dict[str, Any] = {"what": stage.what}
        self.report["stages"][stage.name] = rec
        selected = self.args.stages
        left = self.left() - RESERVE_S
        if selected and stage.name not in selected:
            rec.update(status="skipped", reason="not selected (--stages)")
        elif left < stage.min_s:
            rec.update(
                status="skipped",
                reason=f"budget: {max(left, 0):.0f} s left of --budget-s "
                f"{self.args.budget_s:.0f}, this stage needs at least {stage.min_s:.0f} s",
            )
        else:
            timeout = min(stage.cap_s, left)
            self.log.note(f"stage {stage.name}: {stage.what} (time limit {timeout:.0f} s)")
            try:
                got = stage.run(self, timeout)
            except Exception as err:  # noqa: BLE001 - recorded, the next stage still runs
                got = Outcome("failed", None, 0.0, [f"{type(err).__name__}: {err}"])
            if isinstance(got, str):
                rec.update(status="skipped", reason=got)
            else:
                rec.update(
                    status=got.status,
                    seconds=round(got.seconds, 1),
                    timeout_s=round(timeout, 1),
                    returncode=got.returncode,
                )
                if got.status != "ok":
                    rec["tail"] = got.tail()
        if rec["status"] == "skipped":
            self.log.note(f"stage {stage.name}: skipped ({rec['reason']})")
        else:
            self.log.note(f"stage {stage.name}: {rec['status']} after {rec['seconds']} s")
        self.write()

    def python_stage(self, command: list[str], timeout: float) -> Outcome:
        return run_process([self.python, *command], timeout, self.log, env=self.env())


# ---------------------------------------------------------------------------------- stages


def stage_install(check: Check, timeout: float) -> Outcome | str:
    """Install the wheels into ``check.site`` (never into this Python)."""
    folder = Path(check.args.wheels)
    plan = check_report.read_manifest(folder)
    info: dict[str, Any] = {"site_dir": str(check.site), "installed": [], "not_needed": []}
    check.report["install"] = info
    if not plan:
        return (
            f"no wheels in {folder} (run `bash benchmarks/gpu/prepare.sh` where the package "
            "index is reachable); the packages installed here are used"
        )
    todo = []
    for entry in plan:
        module = entry.get("module")
        if entry.get("install") == "if-missing" and module and importlib.util.find_spec(module):
            info["not_needed"].append({**entry, "reason": f"{module} is importable here"})
        else:
            todo.append(entry)
    if not todo:
        return "every wheel's module is importable here already"
    files = [str(folder / e["file"]) for e in todo]
    pip = [check.python, "-m", "pip"]
    if run_process([*pip, "--version"], 60, check.log).status == "ok":
        out = run_process(
            [*pip, "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]
            + ["--disable-pip-version-check", "--target", str(check.site), *files],
            timeout,
            check.log,
        )
        info["method"] = "pip install --no-index --no-deps --target"
    else:  # no pip: a pure-Python wheel is a zip of the files to put on the path
        t0 = time.monotonic()
        for f in files:
            check_report.unpack_wheel(Path(f), check.site)
        out = Outcome("ok", 0, time.monotonic() - t0, [f"unpacked {len(files)} wheels"])
        info["method"] = "unzipped (no pip here)"
    if out.status == "ok":
        info["installed"] = todo
        sys.path.insert(0, str(check.site))  # later checks of importability see them
        importlib.invalidate_caches()
    return out


def stage_env(check: Check, timeout: float) -> Outcome:
    path = check.work / "env.json"
    out = check.python_stage(
        [str(HERE / "env_info.py"), "--device", check.args.device, "--json", str(path)], timeout
    )
    check.report["env"] = _read_json(path)
    return out


def stage_photos(check: Check, timeout: float) -> Outcome:
    path = check.work / "photos.json"
    out = check.python_stage(
        [str(HERE / "photos.py"), "--n", str(check.args.images)]
        + ["--out", str(check.work / "photos"), "--json", str(path)],
        timeout,
    )
    data = _read_json(path) or {}
    check.photos = [p["path"] for p in data.get("photos", [])]
    check.report["photos"] = data
    return out


def _pytest_stage(name: str, select: list[str]) -> Callable[[Check, float], Outcome]:
    def run(check: Check, timeout: float) -> Outcome:
        xml = check.out / f"{name}.xml"
        command = ["-m", "pytest", "-p", "no:cacheprovider", "-v", "-rs", "-m", "cuda", *select]
        command += [f"--junitxml={xml}", "-o", "junit_family=xunit2"]
        command += ["-o", f"faulthandler_timeout={max(int(timeout * 0.6), 10)}"]
        if importlib.util.find_spec("pytest_timeout"):  # a hung test fails, the rest still run
            command += [f"--timeout={max(int(timeout * 0.6), 10)}"]
        out = check.python_stage(command, timeout)
        check.report[name] = check_report.read_pytest(xml, out.lines, out.status)
        return out

    return run


def _settings_variants(args: argparse.Namespace) -> list[str]:
    out = []
    for b in args.batches:
        if b == 1:
            out.append("1x0")
        if b > 1 or args.workers > 0:
            out.append(f"{b}x{args.workers}")
    return list(dict.fromkeys(out))


def _size_options(args: argparse.Namespace) -> list[str]:
    if args.tiny:
        return ["--tiny", "--sd-size", "128", "--dino-size", "112", "--threads", "1"]
    return []


def _bench_stage(setting: str) -> Callable[[Check, float], Outcome | str]:
    dtype, autocast = SETTINGS[setting]

    def run(check: Check, timeout: float) -> Outcome | str:
        args = check.args
        if setting not in args.settings:
            return f"not in --settings {','.join(args.settings)}" + (
                " (on a CPU the check measures fp32 only by default)"
                if args.device == "cpu"
                else ""
            )
        if len(check.photos) < 2:
            return "no photos (the photos stage did not give at least 2)"
        path = check.work / f"bench_{setting}.json"
        command = [str(REPO / "benchmarks" / "bench_speed.py"), "--device", args.device]
        command += ["--dtype", dtype] + (["--autocast", autocast] if autocast else [])
        command += ["--image-files", *check.photos, "--images", str(len(check.photos))]
        command += ["--pairs", str(args.pairs), "--points", str(args.points)]
        command += ["--batch-size", "1", "--num-workers", "0", "--no-flip", "--no-reference"]
        command += ["--extract-variants", *_settings_variants(args), "--out", str(path)]
        command += _size_options(args)
        out = check.python_stage(command, timeout)
        bench = _read_json(path)
        if bench is not None:
            check.report.setdefault("bench", {})[setting] = {
                "dtype": dtype,
                "autocast": autocast,
                "status": out.status,
                "result": bench,
            }
        return out

    return run


def stage_bench_compile(check: Check, timeout: float) -> Outcome | str:
    if len(check.photos) < 2:
        return "no photos (the photos stage did not give at least 2)"
    args = check.args
    best = check_report.best_row(check.report)
    if best is None:  # nothing measured: the setting most likely to be the fastest
        setting, batch = "bf16", max(args.batches)
        workers = args.workers if batch > 1 else 0
        why = "no earlier throughput figure: bf16 weights at the largest batch"
    else:
        setting, batch, workers = best["setting"], best["batch_size"], best["num_workers"]
        why = f"the fastest setting measured ({best['images_per_s']} images/s)"
    dtype, autocast = SETTINGS[setting]
    path = check.work / "compile.json"
    command = [str(HERE / "compile_bench.py"), "--device", args.device, "--dtype", dtype]
    command += (["--autocast", autocast] if autocast else []) + ["--setting", setting]
    command += ["--batch-size", str(batch), "--num-workers", str(workers)]
    command += ["--image-files", *check.photos, "--out", str(path)]
    command += _size_options(args)
    if args.tiny:  # dynamo traces DINOv2 only, no code generation: a code-path check only
        command += ["--backend", "eager", "--models", "dino"]
    out = check.python_stage(command, timeout)
    data = _read_json(path)
    if data is not None:
        data["chosen_because"] = why
        check.report["compile"] = data
    return out


def plan() -> list[Stage]:
    """The stages in order, each with its time cap and the least time it needs (GPU sizes)."""
    return [
        Stage("install", "wheels into a temporary folder on PYTHONPATH", 120, 5, stage_install),
        Stage("env", "device, driver, versions, imports", 120, 10, stage_env),
        Stage("photos", "distinct real photos for the benchmark", 60, 5, stage_photos),
        Stage(
            "cuda_tests",
            "pytest -m cuda tests/cuda (without the compile tests)",
            240,
            30,
            _pytest_stage("cuda_tests", ["tests/cuda", "--ignore=tests/cuda/test_compile.py"]),
        ),
        Stage("bench_fp32", "bench_speed, fp32", 200, 60, _bench_stage("fp32")),
        Stage("bench_bf16", "bench_speed, bf16 weights", 150, 45, _bench_stage("bf16")),
        Stage(
            "bench_autocast_bf16",
            "bench_speed, fp32 weights under bf16 autocast",
            150,
            45,
            _bench_stage("autocast_bf16"),
        ),
        Stage(
            "cuda_compile_tests",
            "pytest -m cuda tests/cuda/test_compile.py",
            180,
            30,
            _pytest_stage("cuda_compile_tests", ["tests/cuda/test_compile.py"]),
        ),
        Stage(
            "bench_compile",
            "torch.compile off / on at the fastest setting",
            600,
            60,
            stage_bench_compile,
        ),
    ]


# ---------------------------------------------------------------------------------- helpers


def write_json(path: Path, obj: Any) -> None:
    """Readers see the old file or the new one: a temporary file, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected batch sizes like 1,8,16, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bash benchmarks/gpu/check.sh",
        description="CUDA tests and the speed benchmark (random weights) in one command, "
        "within --budget-s; one JSON report and the log under --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
    a("--device", choices=("cuda", "cpu"), default="cuda")
    a("--tiny", action="store_true", help="tiny random models at toy sizes (the CPU self-test)")
    a("--budget-s", type=float, default=540.0, help="seconds for everything, from the start")
    a("--out", default=None, help="report folder (default: $OUT, else out/gpu_check)")
    a("--wheels", default=str(DEFAULT_WHEELS), help="wheels from prepare.sh")
    a("--site-dir", default=None, help="where the wheels go (default: a new temporary folder)")
    a("--work-dir", default=None, help="scratch folder (default: a new temporary folder)")
    a("--images", type=int, default=None, help="photos per benchmark run (default 64; tiny 4)")
    a("--batches", type=_int_list, default=None, help="batch sizes (default 1,8,16; tiny 1,2)")
    a("--workers", type=int, default=None, help="DataLoader workers (default 4; tiny 0)")
    a("--pairs", type=int, default=None, help="pairs matched from the cache (default 24; tiny 3)")
    a("--points", type=int, default=None, help="query points per pair (default 20; tiny 10)")
    a(
        "--settings",
        default=None,
        help=f"precisions to benchmark, of {','.join(SETTINGS)} (default: all; CPU: fp32)",
    )
    a("--stages", default=None, help="comma-separated stage names to run (default: all)")
    a("--started-at", type=float, default=None, help=argparse.SUPPRESS)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    tiny = args.tiny
    defaults = {
        "images": 4 if tiny else 64,
        "batches": [1, 2] if tiny else [1, 8, 16],
        "workers": 0 if tiny else 4,
        "pairs": 3 if tiny else 24,
        "points": 10 if tiny else 20,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = os.environ.get("OUT") or str(REPO / "out" / "gpu_check")
    args.wheels = str(Path(args.wheels).resolve())
    settings = args.settings or ("fp32" if args.device == "cpu" else ",".join(SETTINGS))
    args.settings = [x.strip() for x in settings.split(",") if x.strip()]
    bad = [x for x in args.settings if x not in SETTINGS]
    if bad or not args.settings:
        raise SystemExit(f"--settings: unknown {', '.join(bad)}; settings: {', '.join(SETTINGS)}")
    names = [s.name for s in plan()]
    if args.stages:
        args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        unknown = [s for s in args.stages if s not in names]
        if unknown:
            raise SystemExit(f"--stages: unknown {', '.join(unknown)}; stages: {', '.join(names)}")
    if args.images < 2:
        raise SystemExit("--images must be at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check = Check(args)
    stages = plan()
    check.report["plan"] = [s.name for s in stages]
    check.log.note(
        f"corr GPU check: device {args.device}{', tiny models' if args.tiny else ''}, budget "
        f"{args.budget_s:.0f} s, report {check.out / REPORT_NAME}"
    )
    check.write()
    try:
        for stage in stages:
            check.run_stage(stage)
        check.write(complete=True)
    finally:
        summary = check_report.summary(check.report)
        for line in summary.splitlines():
            check.log.line(line)
        check.log.close()
        if not args.work_dir:
            shutil.rmtree(check.work, ignore_errors=True)
        if not args.site_dir:
            shutil.rmtree(check.site, ignore_errors=True)
    failed = [n for n, s in check.report["stages"].items() if s["status"] in ("failed", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
