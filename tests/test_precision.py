"""``dtype="auto"`` (corr/precision.py): the probe's rule on injected timings, its results kept
per machine, the choice per device, and its record in a run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import corr.precision as precision
from corr import Matcher
from corr.eval.cli import main
from corr.extractors import ModuleExtractor


def _times(fp32: float, bf16: float) -> dict[str, float]:
    return {
        "conv_fp32_ms": fp32,
        "conv_bf16_ms": bf16,
        "matmul_fp32_ms": fp32,
        "matmul_bf16_ms": bf16,
    }


@pytest.mark.parametrize(
    ("fp32", "bf16", "faster"),
    [(120.0, 63.0, True), (12.0, 3800.0, False), (10.0, 8.0, True), (10.0, 8.5, False)],
)
def test_the_probe_picks_bf16_only_when_it_is_faster_by_the_margin(tmp_path, fp32, bf16, faster):
    """bf16 at most 0.8 of fp32's time wins (the 3x3 convolution measured on an AVX512-BF16 CPU:
    63 vs 120 ms); a CPU without bf16 kernels (3.8 s vs 12 ms) or a gain under 1.25x keeps
    fp32."""
    found = precision.probe_bf16(timer=lambda: _times(fp32, bf16), cache=tmp_path / "p.json")
    assert found["bf16_faster"] is faster and found["kept"] is False
    assert found["bf16_share"] == pytest.approx(bf16 / fp32, abs=1e-4)
    dtype, autocast, record = precision.resolve_precision(
        "auto", None, torch.device("cpu"), probe=lambda: found
    )
    assert dtype is None and autocast == ("bf16" if faster else None)
    assert record.chosen == ("bf16" if faster else "fp32") and record.probe is found


def test_probe_results_are_kept_per_machine_and_torch_version(tmp_path, monkeypatch):
    cache = tmp_path / "sub" / "p.json"
    calls = []

    def timer():
        calls.append(1)
        return _times(10.0, 5.0)

    first = precision.probe_bf16(timer=timer, cache=cache)
    again = precision.probe_bf16(timer=timer, cache=cache)
    assert len(calls) == 1 and again["kept"] is True and again["bf16_share"] == 0.5
    assert first["machine"] == precision.machine_key() and torch.__version__ in first["machine"]
    monkeypatch.setattr(precision, "machine_key", lambda: "another CPU|torch 9")
    precision.probe_bf16(timer=timer, cache=cache)  # another machine: probed again
    assert len(calls) == 2 and len(json.loads(cache.read_text())) == 2
    cache.write_text("{not json")  # a damaged file is probed over, not trusted
    assert precision.probe_bf16(timer=timer, cache=cache)["kept"] is False
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:  # a folder that cannot be written costs a probe per run, never an error
        found = precision.probe_bf16(timer=timer, cache=ro / "p.json")
        assert found["kept"] is False and not (ro / "p.json").exists() or os.geteuid() == 0
    finally:
        ro.chmod(0o700)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert precision.probe_file() == tmp_path / "xdg" / "corr" / "dtype_probe.json"


def test_the_real_probe_keeps_fp32_on_a_cpu_without_bf16_instructions(tmp_path):
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not flags or any(f in flags.split() for f in ("avx512_bf16", "amx_bf16")):
        pytest.skip("this CPU has bf16 instructions (or no /proc/cpuinfo): either choice may win")
    found = precision.probe_bf16(cache=tmp_path / "p.json")
    assert found["bf16_faster"] is False and found["conv_bf16_ms"] > found["conv_fp32_ms"]


def test_explicit_choices_pass_and_devices_decide(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.resolve_precision("bf16", None, cpu) == ("bf16", None, None)
    assert precision.resolve_precision(None, "fp16", cpu) == (None, "fp16", None)
    _, autocast, rec = precision.resolve_precision("auto", "fp16", cpu, probe=pytest.fail)
    assert autocast == "fp16" and rec.chosen == "fp32" and "explicitly" in rec.reason
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve_precision("auto", None, torch.device("cuda"))[1] == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.resolve_precision("auto", None, torch.device("cuda"))[:2] == (None, None)
    assert precision.resolve_precision("auto", None, torch.device("mps"))[2].chosen == "fp32"


def _small() -> ModuleExtractor:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, 12, 5, 2, 2))
    return ModuleExtractor(net, input_size=64, name="small")


@pytest.mark.parametrize("faster", [True, False])
def test_matcher_auto_runs_the_extractors_as_chosen(monkeypatch, faster):
    monkeypatch.setattr(precision, "probe_bf16", lambda: {"bf16_faster": faster, "bf16_share": 1})
    m = Matcher([_small()], dtype="auto", device="cpu")
    assert m.precision["chosen"] == ("bf16" if faster else "fp32")
    assert m.extractors[0].autocast == (torch.bfloat16 if faster else None)
    assert ("autocast" in m.config()["extractors"][0]) is faster  # its own feature-cache key
    assert Matcher([_small()], device="cpu").precision is None  # the API's default: as given


def test_eval_records_the_choice_and_resumes_across_probes(minireal, tmp_path, monkeypatch):
    """``--dtype auto`` (the default) on tiny models: config.json records the choice and the
    probe; the same run resumes after a fresh probe (a record, not the run's identity); bf16
    chosen runs the networks under bf16 autocast."""
    monkeypatch.setattr(precision, "probe_bf16", lambda: {"bf16_faster": False, "bf16_share": 9})

    def args(out):
        return [
            "spair", "--root", str(minireal / "SPair-71k"), "--extractor", "tiny",
            "--no-pretrained", "--out", str(out), "--no-progress",
            "--sd-size", "64", "--dino-size", "56",
        ]  # fmt: skip

    out = tmp_path / "run"
    assert main([*args(out), "--limit", "1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["precision"]["requested"] == "auto" and cfg["precision"]["chosen"] == "fp32"
    assert cfg["precision"]["probe"]["bf16_share"] == 9
    assert all("autocast" not in e for e in cfg["matcher"]["extractors"])
    monkeypatch.setattr(precision, "probe_bf16", lambda: {"bf16_faster": False, "bf16_share": 7})
    assert main([*args(out), "--limit", "2"]) == 2  # --limit is the run's identity: refused
    assert main([*args(out), "--limit", "1"]) == 0  # another probe: the same run, resumed
    monkeypatch.setattr(precision, "probe_bf16", lambda: {"bf16_faster": True, "bf16_share": 0.5})
    bf16 = tmp_path / "bf16"
    assert main([*args(bf16), "--limit", "1"]) == 0
    res = json.loads((bf16 / "results.json").read_text())
    assert res["config"]["precision"]["applied_as"] == "autocast"
    assert all(e["autocast"] == "bf16" for e in res["config"]["matcher"]["extractors"])


def _bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    info = Path("/proc/cpuinfo")
    flags = info.read_text().split() if info.exists() else []
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def test_the_real_probe_picks_bf16_on_a_cpu_with_amx(tmp_path):
    """The other half of the rule on real timings: measured 2026-12-05 on a 2-core Xeon with
    AMX (torch 2.13), bf16 took 0.30 of fp32's time, far inside the 0.8 margin. (With
    AVX512-BF16 alone the margin is smaller and not measured here: not asserted.)"""
    info = Path("/proc/cpuinfo")
    if "amx_bf16" not in (info.read_text().split() if info.exists() else []):
        pytest.skip("this CPU has no AMX-BF16")
    found = precision.probe_bf16(cache=tmp_path / "p.json")
    assert found["bf16_faster"] is True and found["bf16_share"] <= precision.BF16_MARGIN


def test_bf16_moves_minireal_pck_within_the_stated_tolerance(minireal, real_mobilenet, tmp_path):
    """What ``--dtype auto`` costs in accuracy where it picks bf16 (the README's figures): the
    first minireal SPair run of the README with the real MobileNetV2 stand-in, fp32 against
    bf16 autocast. Measured: PCK@0.10 per image 30.5 -> 30.8, per keypoint 31.1 -> 31.3,
    PCK@0.05 per image 21.1 -> 21.6, median point shift 0.24 px. Stated tolerance: 2 points of
    PCK at 0.05 and 0.10, median shift under 1 px. Skipped where bf16 is emulated (about 300x
    slower convolutions): there ``auto`` never picks it."""
    if not _bf16_cpu():
        pytest.skip("this CPU has no bf16 instructions: bf16 is emulated and auto keeps fp32")
    root = minireal / "SPair-71k"
    runs = {}
    for name, extra in (("fp32", ["--dtype", "fp32"]), ("bf16", ["--autocast", "bf16"])):
        out = tmp_path / name
        argv = ["spair", "--root", str(root), "--extractor", real_mobilenet, "--out", str(out)]
        assert main([*argv, "--no-progress", "--cache-dir", str(tmp_path / "c"), *extra]) == 0
        runs[name] = json.loads((out / "results.json").read_text())
        preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        runs[name]["_pred"] = {p["pair_id"]: p["pred"] for p in preds if "pred" in p}
    a, b = runs["fp32"], runs["bf16"]
    assert b["config"]["matcher"]["extractors"][0]["autocast"] == "bf16"
    for alpha in ("0.05", "0.10"):
        for avg in ("pck_per_image", "pck_per_keypoint"):
            pa, pb = (100 * r["results"]["overall"][avg][alpha] for r in (a, b))
            assert abs(pa - pb) <= 2.0, (alpha, avg, pa, pb)
    shifts = []
    for pid, pts in a["_pred"].items():
        for p, q in zip(pts, b["_pred"][pid], strict=True):
            if p is not None and q is not None:
                shifts.append(float(torch.tensor(p).sub(torch.tensor(q)).norm()))
    assert shifts and sorted(shifts)[len(shifts) // 2] < 1.0
    assert max(shifts) > 0  # bf16 did change something: the comparison is not fp32 twice
