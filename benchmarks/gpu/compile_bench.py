#!/usr/bin/env python
"""``torch.compile`` off and on at one setting: images/s of :meth:`corr.Matcher.extract` with
the same models (random weights), eager first, then compiled as ``Matcher(compile=True)``
compiles them (``extractor.extract = torch.compile(extractor.extract)``).

Each mode first extracts one untimed batch (for the compiled models this is the compilation:
its time is reported as ``compile_s``), then every photo from an empty cache at
``--batch-size`` / ``--num-workers``; the photos are cut to a multiple of the batch size so
that no smaller last batch compiles again inside the timed run. The features of both modes
are compared (relative L2 error, fp16 as cached). The JSON (``--out``) is rewritten after each
step. ``--backend eager`` only traces (no code generation): a quick check of the code path.

Reuses the speed benchmark's parts (``benchmarks/speed``): sizes, timers, memory, the matcher.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))  # makes benchmarks/speed importable as `speed`

DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/gpu/compile_bench.py",
        description="torch.compile off / on: images/s of Matcher.extract (random weights).",
    )
    a = p.add_argument
    a("--device", default="cuda")
    a("--dtype", choices=tuple(DTYPE_SHORT), default="float32")
    a("--autocast", choices=("bf16", "fp16"), default=None)
    a("--setting", default=None, help="a name for the setting (recorded only)")
    a("--batch-size", type=int, default=1)
    a("--num-workers", type=int, default=0)
    a("--image-files", nargs="+", required=True)
    a("--backend", default="inductor", help="torch.compile backend (eager: tracing only)")
    a("--mode", default=None, help="torch.compile mode (default: torch's)")
    a("--models", default="sd,dino", help="which extractors to compile: sd, dino or both")
    a("--tiny", action="store_true", help="tiny random models (sd-tiny, dinov2-tiny)")
    a("--sd-size", type=int, default=None)
    a("--dino-size", type=int, default=None)
    a("--threads", type=int, default=None)
    a("--pca-dim", type=int, default=256)
    a("--out", required=True)
    return p


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def rel_err(a, b) -> float:
    """``||a - b|| / ||b||`` in float64."""
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.models or any(x.strip() not in ("sd", "dino") for x in args.models.split(",")):
        parser.error(f"--models: sd, dino or sd,dino, got {args.models!r}")
    import torch
    from speed.matching import new_matcher
    from speed.timing import Memory, Stages, machine_info, progress
    from speed.workloads import resolve_sizes

    import corr.extractors.dino  # noqa: F401 - registers the built-in names
    import corr.extractors.sd  # noqa: F401
    from corr.devices import resolve_device
    from corr.extractors import create_extractor

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sizes = resolve_sizes(
        SimpleNamespace(
            tiny=args.tiny,
            sd_size=args.sd_size,
            dino_size=args.dino_size,
            tile_size=None,
            resolution_scale=1.0,
        )
    )
    batch, workers = args.batch_size, args.num_workers
    paths = [str(p) for p in args.image_files]
    paths = paths[: max(len(paths) // batch, 1) * batch]
    names = ("sd-tiny", "dinov2-tiny") if args.tiny else ("sd15", "dinov2_vitb14")
    dt = DTYPE_SHORT[args.dtype]
    out_path = Path(args.out)
    data: dict[str, Any] = {
        "what": "torch.compile off / on: Matcher.extract from an empty cache, random weights",
        "complete": False,
        "setting": args.setting,
        "models": list(names),
        "sd_size": sizes["sd"],
        "dino_size": sizes["dino"],
        "dtype": args.dtype,
        "autocast": args.autocast,
        "batch_size": batch,
        "num_workers": workers,
        "images": len(paths),
        "backend": args.backend,
        "mode": args.mode,
        "compiled_models": [x.strip() for x in args.models.split(",")],
        "machine": machine_info(device),
        "eager": None,
        "compiled": None,
    }
    _write(out_path, data)
    progress(f"compile_bench: building {names[0]} + {names[1]} ({dt}, random weights)")
    sd = create_extractor(
        names[0], pretrained=False, dtype=dt, input_size=sizes["sd"], device=device
    )
    dino = create_extractor(
        names[1], pretrained=False, dtype=dt, input_size=sizes["dino"], device=device
    )
    for ext in (sd, dino):
        ext.set_autocast(args.autocast)
    bench = SimpleNamespace(
        sd=sd, dino=dino, device=device, args=SimpleNamespace(pca_dim=args.pca_dim)
    )
    stages, memory = Stages(device), Memory(device)

    def measure(mode: str):
        progress(f"{mode}: one untimed batch of {batch}")
        with stages.time(f"warmup_{mode}"):
            new_matcher(bench, batch).extract(paths[:batch], batch_size=batch, progress=False)
        data[mode] = {"warmup_s": round(stages.last(f"warmup_{mode}"), 3)}
        _write(out_path, data)
        progress(f"{mode}: {len(paths)} images, batch {batch}, {workers} workers")
        matcher = new_matcher(bench, len(paths))
        memory.start()
        with stages.time(mode):
            rep = matcher.extract(paths, batch_size=batch, num_workers=workers, progress=False)
        seconds = stages.last(mode)
        data[mode].update(
            images=rep.computed,
            seconds=round(seconds, 4),
            images_per_s=float(f"{rep.computed / seconds:.4g}"),
            peak_mb=round(memory.stop(mode), 1),
        )
        _write(out_path, data)
        return matcher

    eager = measure("eager")
    chosen = {"sd": sd, "dino": dino}
    for ext in (chosen[x.strip()] for x in args.models.split(",")):  # as Matcher(compile=True)
        ext.extract = torch.compile(ext.extract, backend=args.backend, mode=args.mode)
    compiled = measure("compiled")
    data["compile_s"] = data["compiled"]["warmup_s"]
    data["speedup"] = round(data["compiled"]["images_per_s"] / data["eager"]["images_per_s"], 3)
    errs = []
    for fe, fc in zip(eager.features(paths[0]).maps, compiled.features(paths[0]).maps, strict=True):
        errs += [rel_err(fc[k], fe[k]) for k in fe]
    data["features_rel_err"] = float(f"{max(errs):.3g}")
    try:  # informational: how dynamo split the models (an internal counter; may move)
        from torch._dynamo.utils import counters

        breaks = counters["graph_break"]
        data["dynamo"] = {
            "stats": dict(counters["stats"]),
            "graph_breaks": sum(breaks.values()),
            "graph_break_reasons": [str(k)[:200] for k, _ in breaks.most_common(8)],
            "recompiles": dict(counters.get("recompiles", {})),
        }
    except Exception:  # noqa: BLE001
        pass
    data["complete"] = True
    _write(out_path, data)
    print(
        f"torch.compile ({args.backend}) {dt}{'+autocast-' + args.autocast if args.autocast else ''}"
        f", batch {batch}: eager {data['eager']['images_per_s']} images/s, compiled "
        f"{data['compiled']['images_per_s']} images/s (x{data['speedup']}), compile "
        f"{data['compile_s']} s, features rel. error {data['features_rel_err']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
