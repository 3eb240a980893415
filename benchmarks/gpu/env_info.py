#!/usr/bin/env python
"""The GPU check's environment stage: device, driver, torch / CUDA / cuDNN, the packages corr
needs (version and the folder each is imported from), and whether corr's models import.

Prints a short header and writes everything to ``--json``. Exits 1 when the device asked for
is not usable or corr's model code does not import, so the check records the stage as failed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: distribution name -> import name
PACKAGES = {
    "torch": "torch",
    "diffusers": "diffusers",
    "timm": "timm",
    "transformers": "transformers",
    "huggingface-hub": "huggingface_hub",
    "safetensors": "safetensors",
    "numpy": "numpy",
    "pillow": "PIL",
    "opencv-python-headless": "cv2",
    "scikit-learn": "sklearn",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "deep-sort-realtime": "deep_sort_realtime",
    "xformers": "xformers",
    "triton": "triton",
    "pytest": "pytest",
    "pytest-timeout": "pytest_timeout",
}
#: corr modules that must import for the check (they pull in diffusers, timm, the wheel's model)
IMPORTS = ("corr", "corr.extractors.sd", "corr.extractors.dino", "corr.contrib.mobilenet")


def nvidia_smi() -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"error": "nvidia-smi not found"}
    fields = (
        "name,driver_version,memory.total,memory.used,temperature.gpu,power.draw,power.limit,"
        "clocks.sm,clocks.max.sm,pstate,compute_mode"
    )
    info: dict[str, Any] = {}
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        info["gpus"] = [
            dict(zip(fields.split(","), (v.strip() for v in line.split(",")), strict=False))
            for line in out.stdout.strip().splitlines()
        ]
        plain = subprocess.run([exe], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"CUDA Version:\s*([\d.]+)", plain)
        info["driver_cuda"] = m.group(1) if m else None
    except (OSError, subprocess.SubprocessError) as err:
        info["error"] = f"{type(err).__name__}: {err}"
    return info


def packages() -> dict[str, Any]:
    out = {}
    for dist, module in PACKAGES.items():
        try:
            version = md.version(dist)
        except md.PackageNotFoundError:
            version = None
        spec = importlib.util.find_spec(module)
        origin = None
        if spec is not None and spec.origin:
            origin = str(Path(spec.origin).parent)
        out[dist] = {"version": version, "from": origin}
    return out


def torch_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count(),
        "threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": p.name,
            "total_memory_mib": round(p.total_memory / 2**20),
            "capability": f"{p.major}.{p.minor}",
            "multiprocessors": p.multi_processor_count,
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
        sdp = {}
        for name in ("flash", "mem_efficient", "math", "cudnn"):
            fn = getattr(torch.backends.cuda, f"{name}_sdp_enabled", None)
            sdp[name] = fn() if fn else None
        avail = getattr(torch.backends.cuda, "is_flash_attention_available", None)
        sdp["flash_available"] = avail() if avail else None
        info["sdpa_enabled"] = sdp
        # a short sanity pass: fails here, clearly, if the GPU cannot run a kernel
        a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            b = a @ a
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / 10
        info["bf16_matmul_tflops"] = round(2 * 4096**3 / dt / 1e12, 1)
        free, total = torch.cuda.mem_get_info()
        info["gpu"]["free_mib"], info["gpu"]["total_mib"] = free // 2**20, total // 2**20
        info["sanity_finite"] = bool(torch.isfinite(b).all())
    return info


def imports() -> dict[str, Any]:
    out = {}
    for name in IMPORTS:
        try:
            module = importlib.import_module(name)
            out[name] = {"ok": True, "file": getattr(module, "__file__", None)}
        except Exception as err:  # noqa: BLE001 - reported
            out[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:500]}
    corr_file = out["corr"].get("file") or ""
    out["corr_from_working_tree"] = bool(corr_file) and Path(corr_file).resolve().is_relative_to(
        REPO
    )
    try:
        from corr.contrib.mobilenet import weights_path

        out["mobilenet_weights"] = str(weights_path())
    except Exception as err:  # noqa: BLE001 - reported; only the tests that use it need it
        out["mobilenet_weights"] = f"missing: {type(err).__name__}: {err}"[:300]
    return out


def header(info: dict[str, Any]) -> str:
    t = info.get("torch", {})
    smi = info.get("nvidia_smi", {})
    gpu = t.get("gpu")
    if gpu:
        first = (smi.get("gpus") or [{}])[0]
        dev = (
            f"{gpu['name']} ({gpu['total_memory_mib']} MiB, sm_{gpu['capability'].replace('.', '')}"
            f", {gpu['multiprocessors']} SMs), driver {first.get('driver_version', '?')} "
            f"(CUDA {smi.get('driver_cuda', '?')})"
        )
    else:
        dev = f"{info['device']} ({info.get('cpu', '?')}, {os.cpu_count()} CPUs)"
    p = info.get("packages", {})
    return (
        f"{dev}; torch {t.get('version', '?')} (CUDA {t.get('cuda')}, cuDNN {t.get('cudnn')}), "
        f"diffusers {p.get('diffusers', {}).get('version')}, timm {p.get('timm', {}).get('version')}, "
        f"Python {platform.python_version()}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    info: dict[str, Any] = {
        "device": args.device,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "environment": {
            k: os.environ.get(k)
            for k in (
                "CUDA_VISIBLE_DEVICES",
                "PYTORCH_CUDA_ALLOC_CONF",
                "OMP_NUM_THREADS",
                "TORCHINDUCTOR_CACHE_DIR",
                "HF_HUB_OFFLINE",
            )
        },
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), ""
            )
    except OSError:
        info["cpu"] = platform.processor()
    try:  # DataLoader workers hand batches over through shared memory
        st = os.statvfs("/dev/shm")
        info["dev_shm_gib"] = round(st.f_frsize * st.f_blocks / 2**30, 1)
    except OSError:
        info["dev_shm_gib"] = None
    info["nvidia_smi"] = nvidia_smi() if args.device == "cuda" else None
    info["packages"] = packages()
    problems = []
    try:
        info["torch"] = torch_info(args.device)
        if args.device == "cuda" and not info["torch"]["cuda_available"]:
            problems.append("torch.cuda.is_available() is False")
    except Exception as err:  # noqa: BLE001 - reported
        info["torch"] = {"error": f"{type(err).__name__}: {err}"}
        problems.append(info["torch"]["error"])
    info["imports"] = imports()
    problems += [
        f"import {n}: {v['error']}"
        for n, v in info["imports"].items()
        if isinstance(v, dict) and not v["ok"]
    ]
    if not info["imports"]["corr_from_working_tree"]:
        problems.append(f"corr is not imported from the working tree {REPO}")
    info["problems"] = problems
    info["header"] = header(info)
    Path(args.json).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    print(info["header"])
    print(
        "packages: " + ", ".join(f"{k} {v['version'] or '-'}" for k, v in info["packages"].items())
    )
    for p in problems:
        print(f"PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
