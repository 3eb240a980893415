"""One training run of a supervised adapter (GeoAware-SC's ``pck_train.py``, point by point).

A run lives in one folder (``--out``):

- ``config.json``: what determines the weights (data, recipe with its overrides, the matcher
  that makes the features, the initial adapter, processes); a rerun with another config is
  refused, the same one resumes;
- ``checkpoint.pt`` and ``train_log.jsonl`` (:mod:`corr.train.state`): resume after ``kill
  -9`` with the weights an uninterrupted run gives;
- ``best.safetensors`` / ``last.safetensors`` (+ ``.json`` configs): the adapter at its best
  validation and at the end (load with ``Matcher(adapter=...)``);
- ``validation.json`` / ``validation.csv``: PCK on the validation pairs at each validation,
  and ``results.json`` at the end.

Stages: (1) every image's features into the on-disk cache (the mirrored images too when the
recipe has flip terms), in batches, as :mod:`corr.eval` does; (2) the steps, each pair's
features read from the cache (:class:`~corr.train.data.FeaturePairs`, through a
``DataLoader``); the pairs in one seeded order, the same every epoch (the reference's
``randperm``); one optimiser step per ``batch_size`` pairs; validation every ``eval_every``
pairs and at each epoch's end. Under ``torchrun`` every rank takes every ``world``-th pair of
the order and DDP averages the gradients (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..adapters import (
    AdapterConfig,
    AggregationNetwork,
    adapter_descriptor,
    adapter_groups,
    apply_reference_weights,
    open_adapter,
    save_adapter,
)
from ..datasets import PairRecord, load_pairs
from ..distributed import DistContext, shard
from ..eval.plan import image_items, prompt_categories, write_cache_configs
from ..io import atomic_write_json, remove_stale_temporaries
from ..keypoint_tables import default_tables, load_groups
from .data import FeaturePairs, keep_item
from .losses import SoftArgmaxFlow, pair_loss
from .recipe import Recipe, training_recipe
from .schedule import build_optimizer, build_scheduler
from .state import CHECKPOINT, STEP_LOG, StepLog, load_state, save_state, step_seed
from .validation import Validator, write_validations

__all__ = ["TrainOptions", "train", "TrainConfigMismatchError"]

SPLITS = {"spair": ("trn", "val"), "ap10k": ("trn", "val"), "pfpascal": ("trn", "val")}


class TrainConfigMismatchError(RuntimeError):
    """The output folder holds a training run with another configuration."""


@dataclass
class TrainOptions:
    """What to train on and how (the networks come with the :class:`corr.Matcher`)."""

    dataset: str
    root: str
    recipe: str = "geoaware"
    overrides: dict[str, Any] = field(default_factory=dict)  # Recipe fields given explicitly
    split: str | None = None  # default: the data set's training split
    val_split: str | None = None  # default: its validation split; "" = no validation
    limit: int | None = None
    val_limit: int | None = None
    flip_table: str | None = None
    # how, not what: not part of the run's identity
    checkpoint_every: int = 200  # optimiser steps between saved states
    num_workers: int = 0
    batch_size_extract: int = 1


class TrainModel(torch.nn.Module):
    """The adapter and the dense objective's head (its trainable coordinate grid) as one
    module: what the optimiser and DDP see; ``forward`` is one pair's loss."""

    def __init__(self, adapter: AggregationNetwork, flow: SoftArgmaxFlow | None) -> None:
        super().__init__()
        self.adapter = adapter
        self.flow = flow

    def forward(self, item, recipe: Recipe, size: int, generator: torch.Generator):
        descs = {
            name: adapter_descriptor(self.adapter, maps)
            for name, maps in (
                ("src", item.src),
                ("tgt", item.tgt),
                ("src_flip", item.src_flip),
                ("tgt_flip", item.tgt_flip),
            )
            if maps is not None
        }
        return pair_loss(
            descs["src"],
            descs["tgt"],
            item.kps1.to(descs["src"].device),
            item.kps2.to(descs["src"].device),
            self.adapter.logit_scale,
            flow=self.flow,
            threshold1=item.threshold1,
            threshold2=item.threshold2,
            flip_perm=item.flip_perm,
            desc1_flip=descs.get("src_flip"),
            desc2_flip=descs.get("tgt_flip"),
            recipe=recipe,
            size=size,
            generator=generator,
        )


def _flip_tables(opts: TrainOptions, recipe: Recipe, records: list[PairRecord]):
    if not recipe.pair_augment:
        return None, None
    source = opts.flip_table or default_tables(opts.dataset)[1]
    if source is None:
        raise ValueError(
            f"the recipe's flip terms need a flip table for {opts.dataset}: pass --flip-table"
        )
    table = load_groups(source)
    missing = sorted({r.table_category for r in records} - set(table))
    if missing:
        raise ValueError(
            f"flip table {source!r} has no entry for categories {missing}; pass --flip-table "
            "FILE (e.g. the data set's flip.json), or turn the flip terms off "
            "(--double-flip-weight 0 --self-flip-weight 0)"
        )
    return table, str(source)


def _initial_adapter(
    recipe: Recipe, groups, matcher, log
) -> tuple[AggregationNetwork, dict | None]:
    torch.manual_seed(recipe.seed)  # the reference seeds before building the network
    config = AdapterConfig.for_groups(
        groups,
        projection_dim=recipe.projection_dim,
        feat_map_dropout=recipe.feat_map_dropout,
        recipe={
            "name": recipe.name,
            "soft_eval": recipe.soft_eval,
            "soft_eval_window": recipe.soft_eval_window,
            # the features it was trained on: what Matcher(adapter=...) must give it
            "extractors": list(matcher.specs),
            "protocol": matcher.protocol.name,
        },
    )
    adapter = AggregationNetwork(config)
    if recipe.init_from is None:
        return adapter, None
    start, record = open_adapter(recipe.init_from)
    apply_reference_weights(adapter, start.state_dict(), source=str(recipe.init_from))
    log(f"adapter initialised from {recipe.init_from}")
    return adapter, {k: record[k] for k in ("name", "sha256")}


def train(
    opts: TrainOptions,
    matcher,
    out: str | Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
    ctx: DistContext | None = None,
) -> dict:
    """Train an adapter on ``matcher``'s features; resumable in ``out``. Returns the results
    (also in ``out/results.json``); the other ranks of a torchrun return ``{}``."""
    from ..eval.lock import RunLock

    ctx = ctx or DistContext()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if matcher.cache.root is None:
        raise ValueError("training reads the features from an on-disk cache: give cache_dir")
    if not ctx.is_main:
        return _train(opts, matcher, out, progress, log, ctx)
    with RunLock(out, log):
        remove_stale_temporaries(out, recursive=False)  # of a killed write of the state
        return _train(opts, matcher, out, progress, log, ctx)


def _train(opts, matcher, out: Path, progress: bool, log, ctx: DistContext) -> dict:
    recipe = training_recipe(opts.recipe, opts.dataset, **opts.overrides)
    split, val_split = SPLITS[opts.dataset]
    split = opts.split or split
    val_split = val_split if opts.val_split is None else (opts.val_split or None)
    records = load_pairs(opts.dataset, opts.root, split=split)[: opts.limit]
    if not records:
        raise ValueError(f"no training pairs for {opts.dataset} split {split!r} in {opts.root}")
    val = (
        load_pairs(opts.dataset, opts.root, split=val_split)[: opts.val_limit] if val_split else []
    )
    flips, flip_source = _flip_tables(opts, recipe, records)
    frame = matcher.frame
    identity = {
        "data": {
            "dataset": opts.dataset,
            "root": str(Path(opts.root).resolve()),
            "split": split,
            "val_split": val_split,
            "limit": opts.limit,
            "val_limit": opts.val_limit,
            "flip_table": flip_source,
        },
        "recipe": recipe.as_dict(),
        "overrides": dict(sorted(opts.overrides.items())),
        "matcher": matcher.config(),
        "processes": ctx.world,
    }
    cfg_path = out / "config.json"
    if ctx.is_main and not cfg_path.exists():
        atomic_write_json(cfg_path, identity)
    ctx.barrier()
    if json.loads(cfg_path.read_text()) != json.loads(json.dumps(identity, default=str)):
        raise TrainConfigMismatchError(
            f"{out} holds a training run with another configuration (see {cfg_path}); use "
            "another --out, or delete that folder to start over"
        )

    # ---- stage 1: features of every image, in the cache
    flipped = flips is not None
    items = image_items(records, flipped, matcher, mirrored_targets=flipped)
    items = list(dict.fromkeys(items + image_items(val, False, matcher)))
    write_cache_configs(matcher, items, ctx)
    report = matcher.extract(
        shard(items, ctx), batch_size=opts.batch_size_extract, progress=progress
    )
    log(
        f"features: {report.n_images} images, {report.cached} already cached, "
        f"{report.computed} extracted in {report.seconds:.1f} s"
    )
    ctx.barrier()

    # ---- the model, the optimiser, the order
    def categories(rec):
        cats = prompt_categories(rec)
        return cats if isinstance(cats, tuple) else (cats, cats)

    pairs = FeaturePairs(
        records,
        matcher.cache.root,
        lambda cat: [matcher.cache_config(e, cat) for e in matcher.extractors],
        matcher.matching_frame,
        frame,
        grid=0,
        flip_tables=flips,
        arithmetic=matcher.arithmetic,
        categories=categories,
    )
    first = pairs[0]
    grid = max(m.shape[-1] for m in first.src[-1].values())
    pairs.grid = grid
    adapter, init = _initial_adapter(recipe, adapter_groups(first.src), matcher, log)
    flow = SoftArgmaxFlow(grid, recipe.soft_train_window, recipe.soft_argmax_beta)
    model = TrainModel(adapter, flow if recipe.dense_obj else None).to(matcher.device)
    runner = model
    if ctx.active:
        # the adapter's self_logit_scale takes no part in the loss (as in the reference)
        runner = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = build_optimizer(model.parameters(), recipe)
    per_rank = len(records) // ctx.world
    per_epoch = (per_rank // recipe.batch_size) * recipe.batch_size  # pairs per rank and epoch
    if per_epoch == 0:
        raise ValueError(
            f"{len(records)} training pairs for {ctx.world} processes and batch size "
            f"{recipe.batch_size}: each process needs at least one batch"
        )
    scheduler = build_scheduler(optimizer, recipe, recipe.schedule_pairs or per_rank)
    sched_total = getattr(scheduler, "total_steps", None)
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(recipe.seed))
    order = order.tolist()
    total = per_epoch * recipe.epochs
    validator = (
        Validator(matcher, adapter, val, opts.dataset, recipe) if val and ctx.is_main else None
    )

    # ---- resume
    steplog = StepLog(out / STEP_LOG)
    state = load_state(out / CHECKPOINT)
    position, steps, validations, skipped = 0, 0, [], []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        position, steps = int(state["position"]), int(state["steps"])
        validations, skipped = list(state["validations"]), list(state["skipped"])
        log(f"resuming at pair {position} of {total} (optimiser step {steps}) in {out}")
    if ctx.is_main:
        steplog.keep_until(position)

    def checkpoint() -> None:
        if ctx.is_main:
            save_state(
                out / CHECKPOINT,
                {
                    "position": position,
                    "steps": steps,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "validations": validations,
                    "skipped": skipped,
                },
            )
        ctx.barrier()

    def validate() -> None:
        if validator is not None and ctx.is_main:  # the other ranks wait
            result = validator.run(step=steps, position=position)
            validations.append(result)
            if max(validations, key=lambda v: v["score"]) is result:
                save_adapter(adapter, out / "best.safetensors")
            write_validations(out, validations)
            log(f"validation at pair {position}: {result['summary']}")
        ctx.barrier()

    def global_place(p: int) -> int:
        """This rank's ``p``-th pair as a place in the order of a one-process run."""
        return (p // per_epoch) * per_epoch * ctx.world + (p % per_epoch) * ctx.world + ctx.rank

    def index_of(p: int) -> int:
        return order[global_place(p) % (per_epoch * ctx.world)]

    remaining = list(range(position, total))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(pairs, [index_of(p) for p in remaining]),
        batch_size=None,
        num_workers=opts.num_workers,
        collate_fn=keep_item,
    )
    bar = tqdm(total=total, initial=position, desc="training pairs", disable=not progress)
    t0 = time.perf_counter()
    loss_sum, n_in_batch = 0.0, 0
    for item in loader:
        model.train()
        # every draw seeded by the pair's place in the whole run (all ranks): a resumed run,
        # and a run over more processes, draws what the single uninterrupted one draws
        place = global_place(position)
        torch.manual_seed(step_seed(recipe.seed, place, stream=0))  # dropout
        noise = torch.Generator().manual_seed(step_seed(recipe.seed, place, stream=1))
        try:
            loss = runner(item, recipe, frame, noise)
        except ValueError as err:  # no keypoint visible in both images: nothing to learn
            if "no keypoint is visible" not in str(err):
                raise
            skipped.append(item.pair_id)
            loss = None
        if loss is not None:
            (loss / recipe.batch_size).backward()
            loss_sum += float(loss.detach())
        n_in_batch += 1
        position += 1
        bar.update(1)
        if n_in_batch == recipe.batch_size:
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None and (sched_total is None or steps < sched_total):
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            mean = loss_sum / recipe.batch_size
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
            if ctx.is_main:
                steplog.append({"position": position, "step": steps, "loss": mean, "lr": lr})
            loss_sum, n_in_batch = 0.0, 0
            epoch_end = position % per_epoch == 0
            if epoch_end or position % recipe.eval_every == 0:
                validate()
                checkpoint()
            elif steps % opts.checkpoint_every == 0:
                checkpoint()
    bar.close()
    elapsed = time.perf_counter() - t0
    if state is None or remaining:
        checkpoint()
    if not ctx.is_main:
        return {}
    save_adapter(adapter, out / "last.safetensors")
    if validator is None:  # without validation the last weights are the only ones
        save_adapter(adapter, out / "best.safetensors")
    log_entries = steplog.entries()
    results = {
        "config": identity,
        "initial_adapter": init,
        "pairs": {"train": len(records), "validation": len(val), "skipped_no_keypoints": skipped},
        "steps": steps,
        "pairs_seen": position,
        "loss": _loss_summary(log_entries, max(1, per_epoch // recipe.batch_size)),
        "validations": validations,
        "best": max(validations, key=lambda v: v["score"]) if validations else None,
        "timing": {"seconds_this_run": round(elapsed, 2), "processes": ctx.world},
        "adapters": {"best": str(out / "best.safetensors"), "last": str(out / "last.safetensors")},
    }
    atomic_write_json(out / "results.json", results)
    return results


def _loss_summary(entries: list[dict], steps_per_epoch: int) -> dict:
    """The mean loss of the first and of the last epoch's steps (one step's loss is noisy)."""
    first, last = entries[:steps_per_epoch], entries[-steps_per_epoch:]
    return {
        "first_epoch_mean": sum(e["loss"] for e in first) / len(first) if first else None,
        "last_epoch_mean": sum(e["loss"] for e in last) / len(last) if last else None,
        "definition": "GeoAware-SC's pair loss (corr.train.pair_loss), mean over the optimiser "
        "steps of the first and of the last epoch (train_log.jsonl has every step)",
    }
