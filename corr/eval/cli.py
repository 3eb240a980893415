"""``python -m corr.eval {spair,spair-u,pfpascal,pfwillow,ap10k} [options]``, ``python -m corr.eval
score DIR``; ``compare`` and ``tss`` are handed to their own modules.

Examples::

    python -m corr.eval spair --root data/SPair-71k --fuse 0.5
    python -m corr.eval spair --root data/SPair-71k --protocol geoaware --flip   # GeoAware-SC parity
    python -m corr.eval spair --root data/SPair-71k --protocol sd-dino           # sd-dino parity
    python -m corr.eval spair --root data/SPair-71k --flip --matcher softargmax
    python -m corr.eval ap10k --root data/AP-10K --ap10k-subset cross-species
    python -m corr.eval spair-u --root data/SPair-U        # SPair-71k test relabelled (Jamais Vu)
    python -m corr.eval pfwillow --root data/PF-WILLOW
    python -m corr.eval spair --root ../shared/data/minireal/SPair-71k \\
        --extractor corr.contrib.mobilenet:mobilenetv2 --geo-groups ../shared/data/minireal/geo_groups.json
    python -m corr.eval score runs/spair-test-1a2b3c4d     # re-score saved predictions
    python -m corr.eval compare RUN_A RUN_B      # complementarity (corr/eval/compare.py)
    python -m corr.eval tss --root data/TSS_CVPR2016   # dense flow (corr/eval/tss.py)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..logs import INTERRUPTED
from ..protocols import PROTOCOLS as _PROTOCOLS
from .extractor_args import (
    HelpFormatter,
    add_extractor_arguments,
    default_extractors,
    dtype_name,
    extractor_options,
    extractor_specs,
)

PROTOCOL_NAMES = tuple(_PROTOCOLS)
DATASETS = ("spair", "spair-u", "pfpascal", "pfwillow", "ap10k")
#: what Ctrl-C before the run started prints (exit 130, as mid-run)
INTERRUPTED_MESSAGE = "\ninterrupted (nothing of the run was lost): run the same command to resume"
DEFAULT_ROOTS = {
    "spair": "data/SPair-71k",
    "spair-u": "data/SPair-U",
    "pfpascal": "data/PF-Pascal",
    "pfwillow": "data/PF-WILLOW",
    "ap10k": "data/AP-10K",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m corr.eval",
        description="Evaluate zero-shot semantic correspondence (PCK, both averages, geometry-aware "
        "subset). 'python -m corr.eval compare RUN_A RUN_B' compares two finished runs "
        "(complementarity per keypoint; see its --help); 'python -m corr.eval tss' scores dense "
        "flow on TSS.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "dataset",
        choices=(*DATASETS, "score"),
        help="data set, or 'score' to re-score a finished run folder",
    )
    p.add_argument("folder", nargs="?", help="with 'score': the run folder to re-score")
    x = p.add_argument_group(
        "scoring another tool's predictions (score --predictions FILE --dataset NAME --root DIR)"
    )
    x.add_argument(
        "--predictions",
        help="a JSONL of {pair_id, pred: [[x, y] | null, ...]} in original target pixels, or "
        "GeoAware-SC's result.pkl (SPair-71k); see corr/eval/external.py",
    )
    x.add_argument("--dataset", dest="score_dataset", choices=DATASETS, help="their data set")
    x.add_argument(
        "--format", choices=("jsonl", "geoaware-pkl"), help="default: from the file suffix"
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--root", help="data set root (default: data/SPair-71k, data/PF-Pascal or data/AP-10K)"
    )
    d.add_argument("--split", default="test", help="split: test, val or trn")
    d.add_argument(
        "--ap10k-subset",
        default="intra-species",
        choices=("intra-species", "cross-species", "cross-family"),
    )
    d.add_argument(
        "--limit",
        type=int,
        help="evaluate only the first N pairs (in sorted order), for quick runs",
    )
    d.add_argument(
        "--skip-bad",
        action="store_true",
        help="record pairs with missing/unreadable images as skipped instead of stopping",
    )
    d.add_argument(
        "--geo-groups",
        help="keypoint twin-group table (JSON) for the geometry-aware subset (default: the data set's)",
    )
    m = p.add_argument_group(
        "matching",
        "Every option below defaults to the --protocol's value (docs/protocol.md lists them); "
        "giving one overrides that knob alone, and the run records which knobs were overridden.",
    )
    m.add_argument(
        "--protocol",
        default="corr",
        choices=tuple(PROTOCOL_NAMES),
        help="set every knob of a reference at once: corr (ours), sd-dino (Junyi42/sd-dino "
        "@b85df18), geoaware (Junyi42/GeoAware-SC @99fd6b6, zero-shot), dift "
        "(Tsingularity/dift @9421eb2; SD 2.1 alone unless --extractor/--sd-model say otherwise)",
    )
    m.add_argument(
        "--fuse", type=float, help="alpha: weight of SD features (1 = SD only, 0 = DINO only)"
    )
    m.add_argument(
        "--matcher", choices=("softargmax", "nn"), help="window soft-argmax or nearest neighbour"
    )
    m.add_argument("--window", type=int, help="soft-argmax window radius in grid cells")
    m.add_argument("--temperature", type=float, help="soft-argmax temperature beta")
    m.add_argument(
        "--window-mode",
        choices=("exclude", "zero"),
        help="soft-argmax outside the window: exclude the cells, or zero them (GeoAware-SC)",
    )
    m.add_argument("--pca-dim", type=int, help="co-PCA dimension per SD layer (0 disables)")
    m.add_argument("--pca-method", choices=("eigh", "lowrank"), help="co-PCA solver")
    m.add_argument(
        "--fusion",
        choices=("copca", "concat"),
        help="SD+DINO co-PCA, or GeoAware's raw concatenation",
    )
    m.add_argument(
        "--keep-padding",
        action="store_true",
        default=None,
        help="allow matches into the letterbox padding (the references' behaviour)",
    )
    m.add_argument(
        "--arithmetic",
        choices=("exact", "float32"),
        help="keypoint -> cell arithmetic: exact, or the references' float32",
    )
    m.add_argument(
        "--centre-shift",
        type=float,
        help="added to a matched cell's centre in the frame (sd-dino: -0.5, i.e. 14p + 6.5)",
    )
    m.add_argument(
        "--mirror",
        choices=("pixel", "letterbox"),
        help="flip queries: x' = W - 1 - x in the image, or x' = T - x in the letterbox frame",
    )
    m.add_argument(
        "--flip-distance",
        choices=("corr", "reference"),
        help="flip decision distance: ours (content cells), or GeoAware-SC's (all cells)",
    )
    m.add_argument(
        "--tables",
        choices=("ids", "geoaware"),
        help="keypoint tables as written (ids), or renumbered as GeoAware-SC's evaluation does",
    )
    m.add_argument(
        "--resize",
        choices=("letterbox", "stretch"),
        help="model input: letterboxed (aspect kept) or stretched to the square (DIFT)",
    )
    m.add_argument("--pck", choices=("<", "<="), help="PCK comparison: strict, or DIFT's <=")
    m.add_argument(
        "--flip", action="store_true", help="test-time pose alignment (SPair-71k, AP-10K)"
    )
    m.add_argument("--flip-table", help="left/right flip table (JSON) (default: the data set's)")
    m.add_argument(
        "--adapter",
        metavar="NAME|PATH",
        help="a supervised adapter (replaces fusion): a registered name (geoaware-spair, "
        "geoaware-ap10k) or a corr.train output; the extractors, --matcher and --window "
        "default to those it was trained and evaluated with",
    )
    add_extractor_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument(
        "--out", help="run folder (default: runs/{dataset}-{split}-{config hash}); re-run to resume"
    )
    o.add_argument("--cache-dir", help="feature cache folder (default: OUT/cache)")
    t = p.add_argument_group("throughput (these never change the results)")
    t.add_argument("--batch-size", type=int, default=1, help="images per extraction batch")
    t.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader processes that decode and letterbox images while the models run",
    )
    t.add_argument(
        "--extract-only",
        action="store_true",
        help="fill the feature cache (every image of the selected pairs) and stop",
    )
    t.add_argument(
        "--memory-cache-gb",
        type=float,
        default=4.0,
        help="features (fp16; ~13 MB per SD+DINO image), and as much again for reused "
        "descriptors, kept in memory during the pair stage",
    )
    t.add_argument(
        "--threads", type=int, help="torch threads of the pair stage (default 1; see README)"
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _preflight(opts, args: argparse.Namespace, protocol, specs: Sequence[str]) -> list:
    """The run's pairs, after :func:`corr.preflight.preflight` checked the data, the extractors,
    every weight and optional package the run needs (one error naming all that is missing)."""
    from ..preflight import preflight
    from .plan import load_records, tables_for

    def data() -> list:
        records = load_records(opts)
        tables_for(opts, sorted({r.table_category for r in records}))
        return records

    return preflight(
        specs,
        options=extractor_options(args, specs),
        protocol=protocol,
        pretrained=not args.no_pretrained,
        dtype=None if dtype_name(args) == "auto" else dtype_name(args),
        data=data,
        adapter=args.adapter,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corr.eval``: the exit status (0 done, 1 a file could not be written, 2 bad
    input or refused, 130 interrupted: Ctrl-C at any moment, the same command resumes)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the run started (loading modules, data, models)
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        return INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    from ..logs import import_torch, setup_cli_logging

    setup_cli_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:  # two run folders: its own parser (corr/eval/compare.py)
        from .compare import main as compare_main

        return compare_main(argv[1:])
    if argv[:1] == ["tss"]:  # dense flow, not keypoints: corr/eval/tss.py
        from .tss import main as tss_main

        return tss_main(argv[1:])
    args = build_parser().parse_args(argv)
    import_torch()  # Ctrl-C while torch loads: held until it can be an orderly interrupt
    from ..io import WriteError
    from ..preflight import PreflightError
    from .lock import RunLockedError
    from .plan import EvalOptions
    from .results import evaluate_run
    from .runner import BadPairsError, ConfigMismatchError, run_eval

    try:
        if args.dataset == "score" and args.predictions:
            if args.folder or not args.score_dataset:
                print(
                    "error: score --predictions FILE takes --dataset NAME and --root DIR, "
                    "not a run folder",
                    file=sys.stderr,
                )
                return 2
            from .external import score_predictions

            score_predictions(
                args.predictions,
                args.score_dataset,
                args.root or DEFAULT_ROOTS[args.score_dataset],
                fmt=args.format,
                split=args.split,
                subset=args.ap10k_subset if args.score_dataset == "ap10k" else None,
                geo_groups=args.geo_groups,
                pck=args.pck or "<",
                out=args.out,
            )
            return 0
        if args.dataset == "score":
            if not args.folder:
                print(
                    "error: 'score' needs the run folder: python -m corr.eval score DIR",
                    file=sys.stderr,
                )
                return 2
            evaluate_run(args.folder)
            return 0
        if args.folder:
            print(f"error: unexpected argument {args.folder!r}", file=sys.stderr)
            return 2
        from ..matcher import Matcher
        from ..protocols import get_protocol

        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be a positive number of pairs, got {args.limit}")
        if args.batch_size < 1 or args.num_workers < 0 or args.memory_cache_gb < 0:
            raise ValueError(
                f"--batch-size must be >= 1, --num-workers and --memory-cache-gb >= 0 (got "
                f"{args.batch_size}, {args.num_workers}, {args.memory_cache_gb})"
            )
        protocol = get_protocol(args.protocol)
        specs = extractor_specs(args, default_extractors(args, protocol))
        root = args.root or DEFAULT_ROOTS[args.dataset]
        opts = EvalOptions(
            dataset=args.dataset,
            root=root,
            split=args.split,
            subset=args.ap10k_subset if args.dataset == "ap10k" else None,
            limit=args.limit,
            skip_bad=args.skip_bad,
            flip=args.flip,
            flip_table=args.flip_table,
            geo_groups=args.geo_groups,
            tables_rule=args.tables or protocol.eval["tables"],
            pck=args.pck or protocol.eval["pck"],
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            extract_only=args.extract_only,
            memory_cache_gb=args.memory_cache_gb,
        )
        # data, extractors, weights and optional packages: every problem at once, nothing loaded
        records = _preflight(opts, args, protocol, specs)
        if args.no_pretrained:
            print(
                "WARNING: --no-pretrained: random weights; these scores are meaningless",
                file=sys.stderr,
            )
        knobs = {
            "fuse": args.fuse,
            "method": args.matcher,
            "window": args.window,
            "temperature": args.temperature,
            "window_mode": args.window_mode,
            "pca_method": args.pca_method,
            "fusion": args.fusion,
            "exclude_padding": None if args.keep_padding is None else not args.keep_padding,
            "arithmetic": args.arithmetic,
            "centre_shift": args.centre_shift,
            "mirror": args.mirror,
            "flip_distance": args.flip_distance,
            "resize": args.resize,
        }
        if args.pca_dim is not None:
            knobs["pca_dim"] = args.pca_dim or None
        if args.device and args.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(
                    f"--device {args.device}: no CUDA device is available here; use --device cpu"
                )
        from ..precision import resolve_on  # --dtype auto: the run's folder names the choice

        dtype, autocast, chosen = resolve_on(args.device, dtype_name(args), args.autocast)
        matcher_kwargs = dict(
            protocol=protocol.name,
            **{k: v for k, v in knobs.items() if v is not None},
            pretrained=not args.no_pretrained,
            extractor_options=extractor_options(args, specs),
            dtype=dtype,
            device=args.device,
        )
        if args.adapter:
            matcher_kwargs["adapter"] = args.adapter
        if autocast:
            matcher_kwargs["autocast"] = autocast
        if args.compile:
            matcher_kwargs["compile"] = True
        out = args.out
        if out is None:
            ident = json.dumps(
                [
                    opts.dataset,
                    str(Path(opts.root).resolve()),
                    opts.geo_groups,
                    opts.split,
                    opts.subset,
                    opts.flip,
                    opts.flip_table,
                    opts.tables_rule,
                    opts.pck,
                    opts.limit,
                    specs,
                    {k: v for k, v in matcher_kwargs.items() if k not in ("device", "compile")},
                ],
                sort_keys=True,
                default=str,
            )
            out = (
                f"runs/{opts.dataset}-{opts.split}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"
            )
        from ..distributed import context

        ctx = context()  # several processes under torchrun, else one
        matcher_kwargs["device"] = ctx.device(args.device)
        matcher = Matcher(specs, cache_dir=args.cache_dir or Path(out) / "cache", **matcher_kwargs)
        if chosen is not None:
            matcher.precision = chosen.as_dict()  # recorded in the run's config.json
        say = print if ctx.is_main else (lambda *a, **k: None)
        say(
            f"evaluating {opts.dataset} ({opts.split}, {len(records)} pairs) with "
            f"{', '.join(specs)}, protocol {protocol.name}"
            + (
                f" (overridden: {', '.join(sorted(matcher.overrides))})"
                if matcher.overrides
                else ""
            )
            + f" -> {out}",
            file=sys.stderr,
        )
        if ctx.active:
            say(f"{ctx.world} processes: each takes a shard of the images, then of the pairs")
        try:
            live = not args.no_progress and ctx.is_main
            run_eval(opts, matcher, out, progress=live, log=say, ctx=ctx, threads=args.threads)
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: everything finished so far is saved in {out} (features in its "
                "cache, one line per finished pair); run the same command to resume",
                file=sys.stderr,
            )
            return INTERRUPTED
        ctx.close()
        return 0
    except WriteError as err:  # disk full, read-only folder: exit 1, the same command resumes
        print(f"error: {err}; then run the same command to resume", file=sys.stderr)
        return 1
    except (
        PreflightError,
        BadPairsError,
        ConfigMismatchError,
        RunLockedError,
        FileNotFoundError,
        ValueError,
        KeyError,
        ImportError,
    ) as err:  # bad input only (ExtractorSpecError is a ValueError); bugs keep their traceback
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2


def run() -> None:
    """The ``corr-eval`` command: :func:`main`, then :func:`corr.logs.exit_cli`."""
    from ..logs import exit_cli

    exit_cli(main())


if __name__ == "__main__":
    run()
