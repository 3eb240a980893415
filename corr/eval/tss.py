"""``python -m corr.eval tss``: dense flow on TSS (FG3DCar, JODS, PASCAL), scored as the SD+DINO
paper does (PCK of the flow, AEPE, first-order smoothness; :mod:`corr.metrics.flow`).

For each pair the flow is the reversed pair's upsampled dense field
(:meth:`corr.pair.Pair.dense` with ``upsample=True``, the target as its source): at every
target pixel, the matched source point minus the pixel, at full resolution, in TSS's
convention (``source = target + flow``). Only the per-pair figures are kept, one JSON line per
pair in ``pairs.jsonl`` (``pairs.<rank>.jsonl`` under torchrun), appended and fsync'd as made:
a re-run with the same ``--out`` resumes. ``results.json`` (figures, configuration,
environment) and ``results.csv`` are written atomically at the end by rank 0. Under torchrun
every rank takes a share of the folders (both directions of a folder on one rank).

Example::

    python -m corr.eval tss --root data/TSS_CVPR2016 --fuse 0.5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..datasets.tss import TSS_SUBSETS, TssPair, load_tss, read_flo, read_mask
from ..io import WriteError, atomic_write_json
from ..metrics.flow import (
    FLOW_ALPHAS,
    format_flow_table,
    score_flow_pair,
    summarize_flow,
    write_flow_csv,
)
from .extractor_args import (
    HelpFormatter,
    add_extractor_arguments,
    dtype_name,
    extractor_options,
    extractor_specs,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..distributed import DistContext
    from ..matcher import Matcher

DEFAULT_ROOT = "data/TSS_CVPR2016"


def tss_flow(matcher: Matcher, pair: TssPair) -> np.ndarray:
    """``(H_t, W_t, 2)`` estimated flow on the target's grid: at target pixel ``(x, y)``, the
    matched source point minus ``(x, y)`` (original pixels)."""
    dense = matcher.pair(pair.tgt_image, pair.src_image, pair.category).dense(upsample=True)
    return np.asarray(dense.flow, dtype=np.float32)


def ground_truth(pair: TssPair) -> tuple[np.ndarray, np.ndarray]:
    """The pair's ground-truth flow and mask, checked against the target image's size."""
    gt, mask = read_flo(pair.flow), read_mask(pair.mask)
    w, h = pair.tgt_size
    if gt.shape[:2] != (h, w) or mask.shape != (h, w):
        raise ValueError(
            f"TSS pair {pair.pair_id}: {pair.flow} is {gt.shape[1]} x {gt.shape[0]} and "
            f"{pair.mask} {mask.shape[1]} x {mask.shape[0]}, but the target image "
            f"{pair.tgt_image} is {w} x {h}"
        )
    return gt, mask


def score_pair(matcher: Matcher, pair: TssPair, alphas: Sequence[float] = FLOW_ALPHAS) -> dict:
    """One pair's figures (:func:`corr.metrics.flow.score_flow_pair`) with its identity."""
    gt, mask = ground_truth(pair)
    grid = (max(pair.src_size[1], pair.tgt_size[1]), max(pair.src_size[0], pair.tgt_size[0]))
    score = score_flow_pair(tss_flow(matcher, pair), gt, mask, pair.pck_size, grid, alphas)
    return {"pair_id": pair.pair_id, "subset": pair.subset, "category": pair.category, **score}


def _read_lines(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # a torn last line: its pair is computed again
            try:
                entry = json.loads(line)
                done[entry["pair_id"]] = entry
            except (ValueError, KeyError, TypeError):
                continue
    return done


def _append(path: Path, entry: dict) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise WriteError(path, err) from None


def run_tss(
    pairs: Sequence[TssPair],
    matcher: Matcher,
    out: str | Path,
    config: dict,
    ctx: DistContext | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Score ``pairs`` with ``matcher`` into ``out`` (resumable; see the module docstring).
    Returns the results (rank 0) or ``{}`` (other ranks)."""
    from ..distributed import DistContext
    from .lock import RunLock

    ctx = ctx or DistContext()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(out, err) from None
    if not ctx.is_main:
        return _run(pairs, matcher, out, config, ctx, progress, log)
    with RunLock(out, log):  # one run per folder (held by rank 0)
        return _run(pairs, matcher, out, config, ctx, progress, log)


def _run(pairs, matcher, out: Path, config: dict, ctx, progress: bool, log) -> dict:
    from tqdm import tqdm

    from ..distributed import shard
    from .results import environment

    cfg_path = out / "config.json"
    if ctx.is_main and not cfg_path.exists():
        atomic_write_json(cfg_path, config)
    ctx.barrier()
    if json.loads(cfg_path.read_text()) != json.loads(json.dumps(config, default=str)):
        raise ValueError(
            f"{out} holds a TSS run with a different configuration (see {cfg_path}); use "
            "another --out, or delete that folder to start over"
        )
    own = out / ("pairs.jsonl" if not ctx.active else f"pairs.{ctx.rank}.jsonl")
    done = _read_lines(own)
    folders = list(dict.fromkeys(p.pair_id.split(":")[0] for p in pairs))
    mine_folders = set(shard(folders, ctx))
    todo = [p for p in pairs if p.pair_id.split(":")[0] in mine_folders and p.pair_id not in done]
    if done:
        log(f"resuming: {len(done)} pairs already scored in {own}")
    for pair in tqdm(todo, desc="tss pairs", unit="pair", disable=not progress):
        _append(own, score_pair(matcher, pair))
    ctx.barrier()
    if not ctx.is_main:
        return {}
    scores: dict[str, dict] = {}
    for path in sorted(out.glob("pairs*.jsonl")):
        scores.update(_read_lines(path))
    missing = [p.pair_id for p in pairs if p.pair_id not in scores]
    if missing:
        raise ValueError(f"{len(missing)} pairs have no figures (first: {missing[0]})")
    ordered = [scores[p.pair_id] for p in pairs]
    results: dict[str, Any] = {
        "dataset": "tss",
        "n_pairs": len(ordered),
        "results": summarize_flow(ordered),
        "config": config,
        "environment": environment(),
    }
    atomic_write_json(out / "results.json", results)
    write_flow_csv(results["results"], out / "results.csv")
    log(format_flow_table(results["results"]))
    log(f"results: {out / 'results.json'} and {out / 'results.csv'}")
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m corr.eval tss",
        description="Dense flow on TSS: PCK of the flow (per image and per pixel), AEPE and "
        "first-order smoothness, per subset (FG3DCar, JODS, PASCAL) and overall.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--root", default=DEFAULT_ROOT, help="the TSS_CVPR2016 folder")
    p.add_argument(
        "--subset", action="append", choices=TSS_SUBSETS, help="repeatable (default: all)"
    )
    p.add_argument("--limit", type=int, help="only the first N pairs, for quick runs")
    p.add_argument("--protocol", default="corr", help="corr, sd-dino, geoaware or dift")
    p.add_argument("--fuse", type=float, help="weight of SD features (1 = SD only)")
    p.add_argument("--matcher", choices=("nn", "softargmax"), help="nearest neighbour or soft")
    add_extractor_arguments(p)
    p.add_argument("--out", help="run folder (default: runs/tss-{config hash}); re-run to resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corr.eval tss``: 0 done, 1 a file could not be written, 2 bad input."""
    from ..logs import import_torch

    import_torch()  # Ctrl-C while torch loads: held until it can be an orderly interrupt
    from ..datasets import DatasetLayoutError
    from ..distributed import context
    from ..matcher import Matcher
    from ..precision import resolve_on
    from ..preflight import PreflightError, preflight
    from ..protocols import get_protocol

    args = build_parser().parse_args(argv)
    try:
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be a positive number of pairs, got {args.limit}")

        def data() -> list[TssPair]:
            try:
                pairs = load_tss(args.root, subsets=tuple(args.subset or TSS_SUBSETS))
            except DatasetLayoutError as err:
                from ..datasets.download import download_hint

                hint = download_hint("tss", args.root)
                raise DatasetLayoutError("TSS", err.layout, err.missing, hint=hint) from None
            if not pairs:
                raise ValueError(f"no TSS pairs under {args.root}")
            return pairs[: args.limit] if args.limit else pairs

        protocol = get_protocol(args.protocol)
        specs = extractor_specs(args, protocol.extractors)
        # the data, the extractors, every weight and package: all problems at once, nothing loaded
        pairs = preflight(
            specs,
            options=extractor_options(args, specs),
            protocol=protocol,
            pretrained=not args.no_pretrained,
            dtype=None if dtype_name(args) == "auto" else dtype_name(args),
            data=data,
        )
        dtype, autocast, _ = resolve_on(args.device, dtype_name(args), args.autocast)
        kwargs: dict[str, Any] = dict(
            protocol=protocol.name,
            pretrained=not args.no_pretrained,
            extractor_options=extractor_options(args, specs),
            dtype=dtype,
        )
        kwargs.update({k: v for k, v in (("fuse", args.fuse), ("method", args.matcher)) if v})
        if autocast:
            kwargs["autocast"] = autocast
        ctx = context()
        matcher = Matcher(specs, device=ctx.device(args.device), **kwargs)
        run = {
            "dataset": "tss",
            "root": str(Path(args.root).resolve()),
            "subsets": list(args.subset or TSS_SUBSETS),
            "limit": args.limit,
            "flow": "target pixel -> source point minus the pixel (Pair.dense(upsample=True) "
            "of the reversed pair)",
        }
        config = {"run": run, "matcher": matcher.config()}
        ident = json.dumps(config, sort_keys=True, default=str).encode()
        out = args.out or f"runs/tss-{hashlib.sha256(ident).hexdigest()[:8]}"
        say = print if ctx.is_main else (lambda *a, **k: None)
        say(f"evaluating TSS ({len(pairs)} pairs) with {', '.join(specs)} -> {out}")
        run_tss(pairs, matcher, out, config, ctx, not args.no_progress and ctx.is_main, say)
        ctx.close()
        return 0
    except WriteError as err:
        print(f"error: {err}; then run the same command to resume", file=sys.stderr)
        return 1
    except (
        PreflightError,
        DatasetLayoutError,
        FileNotFoundError,
        ValueError,
        KeyError,
        ImportError,
    ) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
