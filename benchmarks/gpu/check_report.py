"""The GPU check's report: the wheels' manifest, test results, throughput rows from the
benchmark runs, the SPair-71k extrapolation, the goals, and the printed summary.

Standard library only (the check itself imports neither torch nor corr).
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

#: The SPair-71k test split (as benchmarks/speed/workloads.py): 12,234 pairs over 1,800 images.
SPAIR_IMAGES, SPAIR_PAIRS = 1800, 12234
GOAL_IMAGES_PER_S = 20.0
GOAL_SPAIR_S = 300.0
GOAL_PEAK_BYTES = 12e9  # "12 GB"
LABELS = {"fp32": "fp32", "bf16": "bf16 weights", "autocast_bf16": "fp32 + autocast bf16"}


# ---------------------------------------------------------------------------------- wheels


def read_manifest(folder: Path) -> list[dict[str, Any]]:
    """The wheels to install: ``manifest.json`` of ``prepare.sh`` (file, name, version, module,
    install = ``always`` | ``if-missing``); without one, every ``*.whl`` of the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    manifest = folder / "manifest.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text(encoding="utf-8"))["wheels"]
        missing = [e["file"] for e in entries if not (folder / e["file"]).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{manifest} lists wheels that are not there: {', '.join(missing)}; run "
                "`bash benchmarks/gpu/prepare.sh` again"
            )
        return entries
    return [
        {"file": p.name, "name": p.name.split("-")[0], "install": "always"}
        for p in sorted(folder.glob("*.whl"))
    ]


def unpack_wheel(wheel: Path, site: Path) -> None:
    """Install a pure-Python wheel without pip: its files, ``*.data/{purelib,platlib}`` moved
    to the top (the rest of ``*.data`` is not needed to import it)."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    for data in site.glob("*.data"):
        for sub in ("purelib", "platlib"):
            if (data / sub).is_dir():
                for item in (data / sub).iterdir():
                    shutil.move(str(item), site / item.name)
        shutil.rmtree(data, ignore_errors=True)


# ---------------------------------------------------------------------------------- tests

_RESULT_LINE = re.compile(r"^(\S+::\S+)\s+(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def read_pytest(xml: Path, lines: list[str], status: str) -> dict[str, Any]:
    """Counts and per-test outcomes from pytest's JUnit XML or, when the run was stopped
    before writing it, from its ``-v`` lines."""
    tests: list[dict[str, Any]] = []
    source = "junit"
    if xml.is_file():
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError:
            root = None
    else:
        root = None
    if root is not None:
        for case in root.iter("testcase"):
            module = case.get("classname", "").replace(".", "/")
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                child = case.find(tag)
                if child is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = (child.get("message") or child.text or "").strip()
                    break
            tests.append(
                {
                    "id": f"{module}.py::{case.get('name')}",
                    "outcome": outcome,
                    "seconds": round(float(case.get("time") or 0), 2),
                    "message": message[:400],
                }
            )
    else:
        source = "log (no JUnit XML: the run was stopped)"
        for line in lines:
            m = _RESULT_LINE.match(line.strip())
            if m:
                tests.append({"id": m.group(1), "outcome": m.group(2).lower(), "message": ""})
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped")}
    reasons: dict[str, int] = {}
    for t in tests:
        key = {"xpass": "passed", "xfail": "skipped"}.get(t["outcome"], t["outcome"])
        counts[key] = counts.get(key, 0) + 1
        if t["outcome"] == "skipped" and t["message"]:
            reasons[t["message"]] = reasons.get(t["message"], 0) + 1
    return {
        "status": status,
        "source": source,
        **counts,
        "total": len(tests),
        "skip_reasons": reasons,
        "tests": tests,
    }


# ---------------------------------------------------------------------------------- figures


def throughput_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """images/s and peak memory per (precision, batch size, workers), from every benchmark run:
    its extraction variants, or (a run stopped earlier) its evaluation's stage 1; plus the
    compile run's eager and compiled figures."""
    rows = []
    for setting, entry in report.get("bench", {}).items():
        res = entry.get("result") or {}
        base = {
            "setting": setting,
            "label": LABELS.get(setting, setting),
            "dtype": entry.get("dtype"),
            "autocast": entry.get("autocast"),
            "compile": False,
        }
        variants = (res.get("extraction") or {}).get("variants")
        if variants:
            for v in variants:
                rows.append(
                    {
                        **base,
                        "batch_size": v["batch_size"],
                        "num_workers": v["num_workers"],
                        "images": v["images"],
                        "images_per_s": v["images_per_s"],
                        "peak_mb": v.get("peak_mb"),
                        "peak_mb_of": v.get("peak_mb_of"),
                        "source": f"bench_speed extraction ({v['measured_in']})",
                    }
                )
        elif "eval_extract_rate" in res.get("stages", {}):
            ev = res.get("evaluation", {}).get("extract", {})
            rows.append(
                {
                    **base,
                    "batch_size": ev.get("batch_size", 1),
                    "num_workers": res.get("config", {}).get("num_workers", 0),
                    "images": ev.get("computed"),
                    "images_per_s": res["stages"]["eval_extract_rate"]["value"],
                    "peak_mb": (res.get("memory") or {}).get("phases_mb", {}).get("evaluation"),
                    "peak_mb_of": "evaluation phase",
                    "source": "bench_speed evaluation stage 1 (the run stopped before its "
                    "extraction variants)",
                }
            )
    comp = report.get("compile") or {}
    for mode in ("eager", "compiled"):
        fig = comp.get(mode)
        if fig and fig.get("images_per_s"):
            setting = comp.get("setting", "?")
            rows.append(
                {
                    "setting": setting,
                    "label": LABELS.get(setting, setting)
                    + (" + compile" if mode == "compiled" else ""),
                    "dtype": comp.get("dtype"),
                    "autocast": comp.get("autocast"),
                    "compile": mode == "compiled",
                    "batch_size": comp.get("batch_size"),
                    "num_workers": comp.get("num_workers"),
                    "images": fig.get("images"),
                    "images_per_s": fig["images_per_s"],
                    "peak_mb": fig.get("peak_mb"),
                    "peak_mb_of": "this run",
                    "source": f"compile_bench ({mode}, backend {comp.get('backend')})",
                }
            )
    return rows


def best_row(report: dict[str, Any], with_compile: bool = False) -> dict[str, Any] | None:
    """The fastest row (images/s); compiled rows only with ``with_compile``."""
    rows = [r for r in throughput_rows(report) if with_compile or not r["compile"]]
    return max(rows, key=lambda r: r["images_per_s"]) if rows else None


def pairs_per_s(report: dict[str, Any]) -> dict[str, float]:
    out = {}
    for setting, entry in report.get("bench", {}).items():
        fig = (entry.get("result") or {}).get("stages", {}).get("match_cached_rate")
        if fig:
            out[setting] = fig["value"]
    return out


def spair(report: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The SPair-71k test workload extrapolated per precision: 1,800 images at the setting's
    best images/s (any batch size, compiled or not) + 12,234 pairs at its cached pairs/s."""
    per: dict[str, Any] = {}
    for setting, pps in pairs_per_s(report).items():
        mine = [r for r in rows if r["setting"] == setting]
        if not mine or not pps:
            continue
        top = max(mine, key=lambda r: r["images_per_s"])
        extract_s, match_s = SPAIR_IMAGES / top["images_per_s"], SPAIR_PAIRS / pps
        per[setting] = {
            "images_per_s": top["images_per_s"],
            "images_per_s_from": _row_name(top),
            "pairs_per_s": pps,
            "extract_s": round(extract_s, 1),
            "match_s": round(match_s, 1),
            "total_s": round(extract_s + match_s, 1),
        }
    best = min(per.items(), key=lambda kv: kv[1]["total_s"]) if per else None
    return {
        "what": "extrapolated from the measured rates, not a measured run",
        "workload": {"name": "SPair-71k test", "images": SPAIR_IMAGES, "pairs": SPAIR_PAIRS},
        "per_setting": per,
        "best": {"setting": best[0], **best[1]} if best else None,
    }


def goals(report: dict[str, Any], rows: list[dict[str, Any]], sp: dict[str, Any]) -> list[dict]:
    """The issue's goals, each with its value and whether it is met (None: not measured, or
    not the target configuration: CPU or ``--tiny``)."""
    opts = report.get("options", {})
    target = opts.get("device") == "cuda" and not opts.get("tiny")
    note = None if target else "not the target configuration (CPU or --tiny): code path only"
    top = max(rows, key=lambda r: r["images_per_s"]) if rows else None
    out = [
        {
            "goal": f"at least {GOAL_IMAGES_PER_S:.0f} images/s, SD 1.5 at 960 + DINOv2-B at "
            "840, one H100-class GPU",
            "value": top["images_per_s"] if top else None,
            "unit": "images/s",
            "from": _row_name(top) if top else None,
        }
    ]
    out[0]["met"] = None if top is None else top["images_per_s"] >= GOAL_IMAGES_PER_S
    best = sp.get("best")
    out.append(
        {
            "goal": f"SPair-71k test workload ({SPAIR_IMAGES:,} images, {SPAIR_PAIRS:,} pairs) "
            "in under 5 minutes (extrapolated)",
            "value": round(best["total_s"] / 60, 2) if best else None,
            "unit": "min",
            "from": f"{LABELS.get(best['setting'], best['setting'])}: "
            f"{best['images_per_s_from']}, {best['pairs_per_s']} pairs/s"
            if best
            else None,
            "met": None if best is None else best["total_s"] < GOAL_SPAIR_S,
        }
    )
    b1 = {}
    for r in rows:
        if r["batch_size"] == 1 and r.get("peak_mb") is not None and not r["compile"]:
            b1[r["setting"]] = max(b1.get(r["setting"], 0.0), r["peak_mb"])
    worst = max(b1.values()) if b1 else None
    out.append(
        {
            "goal": "peak GPU memory under 12 GB (12e9 bytes) at batch 1, every precision",
            "value": round(worst * 2**20 / 1e9, 2) if worst is not None else None,
            "unit": "GB",
            "per_setting_gb": {k: round(v * 2**20 / 1e9, 2) for k, v in b1.items()},
            "from": "torch.cuda.max_memory_allocated; the largest over the precisions",
            "met": None if worst is None else worst * 2**20 < GOAL_PEAK_BYTES,
        }
    )
    for g in out:
        if not target:
            g["met"], g["note"] = None, note
    return out


def derive(report: dict[str, Any]) -> None:
    """Recompute the derived sections (called before every write of the report)."""
    rows = throughput_rows(report)
    sp = spair(report, rows)
    report["throughput"] = rows
    report["pairs_per_s"] = pairs_per_s(report)
    report["spair"] = sp
    report["goals"] = goals(report, rows, sp)


def _row_name(r: dict[str, Any]) -> str:
    return f"{r['label']}, batch {r['batch_size']}, {r['num_workers']} workers"


# ---------------------------------------------------------------------------------- summary


def summary(report: dict[str, Any]) -> str:
    """The compact text printed last (the GPU tool returns the end of the output)."""
    opts = report.get("options", {})
    env = report.get("env") or {}
    lines = ["", "=" * 100]
    lines.append(
        f"corr GPU check: {env.get('header', 'environment not read')}"
        f"{' [tiny models]' if opts.get('tiny') else ''}"
    )
    lines.append(
        f"{report.get('elapsed_s', 0):.0f} s of a {report.get('budget_s', 0):.0f} s budget; "
        f"complete: {report.get('complete')}"
    )
    stage_bits = []
    for name, s in report.get("stages", {}).items():
        bit = f"{name} {s['status']}"
        if "seconds" in s:
            bit += f" {s['seconds']:.0f}s"
        stage_bits.append(bit)
    lines.append("stages: " + " | ".join(stage_bits))
    for name, s in report.get("stages", {}).items():
        if s["status"] == "skipped" and s.get("reason") != "not selected (--stages)":
            lines.append(f"  {name} skipped: {s['reason']}")
        elif s["status"] in ("failed", "timeout"):
            lines.append(f"  {name} {s['status']}; last lines:")
            lines += [f"    {t[:160]}" for t in s.get("tail", [])[-6:]]
    for key in ("cuda_tests", "cuda_compile_tests"):
        t = report.get(key)
        if not t:
            continue
        lines.append(
            f"{key}: {t['passed']} passed, {t['failed']} failed, {t['error']} errors, "
            f"{t['skipped']} skipped ({t['source']})"
        )
        for case in t["tests"]:
            if case["outcome"] in ("failed", "error"):
                lines.append(f"  {case['outcome'].upper()} {case['id']}: {case['message'][:200]}")
        for reason, n in t["skip_reasons"].items():
            lines.append(f"  skipped x{n}: {reason[:160]}")
    rows = report.get("throughput") or []
    if rows:
        lines.append("images/s (peak memory), Matcher.extract from an empty cache, random weights:")
        for r in rows:
            peak = f"{r['peak_mb'] / 1024:.1f} GiB" if r.get("peak_mb") else "?"
            lines.append(
                f"  {r['label']:<30} batch {r['batch_size']:>2}, {r['num_workers']} workers: "
                f"{r['images_per_s']:>8.3f} images/s ({peak})"
            )
    pps = report.get("pairs_per_s") or {}
    if pps:
        lines.append(
            "cached pairs/s: " + ", ".join(f"{LABELS.get(k, k)} {v:.2f}" for k, v in pps.items())
        )
    comp = report.get("compile")
    if comp:
        lines.append(
            f"torch.compile ({comp.get('backend')}), {LABELS.get(comp.get('setting'), '?')}, "
            f"batch {comp.get('batch_size')}: eager {_get(comp, 'eager', 'images_per_s')}, "
            f"compiled {_get(comp, 'compiled', 'images_per_s')} images/s, speed-up "
            f"{comp.get('speedup')}, compile {comp.get('compile_s')} s, features rel. error "
            f"{comp.get('features_rel_err')}"
        )
    best = (report.get("spair") or {}).get("best")
    if best:
        lines.append(
            f"SPair-71k test extrapolated: {best['total_s'] / 60:.1f} min "
            f"({LABELS.get(best['setting'], best['setting'])}: {best['extract_s']:.0f} s "
            f"extraction at {best['images_per_s']} images/s + {best['match_s']:.0f} s matching "
            f"at {best['pairs_per_s']} pairs/s)"
        )
    for g in report.get("goals") or []:
        met = {True: "MET", False: "NOT MET", None: "n/a"}[g["met"]]
        value = "not measured" if g["value"] is None else f"{g['value']} {g['unit']}"
        lines.append(
            f"goal: {g['goal']}: {value} -> {met}" + (f" ({g['note']})" if g.get("note") else "")
        )
    lines.append(f"report: {opts.get('out')}/gpu_check.json; log: {opts.get('out')}/gpu_check.log")
    lines.append("=" * 100)
    return "\n".join(lines)


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d
