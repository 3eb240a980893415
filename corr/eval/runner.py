"""One evaluation run: pairs -> predictions (resumable) -> PCK results (JSON + CSV).

A run lives in one folder:

- ``config.json``: everything that determines the predictions; a re-run with the same ``--out``
  must match it, and then resumes;
- ``predictions.jsonl``: one line per finished pair (predicted target points in original target
  pixels, the flip decision, a CRC-32 of the line), appended and fsync'd pair by pair, so an
  interrupted run (even ``kill -9``) loses at most the pair in flight; on resume a torn last
  line or a damaged line is reported with its line number, removed by an atomic rewrite of the
  file (every good line kept in order), and its pair computed again (never trusted, never
  silently dropped; ``score`` only reads the file);
- ``run.lock``: held while a process evaluates into the folder (owner's pid and host; an
  ``flock`` the kernel releases when the owner dies), so a second evaluation into the same
  folder is refused and a lock left by a killed run is detected as stale and taken over;
- ``results.json`` / ``results.csv``: the scores, written atomically at the end, and again by
  ``python -m corr.eval score DIR`` (re-scoring needs the annotations, not the features).

This module runs the stages: :func:`resume` (where the run stands), :func:`extract_stage`
(features of every image), :func:`pair_stage` (a :class:`~corr.pair.Pair` per pair, predictions
stored as made), then the scores. What is evaluated is planned in :mod:`corr.eval.plan`; the
predictions live in :mod:`corr.eval.store`, the lock in :mod:`corr.eval.lock`, the scores and
their files in :mod:`corr.eval.results`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..datasets import PairRecord, check_images
from ..devices import pair_stage_threads, torch_threads
from ..distributed import DistContext, shard
from ..extraction import ExtractReport
from ..io import WriteError, atomic_write_json, remove_stale_temporaries
from ..keypoint_tables import flip_permutation
from .lock import RunLock
from .plan import (
    EvalOptions,
    Tables,
    apply_tables_rule,
    image_items,
    load_records,
    prompt_categories,
    run_config,
    tables_for,
    write_cache_configs,
)
from .results import environment, print_results, score_run, write_results
from .store import PRED_FILE, PredictionStore, points_to_json


class BadPairsError(RuntimeError):
    """Pairs whose images are missing or unreadable (and ``--skip-bad`` was not given)."""


class ConfigMismatchError(RuntimeError):
    """The output folder holds a run with a different configuration."""


def run_eval(
    opts: EvalOptions,
    matcher,
    out: str | Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
    ctx: DistContext | None = None,
    threads: int | None = None,
) -> dict:
    """Evaluate ``matcher`` (a :class:`corr.Matcher`) on a data set; resumable in ``out``.

    ``threads``: torch threads of the pair stage (default: :func:`corr.devices.pair_stage_threads`,
    one); the extraction stage keeps the process's own setting.

    Under torchrun (``ctx`` of several ranks) every rank extracts its shard of the unique images
    and then matches its shard of the pairs into its own ``predictions.<rank>.jsonl``; rank 0
    then scores all of them (the other ranks return ``{}``). The numbers do not depend on the
    number of processes. The folder is locked for the run (:class:`RunLock`; held by rank 0):
    a second evaluation into it raises :class:`RunLockedError`. A file that cannot be written
    (disk full, read-only folder) raises :class:`~corr.io.WriteError` naming it, with
    everything written before intact.
    """
    ctx = ctx or DistContext()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(out, err) from None
    threads = pair_stage_threads(threads)
    if not ctx.is_main:
        return _run_eval(opts, matcher, out, progress, log, ctx, threads)
    with RunLock(out, log):
        remove_stale_temporaries(out, recursive=False)  # of a killed write of results or config
        return _run_eval(opts, matcher, out, progress, log, ctx, threads)


@dataclass
class RunState:
    """Where a run stands when it (re)starts: its identity, the pairs still to do and the
    store of finished ones. Everything about resuming is decided in :func:`resume`."""

    config: dict
    records: list[PairRecord]  # the pairs to score (bad images left out), tables rule applied
    tables: Tables
    todo: list[PairRecord]  # of those, the pairs without a stored prediction
    store: PredictionStore
    skipped: list[dict]  # pairs with a missing or unreadable image (--skip-bad)


def resume(
    opts: EvalOptions, matcher, out: Path, log: Callable[[str], None], ctx: DistContext
) -> RunState:
    """Open (or start) the run in ``out``: the same configuration as a run already there, or
    :class:`ConfigMismatchError`; the images checked; the predictions already stored (torn or
    damaged lines reported and removed from this process's file, their pairs to be computed
    again)."""
    records = load_records(opts)
    if not records:
        raise ValueError(
            f"no pairs found for {opts.dataset} split {opts.split!r} under {opts.root}"
        )
    tables = tables_for(opts, sorted({r.table_category for r in records}))
    config = run_config(opts, matcher.config(), tables.geo_source, tables.flip_source)
    # what --dtype auto chose and the probe behind it: a record, not the run's identity (the
    # choice itself is in the extractors' configurations)
    if getattr(matcher, "precision", None) is not None:
        config["precision"] = matcher.precision
    cfg_path = out / "config.json"
    if ctx.is_main and not cfg_path.exists():
        atomic_write_json(cfg_path, config)
    ctx.barrier()  # the other ranks compare with what rank 0 found or wrote
    old = json.loads(cfg_path.read_text())
    if _identity(old) != _identity(json.loads(json.dumps(config, default=str))):
        raise ConfigMismatchError(
            f"{out} holds a run with a different configuration (see {cfg_path}); "
            "use another --out, or delete that folder to start over"
        )

    bad = check_images(records)
    skipped = [{"pair_id": pid, "path": str(path), "reason": why} for pid, path, why in bad]
    if bad and not opts.skip_bad:
        lines = "\n".join(f"  {s['pair_id']}: {s['path']}: {s['reason']}" for s in skipped[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise BadPairsError(
            f"{len(bad)} pair(s) have a missing or unreadable image:\n{lines}{more}\n"
            "Fix the data, or pass --skip-bad to record them as skipped in the results."
        )
    bad_ids = {s["pair_id"] for s in skipped}
    todo_records, tables = apply_tables_rule(
        [r for r in records if r.pair_id not in bad_ids], tables, opts.tables_rule
    )

    store = PredictionStore(out, PRED_FILE if not ctx.active else f"predictions.{ctx.rank}.jsonl")
    for problem in store.problems:
        log(f"warning: {problem}")
    todo = [r for r in todo_records if r.pair_id not in store.entries]
    if store.entries:
        log(
            f"resuming: {len(todo_records) - len(todo)} of {len(todo_records)} pairs already done in {out}"
        )
    return RunState(config, todo_records, tables, todo, store, skipped)


def extract_stage(
    opts: EvalOptions,
    matcher,
    records: Sequence[PairRecord],
    progress: bool,
    log: Callable[[str], None],
    ctx: DistContext,
) -> tuple[ExtractReport, int]:
    """Stage 1: every unique image of ``records`` (and the mirrored sources with flip), in
    batches, cached ones skipped; this rank takes its shard. Returns the report and the number
    of unique images of all ranks."""
    items = image_items(records, opts.flip, matcher)
    write_cache_configs(matcher, items, ctx)
    extracted = matcher.extract(
        shard(items, ctx),
        batch_size=opts.batch_size,
        num_workers=opts.num_workers,
        skip_bad=opts.skip_bad,
        progress=progress,
    )
    log(
        f"features: {extracted.n_images} images, {extracted.cached} already cached, "
        f"{extracted.computed} extracted in {extracted.seconds:.1f} s"
        + (f", {extracted.by_others} by another process" if extracted.by_others else "")
        + (f", {len(extracted.bad)} unreadable (skipped)" if extracted.bad else "")
    )
    return extracted, len(items)


def pair_stage(
    opts: EvalOptions,
    matcher,
    state: RunState,
    progress: bool,
    ctx: DistContext,
    threads: int | None = None,
) -> tuple[int, float]:
    """Stage 2: this rank's shard of the pairs still to do, category by category, each a
    :class:`~corr.pair.Pair` from the resident features (descriptors that no co-PCA ties to a
    pair built once per image: :mod:`corr.reuse`); every prediction appended to the store as
    soon as it is made, with ``threads`` torch threads (:func:`corr.devices.pair_stage_threads`).
    Returns the number of pairs done here and their seconds."""
    todo = sorted(state.todo, key=lambda r: (r.category, r.pair_id))
    mine = shard(todo, ctx)
    with torch_threads(pair_stage_threads(threads)):
        t0 = time.perf_counter()
        for rec in tqdm(mine, desc=f"{opts.dataset} pairs", unit="pair", disable=not progress):
            _one_pair(opts, matcher, state, rec)
        return len(mine), time.perf_counter() - t0


def _one_pair(opts: EvalOptions, matcher, state: RunState, rec: PairRecord) -> None:
    """Match one pair and append its prediction (or, with ``--skip-bad``, its bad image)."""
    queries = np.where(rec.src_vis[:, None], rec.src_kps, np.nan)
    kwargs: dict[str, Any] = {}
    if opts.flip:
        perm = flip_permutation(state.tables.flip[rec.table_category], len(queries))
        kwargs.update(flip=True, flip_pairs=perm, tgt_visible=rec.tgt_vis)
    try:
        pair = matcher.pair(rec.src_image, rec.tgt_image, prompt_categories(rec))
        res = pair.match(queries, **kwargs)
    except (OSError, ValueError) as err:
        if not _is_image_error(err):
            raise ValueError(f"pair {rec.pair_id}: {err}") from err
        if not opts.skip_bad:
            raise BadPairsError(
                f"pair {rec.pair_id}: {err}\nFix the data, or pass --skip-bad to record it as skipped."
            ) from err
        state.store.append({"pair_id": rec.pair_id, "skipped": str(err)})
        return
    entry = {"pair_id": rec.pair_id, "pred": points_to_json(res["keypoints1"])}
    if opts.flip:
        f = res["flip"]
        entry["flip"] = {
            "flipped": f["flipped"],
            "distance": f["distance"],
            "distance_flipped": f["distance_flipped"],
            "pred_plain": points_to_json(f["keypoints1_plain"]),
        }
    state.store.append(entry)


def _run_eval(
    opts: EvalOptions,
    matcher,
    out: Path,
    progress: bool,
    log: Callable[[str], None],
    ctx: DistContext,
    threads: int,
) -> dict:
    state = resume(opts, matcher, out, log, ctx)
    ctx.barrier()  # every rank has read the stores before any rank appends
    extracted, n_items = extract_stage(
        opts, matcher, state.todo if not opts.extract_only else state.records, progress, log, ctx
    )
    if opts.extract_only:
        ctx.barrier()
        log(f"--extract-only: the features are in {matcher.cache.root}; run without it to match")
        return {"extraction": extracted.as_dict()}
    ctx.barrier()  # every image's features are on disk before any rank matches
    # features kept in memory up to the budget while the pairs are matched
    matcher.cache.memory_items = max(matcher.cache.memory_items, n_items * 2 + 8)
    matcher.cache.memory_bytes = int(opts.memory_cache_gb * 2**30)
    # and the descriptors reused across pairs (corr.reuse): up to the same budget
    matcher.reuse.items = max(matcher.reuse.items, n_items * 2 + 8)
    matcher.reuse.max_bytes = matcher.cache.memory_bytes
    n_mine, elapsed = pair_stage(opts, matcher, state, progress, ctx, threads)
    ctx.barrier()  # every rank's pairs are on disk
    if not ctx.is_main:
        return {}
    store = PredictionStore(out, own=None) if ctx.active else state.store  # all ranks' lines

    skipped = state.skipped + _skipped_in_run(state.records, store.entries)
    scored = [r for r in state.records if "pred" in store.entries[r.pair_id]]
    results = score_run(opts, scored, store.entries, state.tables)
    results["skipped"] = skipped
    results["config"] = state.config
    results["environment"] = environment()
    results["timing"] = {
        "extraction_this_run": extracted.as_dict(),
        "processes": ctx.world,
        "pairs_computed_this_run": len(state.todo),
        "seconds_this_run": round(elapsed, 3),
        "seconds_per_pair_this_run": round(elapsed / n_mine, 4) if n_mine else None,
        "pair_stage_threads": threads,
        "feature_cache": {"hits": matcher.cache.hits, "misses": matcher.cache.misses},
        "descriptors_reused": {"hits": matcher.reuse.hits, "misses": matcher.reuse.misses},
    }
    write_results(out, results)
    print_results(results, out, log)
    return results


def _identity(config: dict) -> dict:
    """A run's configuration without its records (``precision``): what must match to resume."""
    return {k: v for k, v in config.items() if k != "precision"}


def _is_image_error(err: BaseException) -> bool:
    return isinstance(err, FileNotFoundError) or "cannot read image file" in str(err)


def _skipped_in_run(records: Sequence[PairRecord], entries: dict[str, dict]) -> list[dict]:
    """Pairs that failed while running (e.g. a truncated image) and were recorded as skipped."""
    return [
        {"pair_id": r.pair_id, "path": None, "reason": entries[r.pair_id]["skipped"]}
        for r in records
        if "skipped" in entries.get(r.pair_id, {})
    ]
