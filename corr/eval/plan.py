"""What a run evaluates: its options, its pairs, the keypoint tables, the images to extract,
and the identity recorded in ``config.json``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import PairRecord, load_pairs
from ..extraction import ImageItem
from ..keypoint_tables import (
    BUNDLED,
    REFERENCE_VERBATIM,
    default_tables,
    load_groups,
    reference_groups,
)


@dataclass
class EvalOptions:
    """What to evaluate (the model configuration lives in the Matcher)."""

    dataset: str
    root: str
    split: str = "test"
    subset: str | None = None  # AP-10K: intra-species | cross-species | cross-family
    limit: int | None = None
    skip_bad: bool = False
    flip: bool = False
    flip_table: str | None = None
    geo_groups: str | None = None
    tables_rule: str = "ids"  # "ids" (tables as written) | "geoaware" (the reference's renumbering)
    pck: str = "<"  # "<" (strict) | "<=" (DIFT)
    # how, not what: these do not change the results and are not part of the run's identity
    batch_size: int = 1
    num_workers: int = 0
    extract_only: bool = False
    memory_cache_gb: float = 4.0
    extra: dict[str, Any] = field(default_factory=dict)


def load_records(opts: EvalOptions) -> list[PairRecord]:
    kw = {"subset": opts.subset} if opts.dataset == "ap10k" and opts.subset else {}
    records = load_pairs(opts.dataset, opts.root, split=opts.split, **kw)
    if opts.limit is not None:
        records = records[: opts.limit]
    return records


#: data sets whose keypoints are a pair's points by position (no ids): no geo or flip tables
POSITIONAL = {"pfpascal": "PF-Pascal", "pfwillow": "PF-Willow"}


@dataclass
class Tables:
    """The keypoint tables of a run: geo groups (None when not computable) and flip lists."""

    geo: dict | None
    geo_source: str | None
    flip: dict | None
    flip_source: str | None
    note: str | None


def tables_for(opts: EvalOptions, table_categories: Sequence[str]) -> Tables:
    """Geo-group and flip tables for the run; a note says why the geo subset is unavailable."""
    if opts.dataset in POSITIONAL and opts.geo_groups:
        title = POSITIONAL[opts.dataset]
        raise ValueError(
            f"--geo-groups {opts.geo_groups}: {title} has no geometry-aware subset. Its CSV "
            "lists each pair's keypoints by position, not by a keypoint id, so a twin group "
            f"(ids) cannot be matched to its points; drop --geo-groups for {opts.dataset} "
            "(SPair-71k and AP-10K have one)"
        )
    geo_default, flip_default = default_tables(opts.dataset)
    geo_src = opts.geo_groups or geo_default
    geo = load_groups(geo_src) if geo_src else None
    note = None
    if geo is not None:
        missing = sorted(set(table_categories) - set(geo))
        if missing:
            note = (
                f"geometry-aware subset not computed: categories {missing} are not in the table "
                f"{geo_src!r}; pass --geo-groups FILE with a table for them"
            )
            geo, geo_src = None, None
    flip = flip_src = None
    if opts.flip:
        if opts.dataset in POSITIONAL:
            raise ValueError(
                f"--flip is for SPair-71k and AP-10K: {POSITIONAL[opts.dataset]} keypoints have "
                "no fixed semantic ids, so there is no left/right flip list for them"
            )
        flip_src = opts.flip_table or flip_default
        if flip_src is None:
            raise ValueError(
                f"--flip: no flip table is bundled for {opts.dataset} (SPair-71k's describes its "
                "own keypoint ids, not SPair-U's new points); pass --flip-table FILE listing "
                "the left/right twins of each category's points"
            )
        flip = load_groups(flip_src)
        missing = sorted(set(table_categories) - set(flip))
        if missing:
            raise ValueError(
                f"--flip: categories {missing} are not in the flip table {flip_src!r}; "
                "pass --flip-table FILE (e.g. the data set's flip.json)"
            )
    return Tables(geo, geo_src, flip, flip_src, note)


TABLE_RULES = ("ids", "geoaware")


def apply_tables_rule(
    records: Sequence[PairRecord], tables: Tables, rule: str
) -> tuple[list[PairRecord], Tables]:
    """Records and tables as the evaluation uses them under ``rule``.

    ``"ids"`` returns both unchanged. ``"geoaware"`` gives every category (SPair class, AP-10K
    species / family / ``all``, as GeoAware-SC iterates them) its own tables, converted by
    :func:`corr.keypoint_tables.reference_groups` with the ids visible in at least one image of
    that category's pairs, and keys each record by its category. The conversion reproduces how
    the reference reads *its own* tables (the bundled ones); a table given by file is used as
    written, and a note says so.
    """
    if rule not in TABLE_RULES:
        raise ValueError(f"tables rule must be one of {TABLE_RULES}, got {rule!r}")
    if rule == "ids" or (tables.geo is None and tables.flip is None):
        return list(records), tables
    used: dict[str, np.ndarray] = {}
    table_of: dict[str, str] = {}
    for r in records:
        vis = r.src_vis | r.tgt_vis
        used[r.category] = vis if r.category not in used else used[r.category] | vis
        table_of[r.category] = r.table_category
    as_written: list[str] = []

    def convert(table: dict | None, source: str | None, kind: str) -> dict | None:
        if table is None:
            return None
        if source not in BUNDLED:  # a table given by file: as written, keyed by category
            as_written.append(str(source))
            return {c: table[t] for c, t in table_of.items() if t in table}
        if source in REFERENCE_VERBATIM:
            table = load_groups(REFERENCE_VERBATIM[source])
        return {
            c: reference_groups(table[t], np.flatnonzero(used[c]).tolist(), kind)
            for c, t in table_of.items()
            if t in table
        }

    geo = convert(tables.geo, tables.geo_source, "geo")
    flip = convert(tables.flip, tables.flip_source, "flip")
    notes = [tables.note]
    if as_written:
        notes.append(
            "tables rule 'geoaware' renumbers only the bundled reference tables; "
            f"{' and '.join(sorted(set(as_written)))} used as written"
        )
    out = Tables(
        geo, tables.geo_source, flip, tables.flip_source, "; ".join(filter(None, notes)) or None
    )
    return [replace(r, table_category=r.category) for r in records], out


def prompt_categories(rec: PairRecord) -> str | tuple[str, str]:
    """The category for a ``{category}`` prompt: per image where the data set names each
    image's own class (AP-10K species), else the pair's category."""
    src, tgt = rec.flags.get("src_species"), rec.flags.get("trg_species")
    if src and tgt:
        return (str(src), str(tgt))
    return rec.category


_NOT_IDENTITY = (
    "skip_bad",
    "extra",
    "batch_size",
    "num_workers",
    "extract_only",
    "memory_cache_gb",
)


def image_items(
    records: Sequence[PairRecord], flip: bool, matcher, mirrored_targets: bool = False
) -> list[ImageItem]:
    """The unique images a run needs: every source and target, and the mirrored sources with
    ``flip`` (the mirrored targets too with ``mirrored_targets``: training's flip terms).
    Categories are kept only when an extractor's features depend on them (a ``{category}``
    prompt), so that an image is extracted once."""
    by_category = any(getattr(e, "uses_category", False) for e in matcher.extractors)
    items: dict[ImageItem, None] = {}
    for rec in records:
        cats = prompt_categories(rec)
        cat_s, cat_t = cats if isinstance(cats, tuple) else (cats, cats)
        if not by_category:
            cat_s = cat_t = None
        items[ImageItem(str(rec.src_image), cat_s)] = None
        items[ImageItem(str(rec.tgt_image), cat_t)] = None
        if flip:
            items[ImageItem(str(rec.src_image), cat_s, mirrored=True)] = None
        if mirrored_targets:
            items[ImageItem(str(rec.tgt_image), cat_t, mirrored=True)] = None
    return list(items)


def write_cache_configs(matcher, items: Sequence[ImageItem], ctx) -> None:
    """Under several processes: the feature cache's configuration files, written once by rank
    0 before any rank extracts (the others are told not to write them)."""
    if not ctx.active:
        return
    if matcher.cache.root is None:
        raise ValueError(
            "several processes share features through an on-disk cache: give cache_dir"
        )
    if ctx.is_main:
        for category in {item.category for item in items}:
            for ext in matcher.extractors:
                matcher.cache.write_config(matcher.cache_config(ext, category))
    matcher.cache.write_configs = False
    ctx.barrier()


def run_config(opts: EvalOptions, matcher_config: dict, geo_src, flip_src) -> dict:
    """The run's identity (``config.json``): the options that change the predictions, the
    resolved data root and tables, and the matcher's configuration."""
    run = {k: v for k, v in asdict(opts).items() if k not in _NOT_IDENTITY}
    run["root"] = str(Path(opts.root).resolve())
    run["geo_groups"] = geo_src
    run["flip_table"] = flip_src if opts.flip else None
    return {"run": run, "matcher": matcher_config}
