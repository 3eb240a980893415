"""Options, and the order of the stages of ``benchmarks/bench_speed.py``.

Stages, each followed by a rewrite of the partial results (JSON + CSV):

1. ``single_pair``: model build, then one pair through ``Matcher`` stage by stage (cold cache);
2. ``evaluation``: the two-stage evaluation, ``--pairs`` pairs over ``--images`` photos;
3. ``ab_rounds``: ours vs the reference's way, per pair, in interleaved A/B rounds;
4. ``flip``: the mirrored sources extracted, then the pairs matched with flip alignment;
5. ``extraction``: images/s of ``Matcher.extract`` for every ``--extract-variants`` entry;
6. the SPair-71k extrapolation and peak memory, then the complete results and the table.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import extraction, interleave, matching, reference, single_pair, startup
from .report import WEIGHTS_NOTE, Report
from .timing import Memory, Stages, loadavg, machine_info, progress
from .workloads import (
    REPO,
    default_images,
    draw_pairs,
    put_extrapolation,
    query_grid,
    resolve_sizes,
    spair_workload,
)

DEFAULT_OUT = REPO / "out" / "bench_speed.json"
DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass
class Bench:
    """What every stage needs: options, models, inputs, timers and the report."""

    args: argparse.Namespace
    device: torch.device
    sizes: dict[str, int]
    names: tuple[str, str]
    images: list[Path]
    pairs: list[tuple[int, int]]
    queries: dict[int, Any]
    stages: Stages
    memory: Memory
    report: Report
    sd: Any = None
    dino: Any = None
    grid: int = 0
    workload: dict[str, Any] = field(default_factory=dict)
    pair_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dtype_short(self) -> str:
        return DTYPE_SHORT[self.args.dtype]

    @property
    def precision(self) -> str:
        """The dtype for labels: ``fp32``, or ``fp32+autocast-bf16`` under autocast."""
        amp = getattr(self.args, "autocast", None)
        return self.dtype_short + (f"+autocast-{amp}" if amp else "")

    @property
    def ctx_sd(self) -> str:
        return f"SD {self.sizes['sd']} px, {self.precision}, {self.device.type}"

    @property
    def ctx_dino(self) -> str:
        return f"DINO {self.sizes['dino']} px, {self.precision}, {self.device.type}"

    @property
    def ctx_pair(self) -> str:
        s = self.sizes
        return f"SD {s['sd']} / DINO {s['dino']} px, {self.precision}, {self.device.type}"

    @property
    def ctx_match(self) -> str:
        return (
            f"grid {self.grid}x{self.grid}, co-PCA fp32, {self.device.type}, "
            f"{self.pair_threads} thread(s)"
        )

    @property
    def ctx_ref(self) -> str:
        s = self.sizes
        return (
            f"SD {s['sd']} px as 4 tiles of {s['tile']} / DINO {s['dino']} px, fp32, "
            f"{self.device.type}"
        )

    @property
    def ctx_short(self) -> str:
        s = self.sizes
        return (
            f"SD {s['sd']} / DINO {s['dino']} px, ours {self.precision}, reference fp32, "
            f"{self.device.type}"
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/bench_speed.py",
        description="Time the SD+DINO pipeline (random weights): one pair stage by stage, the "
        "two-stage evaluation (images/s, pairs/s), the reference's way of working in "
        "interleaved A/B rounds, and the SPair-71k test workload extrapolated.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
    a(
        "--resolution-scale",
        type=float,
        default=1.0,
        help="scale of the reference sizes (SD 960, DINO 840; tiny: 192, 168)",
    )
    a(
        "--sd-size",
        type=int,
        default=None,
        help="SD letterbox side (multiple of 64); overrides the scale",
    )
    a(
        "--dino-size",
        type=int,
        default=None,
        help="DINOv2 letterbox side (multiple of 14); overrides the scale",
    )
    a(
        "--tile-size",
        type=int,
        default=None,
        help="reference tile side (default: 512 x SD size / 960)",
    )
    a(
        "--dtype",
        choices=("auto", *DTYPE_SHORT),
        default="auto",
        help="our models' dtype (the reference is always float32); auto: bf16 autocast where "
        "corr.precision's probe finds it faster, else float32",
    )
    a(
        "--autocast",
        choices=("bf16", "fp16"),
        default=None,
        help="run our models under torch.autocast in this dtype (weights keep --dtype)",
    )
    a("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1")
    a("--pairs", type=int, default=6, help="P: pairs in the evaluation")
    a("--images", type=int, default=4, help="I: images the pairs are drawn over")
    a("--points", type=int, default=20, help="query points per pair")
    a(
        "--batch-size",
        type=int,
        default=1,
        help="Matcher.extract batch size of the evaluation and of ours in the A/B rounds",
    )
    a(
        "--num-workers",
        type=int,
        default=0,
        help="Matcher.extract DataLoader workers of the evaluation and of the A/B rounds",
    )
    a(
        "--extract-variants",
        nargs="*",
        default=["1x0", "4x0", "4x2"],
        help="BATCHxWORKERS settings timed for images/s (none: skip the stage)",
    )
    a(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the mirrored sources' extraction and matching with flip alignment",
    )
    a(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the reference's way of working (interleaved with ours)",
    )
    a(
        "--reference-pairs",
        type=int,
        default=2,
        help="A/B rounds: pairs timed the reference's way, each next to ours on the same pair",
    )
    a(
        "--image-files",
        nargs="+",
        default=None,
        help="photos to use (default: the bundled samples corr/samples + shared/data/minireal)",
    )
    a("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    a(
        "--pair-threads",
        type=int,
        default=None,
        help="torch threads of the cached pair stage (default: corr.eval's, 1)",
    )
    a(
        "--spair-root",
        default=None,
        help="SPair-71k root whose Layout/large/test.txt gives the workload's distinct images "
        "(default: data/SPair-71k, else shared/data/SPair-71k; without it: 1,800, an upper "
        "bound)",
    )
    a(
        "--startup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time `python -c 'import corr'`, `from corr import Matcher` and `corr.eval --help`",
    )
    a(
        "--warmup",
        type=int,
        default=None,
        help="untimed warm-up passes per model (default: 1 on CUDA, 0 on CPU)",
    )
    a("--pca-dim", type=int, default=256)
    a("--tiny", action="store_true", help="tiny random models (sd-tiny, dinov2-tiny) for tests")
    a("--out", default=str(DEFAULT_OUT), help="JSON output (the CSV goes beside it)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from corr.logs import setup_cli_logging

    setup_cli_logging()
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run(args, argv)
    finally:
        torch.set_num_threads(threads)


def _inputs(args) -> tuple[list[Path], list[tuple[int, int]]]:
    files = [Path(p) for p in args.image_files] if args.image_files else default_images()
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise SystemExit(f"image files not found: {', '.join(missing)}")
    if len(files) < 2:
        raise SystemExit(
            "need at least 2 photos (--image-files, or corr/samples and shared/data/minireal)"
        )
    n_images = min(args.images, len(files))
    if n_images < 2:
        raise SystemExit("--images must be at least 2")
    return files[:n_images], draw_pairs(n_images, args.pairs)


def run(args, argv) -> int:
    from corr.extractors import create_extractor
    from corr.io import load_image

    load_before = loadavg()
    from corr.devices import resolve_device

    device = resolve_device(args.device or "auto")
    from corr.devices import pair_stage_threads
    from corr.precision import resolve_precision

    # --dtype auto: corr.precision's choice (bf16 as autocast, or float32)
    requested = args.dtype
    _, autocast, chosen = resolve_precision(args.dtype, args.autocast, device)
    if chosen is not None:
        args.dtype, args.autocast = "float32", autocast
    sizes = resolve_sizes(args)
    warmup = args.warmup if args.warmup is not None else (1 if device.type == "cuda" else 0)
    for v in args.extract_variants:
        extraction.parse_variant(v)  # fail before the models are built
    images, pairs = _inputs(args)
    names = ("sd-tiny", "dinov2-tiny") if args.tiny else ("sd15", "dinov2_vitb14")
    queries = {}
    for i, path in enumerate(images):
        arr = load_image(path)
        queries[i] = query_grid(arr.shape[1], arr.shape[0], args.points)
    config = {
        "models": list(names),
        "weights": "random",
        "sd_size": sizes["sd"],
        "dino_size": sizes["dino"],
        "reference_tile": sizes["tile"],
        "resolution_scale": args.resolution_scale,
        "dtype": args.dtype,
        "dtype_requested": requested,
        "dtype_auto": None if chosen is None else chosen.as_dict(),
        "autocast": args.autocast,
        "reference_dtype": "float32",
        "copca_dtype": "float32",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "pair_threads": pair_stage_threads(args.pair_threads),
        "spair_workload": spair_workload(args.spair_root),
        "points_per_pair": args.points,
        "pairs": len(pairs),
        "images": [str(p) for p in images],
        "pair_indices": pairs,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "extract_variants": list(args.extract_variants),
        "flip": args.flip,
        "reference_pairs": args.reference_pairs if args.reference else None,
        "pca_dim": args.pca_dim,
        "warmup": warmup,
    }
    command = "python benchmarks/bench_speed.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    machine = {**machine_info(device), "loadavg_1_5_15_before": load_before}
    report = Report(args.out, command, config, machine)
    stages, memory = Stages(device), Memory(device)
    bench = Bench(args, device, sizes, names, images, pairs, queries, stages, memory, report)
    bench.workload, bench.pair_threads = config["spair_workload"], config["pair_threads"]
    dt = bench.dtype_short
    print(f"bench_speed: {names[0]} + {names[1]}, {WEIGHTS_NOTE}", flush=True)
    print(
        f"  device {device}, {bench.precision} (--dtype {requested}; reference fp32), SD "
        f"{sizes['sd']} px, DINO {sizes['dino']} px, {torch.get_num_threads()} torch threads "
        f"({bench.pair_threads} in the pair stage), load average {load_before}; photos: "
        f"{', '.join(p.name for p in images)}; progress on stderr",
        flush=True,
    )
    if args.startup:
        startup.run_startup(bench)
    for module in ("corr.extractors.sd", "corr.extractors.dino"):
        importlib.import_module(module)  # registers the built-in names

    # 1. build + one pair stage by stage
    progress(f"building {names[0]} and {names[1]} ({dt}, random weights)")
    memory.start()
    with stages.time("build_sd"):
        bench.sd = create_extractor(
            names[0], pretrained=False, dtype=dt, input_size=sizes["sd"], device=device
        )
        bench.sd.set_autocast(args.autocast)
    with stages.time("build_dino"):
        bench.dino = create_extractor(
            names[1], pretrained=False, dtype=dt, input_size=sizes["dino"], device=device
        )
        bench.dino.set_autocast(args.autocast)
    config["sd_layers"] = list(bench.sd.layers)
    for _ in range(warmup):
        with torch.no_grad():
            bench.sd(torch.rand(1, 3, sizes["sd"], sizes["sd"], device=device))
            bench.dino(torch.rand(1, 3, sizes["dino"], sizes["dino"], device=device))
    single_pair.run_single_pair(bench)
    config["grid"] = bench.grid
    _phase_done(bench, "single_pair")

    # 2. the two-stage evaluation
    memory.start()
    eval_matcher = matching.run_evaluation(bench)
    _phase_done(bench, "evaluation")

    # 3. ours vs the reference, interleaved
    if args.reference:
        memory.start()
        progress("building the reference's extra modules (VAE decoder; fp32 copies if needed)")
        ref_sd, ref_dino = reference.build_reference(bench)
        rounds = interleave.run_rounds(bench, ref_sd, ref_dino)
        reference.put_reference_stages(bench, len(rounds))
        interleave.put_ratios(bench, rounds)
        del ref_sd, ref_dino
        _phase_done(bench, "ab_rounds")

    # 4. flip alignment
    if args.flip:
        memory.start()
        matching.run_flip_matching(bench, eval_matcher)
        _phase_done(bench, "flip")
    del eval_matcher

    # 5. extraction variants
    if args.extract_variants:
        memory.start()
        extraction.run_extraction(bench)
        _phase_done(bench, "extraction")

    # 6. extrapolation, memory, table
    put_extrapolation(bench)
    peak = max(memory.phases.values())
    report.sections["memory"] = {
        "kind": memory.kind,
        "unit": "MB",
        "peak_mb": round(peak, 1),
        "phases_mb": dict(memory.phases),
    }
    for phase, mb in memory.phases.items():
        report.put(
            f"peak_mb_{phase}",
            mb,
            "MB",
            f"peak memory, phase: {phase}",
            f"{memory.kind}; {bench.ctx_pair}",
        )
    report.machine["loadavg_1_5_15_after"] = loadavg()
    report.write(complete=True)
    print()
    print(
        f"all models with random weights; {torch.get_num_threads()} torch threads; "
        "'h total' rows are extrapolations from the measured rates"
    )
    print(report.table())
    ev = report.sections["evaluation"]
    print(f"evaluation extracted {ev['extractions']} images for {ev['pairs']} pairs")
    ratio = report.sections.get("ratio")
    if ratio:
        sp, w = ratio["spair_test"], ratio["workload"]
        for rnd, r_sp in zip(report.sections["ab_rounds"], sp["per_round"], strict=True):
            loads = "/".join(str((rnd[f"loadavg_before_{x}"] or [None])[0]) for x in rnd["order"])
            print(
                f"round {rnd['round']} ({''.join(rnd['order'])}): ours "
                f"{rnd['ours_extract_s_per_image']:.3f} s/image + {rnd['ours_match_s_per_pair']:.3f}"
                f" s/pair, reference {rnd['reference_s_per_pair']:.3f} s/pair, ratio (SPair) "
                f"{r_sp:.2f}x; load (1 min) before {loads}"
            )
        split = ratio["split"]
        print(
            f"target (reference / ours per pair >= {ratio['target']:.0f}x on the SPair-71k test "
            f"workload, {w['images']:,} images ({w['source']}), {w['pairs']:,} pairs): "
            f"{sp['ratio']:.2f}x (median of {len(sp['per_round'])} paired rounds, "
            f"{sp['spread']['min']}-{sp['spread']['max']}), "
            f"{'met' if ratio['target_met_spair'] else 'NOT met'}; per image "
            f"{split['per_image']['median']}x, per pair {split['per_pair']['median']}x, reuse "
            f"{split['reuse_factor']['median']}x ({split['reuse_share_of_ratio']} of the ratio)"
        )
    print(
        f"load average (1 min) before / after: {load_before and load_before[0]} / "
        f"{(loadavg() or [None])[0]} on {machine['cpu_count']} CPUs"
    )
    print(f"json: {report.out}\ncsv: {report.csv}")
    return 0


def _phase_done(bench: Bench, phase: str) -> None:
    mb = bench.memory.stop(phase)
    bench.report.sections["memory"] = {
        "kind": bench.memory.kind,
        "unit": "MB",
        "peak_mb": round(max(bench.memory.phases.values()), 1),
        "phases_mb": dict(bench.memory.phases),
    }
    progress(f"peak memory of {phase}: {mb:.0f} MB")
    bench.report.stage_done(phase)
