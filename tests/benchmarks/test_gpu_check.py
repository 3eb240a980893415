"""The GPU check (benchmarks/gpu/check.sh) on the CPU with tiny models, so that it cannot rot:
every stage runs (or is skipped with its reason), a wheel really goes into the temporary folder
on PYTHONPATH, the CUDA tests are collected and skipped with their reason, the benchmark
figures and goals land in the one JSON report, and a stage that fails or runs out of time is
recorded while the next one still runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "benchmarks" / "gpu" / "check.sh"
PLAN = [
    "install",
    "env",
    "photos",
    "cuda_tests",
    "bench_fp32",
    "bench_bf16",
    "bench_autocast_bf16",
    "cuda_compile_tests",
    "bench_compile",
]


def _load_check():
    spec = importlib.util.spec_from_file_location(
        "_gpu_check", REPO / "benchmarks" / "gpu" / "check.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _probe_wheel(folder: Path) -> None:
    """A one-module pure-Python wheel (``gpucheck_probe``) and the manifest that lists it, with
    an ``if-missing`` entry whose module (json) is importable, so it is not installed."""
    folder.mkdir()
    name = "gpucheck_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(folder / name, "w") as z:
        z.writestr("gpucheck_probe/__init__.py", "VALUE = 42\n")
        z.writestr(
            "gpucheck_probe-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: gpucheck-probe\nVersion: 1.0\n",
        )
        z.writestr(
            "gpucheck_probe-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr("gpucheck_probe-1.0.dist-info/RECORD", "")
    manifest = {
        "python": "3.12",
        "wheels": [
            {"file": name, "name": "gpucheck-probe", "version": "1.0", "module": "gpucheck_probe",
             "install": "always"},
            {"file": name, "name": "json-stand-in", "version": "1.0", "module": "json",
             "install": "if-missing"},
        ],
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_check_runs_on_the_cpu_with_tiny_models(tmp_path):
    """One run (one test, so that test workers do not each start it), checked part by part."""
    run = _run_cpu_check(tmp_path)
    _every_stage_runs_within_its_budget(run)
    _wheels_go_into_the_temporary_folder_on_pythonpath(run)
    _cuda_tests_are_collected_and_skipped_with_their_reason(run)
    _benchmark_figures_and_goals_are_in_the_report(run)


def _run_cpu_check(tmp):
    _probe_wheel(tmp / "wheels")
    out, site = tmp / "out", tmp / "site"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(CHECK), "--device", "cpu", "--tiny", "--budget-s", "150"]
        + ["--out", str(out), "--wheels", str(tmp / "wheels"), "--site-dir", str(site)],
        cwd=tmp,  # the script finds the repository itself
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    seconds = time.monotonic() - t0
    report = json.loads((out / "gpu_check.json").read_text())
    return proc, report, out, site, seconds


def _every_stage_runs_within_its_budget(cpu_run):
    proc, report, out, _, seconds = cpu_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert seconds < 120, seconds
    assert report["complete"] is True and report["plan"] == PLAN
    assert list(report["stages"]) == PLAN
    for name, stage in report["stages"].items():
        assert stage["status"] in ("ok", "skipped"), (name, stage)
        if stage["status"] == "skipped":
            assert stage["reason"], name
        else:
            assert stage["seconds"] <= stage["timeout_s"], name
    # on the CPU everything runs but the bf16 settings (fp32 only by default there); nothing is
    # skipped for lack of time
    skipped = {n: s["reason"] for n, s in report["stages"].items() if s["status"] == "skipped"}
    assert set(skipped) == {"bench_bf16", "bench_autocast_bf16"}, report["stages"]
    assert all(r.startswith("not in --settings fp32") for r in skipped.values()), skipped
    assert report["elapsed_s"] <= report["budget_s"]
    log = (out / "gpu_check.log").read_text()
    assert "stage bench_fp32" in log and "goal: at least 20 images/s" in log
    assert "goal: at least 20 images/s" in proc.stdout[-12000:]  # the summary comes last


def _wheels_go_into_the_temporary_folder_on_pythonpath(cpu_run):
    _, report, _, site, _ = cpu_run
    inst = report["install"]
    assert [w["module"] for w in inst["installed"]] == ["gpucheck_probe"]
    assert [w["module"] for w in inst["not_needed"]] == ["json"]
    assert (site / "gpucheck_probe" / "__init__.py").is_file()
    env = report["env"]
    assert env["pythonpath"].split(os.pathsep)[:2] == [str(site), str(REPO)]
    assert env["imports"]["corr_from_working_tree"] is True
    assert not env["problems"], env["problems"]
    assert env["packages"]["torch"]["version"]


def _cuda_tests_are_collected_and_skipped_with_their_reason(cpu_run):
    _, report, out, _, _ = cpu_run
    for key, xml in (
        ("cuda_tests", "cuda_tests.xml"),
        ("cuda_compile_tests", "cuda_compile_tests.xml"),
    ):
        t = report[key]
        assert (out / xml).is_file() and t["source"] == "junit"
        assert t["total"] > 0 and t["skipped"] == t["total"], t
        assert list(t["skip_reasons"]) and all("CUDA" in r for r in t["skip_reasons"]), t
    ids = {c["id"].split("::")[0] for c in report["cuda_tests"]["tests"]}
    assert "tests/cuda/test_compile.py" not in ids  # its own, later stage
    assert len(ids) >= 5


def _benchmark_figures_and_goals_are_in_the_report(cpu_run):
    _, report, _, _, _ = cpu_run
    assert set(report["bench"]) == {"fp32"}
    bench = report["bench"]["fp32"]["result"]
    assert bench["complete"] and bench["config"]["models"] == ["sd-tiny", "dinov2-tiny"]
    rows = report["throughput"]
    eager = [r for r in rows if r["source"].startswith("bench_speed")]
    assert [(r["setting"], r["batch_size"], r["num_workers"]) for r in eager] == [
        ("fp32", 1, 0),
        ("fp32", 2, 0),
    ]
    assert [r["peak_mb_of"] for r in eager] == ["evaluation phase", "this variant"]
    for r in rows:
        assert r["images_per_s"] > 0 and r["peak_mb"] > 0, r
    assert set(report["pairs_per_s"]) == {"fp32"}
    sp = report["spair"]["best"]
    assert sp["total_s"] == pytest.approx(
        1800 / sp["images_per_s"] + 12234 / sp["pairs_per_s"], rel=1e-3
    )
    comp = report["compile"]
    assert comp["complete"] and comp["backend"] == "eager" and comp["compiled_models"] == ["dino"]
    assert comp["eager"]["images_per_s"] > 0 and comp["compiled"]["images_per_s"] > 0
    assert comp["features_rel_err"] < 1e-2  # tracing changes no arithmetic
    best = max((r for r in eager), key=lambda r: r["images_per_s"])
    assert (comp["setting"], comp["batch_size"]) == (best["setting"], best["batch_size"])
    goals = report["goals"]
    assert len(goals) == 3
    for g in goals:  # measured, but not the target configuration: not judged
        assert g["value"] is not None and g["met"] is None and "not the target" in g["note"]


def test_a_failed_or_stopped_stage_is_recorded_and_the_next_still_runs(tmp_path, monkeypatch):
    check = _load_check()
    monkeypatch.delenv("OUT", raising=False)
    args = check.parse_args(["--device", "cpu", "--tiny", "--out", str(tmp_path / "o")])
    c = check.Check(args)
    py = [sys.executable, "-c"]
    stop = check.Stage(
        "slow", "sleeps", 1.0, 0.1,
        lambda ch, t: check.run_process(py + ["print('started', flush=True); import time; time.sleep(60)"], t, ch.log),
    )  # fmt: skip
    fail = check.Stage(
        "bad", "fails", 30.0, 0.1,
        lambda ch, t: check.run_process(py + ["import sys; print('boom'); sys.exit(3)"], t, ch.log),
    )  # fmt: skip
    skip = check.Stage("late", "needs more time than is left", 30.0, 1e6, lambda ch, t: None)
    t0 = time.monotonic()
    for stage in (stop, fail, skip):
        c.run_stage(stage)
    assert time.monotonic() - t0 < 20
    st = json.loads((tmp_path / "o" / "gpu_check.json").read_text())["stages"]
    assert st["slow"]["status"] == "timeout" and st["slow"]["tail"] == ["started"]
    assert st["bad"]["status"] == "failed" and st["bad"]["returncode"] == 3
    assert st["bad"]["tail"] == ["boom"]
    assert st["late"]["status"] == "skipped" and st["late"]["reason"].startswith("budget:")
    c.log.close()
