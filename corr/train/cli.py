"""``python -m corr.train {spair,ap10k,pfpascal} --root R --out DIR``: train an adapter.

``--recipe`` sets every switch of a published recipe (:func:`corr.train.recipe.training_recipe`);
each flag below overrides one and is recorded in ``config.json``. The features come from the
same extractors as ``corr.eval`` (``--protocol``, ``--extractor``, ...), cached on disk.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..logs import INTERRUPTED
from .recipe import TRAINING_RECIPES

DATASETS = ("spair", "ap10k", "pfpascal")

#: Recipe field -> its type, for the switches that take a value (flag: --field-name, but
#: --train-seed for ``seed``: --seed is the SD noise seed of the extractors)
VALUE_FLAGS = {
    "epochs": int,
    "lr": float,
    "weight_decay": float,
    "batch_size": int,
    "seed": int,
    "eval_every": int,
    "gaussian_augment": float,
    "feat_map_dropout": float,
    "flip_weight": float,
    "double_flip_weight": float,
    "self_flip_weight": float,
    "projection_dim": int,
    "scheduler_p1": float,
    "schedule_pairs": int,
    "soft_train_window": int,
    "soft_eval_window": int,
}


def build_parser() -> argparse.ArgumentParser:
    from ..eval.extractor_args import add_extractor_arguments

    p = argparse.ArgumentParser(
        prog="python -m corr.train",
        description="Train a supervised adapter (GeoAware-SC's AggregationNetwork) on "
        "pre-extracted features; resumable, the same command continues an interrupted run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dataset", choices=DATASETS)
    d = p.add_argument_group("data")
    d.add_argument("--root", required=True, help="the data set folder (corr.datasets layout)")
    d.add_argument("--split", help="training split (default: trn)")
    d.add_argument("--val-split", help="validation split (default: val; '' for none)")
    d.add_argument("--limit", type=int, help="first N training pairs only (quick runs)")
    d.add_argument("--val-limit", type=int, help="first N validation pairs only")
    d.add_argument("--flip-table", help="flip table for the flip terms (default: the bundled one)")
    r = p.add_argument_group("recipe (each flag overrides one switch of --recipe)")
    r.add_argument("--recipe", choices=TRAINING_RECIPES, default="geoaware")
    r.add_argument(
        "--init", help="start from this adapter: a registered name or a path (recipe's default)"
    )
    for name, kind in VALUE_FLAGS.items():
        flag = "--train-seed" if name == "seed" else "--" + name.replace("_", "-")
        r.add_argument(flag, dest=f"recipe_{name}", type=kind, default=None)
    r.add_argument("--dense-obj", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--soft-eval", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--scheduler", choices=("one_cycle", "cosine", "none"), default=None)
    m = p.add_argument_group("features")
    m.add_argument(
        "--protocol",
        default="geoaware",
        help="the features' protocol (corr.eval's); geoaware = those GeoAware-SC trained on",
    )
    m.add_argument("--cache-dir", help="feature cache (default: OUT/cache)")
    add_extractor_arguments(p)
    o = p.add_argument_group("output and throughput")
    o.add_argument("--out", required=True, help="the run folder (resumes when it exists)")
    o.add_argument("--checkpoint-every", type=int, default=200, help="optimiser steps")
    o.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    o.add_argument("--no-progress", action="store_true")
    return p


def overrides_from(args: argparse.Namespace) -> dict:
    """The recipe fields given on the command line."""
    out = {
        k: getattr(args, f"recipe_{k}")
        for k in VALUE_FLAGS
        if getattr(args, f"recipe_{k}") is not None
    }
    for k in ("dense_obj", "soft_eval"):
        if getattr(args, k) is not None:
            out[k] = getattr(args, k)
    if args.scheduler is not None:
        out["scheduler"] = None if args.scheduler == "none" else args.scheduler
    if args.init is not None:
        out["init_from"] = args.init
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corr.train``: the exit status (0 done, 1 a file could not be written, 2 bad
    input, 130 interrupted: Ctrl-C at any moment, the same command resumes)."""
    from ..logs import setup_cli_logging

    setup_cli_logging()
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:  # before the run started (loading modules, data, models)
        print(
            f"\ninterrupted before training started: nothing of {args.out} was lost; run the "
            "same command to resume",
            file=sys.stderr,
        )
        return INTERRUPTED


def _main(args: argparse.Namespace) -> int:
    from ..logs import import_torch

    import_torch()  # Ctrl-C while torch loads: held until it can be an orderly interrupt
    from ..eval.extractor_args import extractor_options, extractor_specs
    from ..eval.lock import RunLockedError
    from ..io import WriteError
    from ..matcher import Matcher
    from ..protocols import get_protocol
    from .loop import TrainConfigMismatchError, TrainOptions, train

    try:
        protocol = get_protocol(args.protocol)
        specs = extractor_specs(args, protocol.extractors)
        opts = TrainOptions(
            dataset=args.dataset,
            root=args.root,
            recipe=args.recipe,
            overrides=overrides_from(args),
            split=args.split,
            val_split=args.val_split,
            limit=args.limit,
            val_limit=args.val_limit,
            flip_table=args.flip_table,
            checkpoint_every=args.checkpoint_every,
            num_workers=args.num_workers,
        )
        from ..distributed import context

        ctx = context()
        matcher = Matcher(
            specs,
            protocol=protocol.name,
            pretrained=not args.no_pretrained,
            extractor_options=extractor_options(args, specs),
            dtype={"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(
                args.dtype, args.dtype
            ),
            autocast=args.autocast,
            device=ctx.device(args.device),
            cache_dir=args.cache_dir or Path(args.out) / "cache",
            memory_cache=64,
        )
        say = print if ctx.is_main else (lambda *a, **k: None)
        try:
            results = train(
                opts,
                matcher,
                args.out,
                progress=not args.no_progress and ctx.is_main,
                log=say,
                ctx=ctx,
            )
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: the run is saved in {args.out} up to its last checkpoint; run "
                "the same command to resume",
                file=sys.stderr,
            )
            return INTERRUPTED
        ctx.close()
        if results:
            best = results["best"]
            say(
                f"trained {results['steps']} steps; mean loss of the first epoch "
                f"{results['loss']['first_epoch_mean']:.4f}, of the last "
                f"{results['loss']['last_epoch_mean']:.4f}"
                + (f"; best validation: {best['summary']} at step {best['step']}" if best else "")
                + f"\nadapters: {results['adapters']['best']} (best), "
                f"{results['adapters']['last']} (last); use with --adapter"
            )
        return 0
    except WriteError as err:
        print(f"error: {err}; then run the same command to resume", file=sys.stderr)
        return 1
    except (
        TrainConfigMismatchError,
        RunLockedError,
        FileNotFoundError,
        ValueError,
        KeyError,
        ImportError,
    ) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
