"""One evaluation run: pairs -> predictions (resumable) -> PCK results (JSON + CSV).

A run lives in one folder:

- ``config.json``: everything that determines the predictions; a re-run with the same ``--out``
  must match it, and then resumes;
- ``predictions.jsonl``: one line per finished pair (predicted target points in original target
  pixels, the flip decision, a CRC-32 of the line), appended and fsync'd pair by pair, so an
  interrupted run (even ``kill -9``) loses at most the pair in flight; on resume a torn last
  line is cut off and any damaged line is reported with its line number, and those pairs are
  computed again (never trusted, never silently dropped);
- ``run.lock``: held while a process evaluates into the folder (owner's pid and host; an
  ``flock`` the kernel releases when the owner dies), so a second evaluation into the same
  folder is refused and a lock left by a killed run is detected as stale and taken over;
- ``results.json`` / ``results.csv``: the scores, written atomically at the end, and again by
  ``python -m corr.eval score DIR`` (re-scoring needs the annotations, not the features).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import socket
import subprocess
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..datasets import PairRecord, check_images, load_pairs
from ..distributed import DistContext, shard
from ..extraction import ImageItem
from ..io import WriteError, atomic_write_json, remove_stale_temporaries
from ..keypoint_tables import (
    BUNDLED,
    REFERENCE_VERBATIM,
    default_tables,
    flip_permutation,
    load_groups,
    reference_groups,
)
from ..metrics import ALPHAS, evaluate, format_table, write_csv

PRED_FILE = "predictions.jsonl"
LOCK_FILE = "run.lock"

try:
    import fcntl
except ImportError:  # Windows: msvcrt's byte-range lock, also dropped when its owner dies
    fcntl = None
    import msvcrt
T_REF = {
    "spair": "max(width, height) of the target's bounding box",
    "ap10k": "max(w, h) of the target's COCO box",
    "pfpascal": "max(width, height) of the target image",
}


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


class BadPairsError(RuntimeError):
    """Pairs whose images are missing or unreadable (and ``--skip-bad`` was not given)."""


class ConfigMismatchError(RuntimeError):
    """The output folder holds a run with a different configuration."""


class RunLockedError(RuntimeError):
    """Another process is evaluating into (or re-scoring) the same folder."""


class RunLock:
    """Exclusive use of a run folder: ``run.lock`` names the owner (pid, host, start time) and
    carries an ``fcntl.flock`` that the kernel drops when the owner dies, even on ``kill -9``.
    A lock file whose flock is free was left by a dead process: it is reported as stale and
    taken over. Use as a context manager. (The lock is as reliable as ``flock`` on the folder's
    file system: local disks, and NFS that maps it to byte-range locks.)"""

    def __init__(self, folder: str | Path, log: Callable[[str], None] = print) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.log = log
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as err:
                raise WriteError(self.path, err) from None
            try:
                _lock_now(fd)
            except OSError as err:
                owner = _lock_owner(fd)
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EDEADLK):
                    raise WriteError(self.path, err) from None
                raise RunLockedError(
                    f"{self.path.parent} is in use by another evaluation ({owner}; see "
                    f"{self.path}); wait for it to finish, or use another --out"
                ) from None
            try:  # released (and removed) between our open and flock: lock the new file
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _lock_owner(fd)
        if stale != "owner unknown":
            self.log(f"note: {self.path}: stale lock of {stale}, no longer running; taken over")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(info) + "\n").encode())
            os.fsync(fd)
        except OSError as err:
            os.close(fd)
            raise WriteError(self.path, err) from None
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is None:
            return
        try:
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)  # before unlocking: a waiting process then locks a new file
        except OSError:
            pass  # a read-only folder, or removed by hand: the flock goes with the fd anyway
        os.close(self.fd)
        self.fd = None


def _lock_now(fd: int) -> None:
    """Take the exclusive lock of an open lock file, or raise ``OSError`` (EAGAIN) at once."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _lock_owner(fd: int) -> str:
    """``"process PID on HOST since TIME"`` from a lock file's content."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096) or b"null")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"process {int(info['pid'])} on {info['host']} since {when}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"


# ---------------------------------------------------------------------------------- records
def load_records(opts: EvalOptions) -> list[PairRecord]:
    kw = {"subset": opts.subset} if opts.dataset == "ap10k" and opts.subset else {}
    records = load_pairs(opts.dataset, opts.root, split=opts.split, **kw)
    if opts.limit is not None:
        records = records[: opts.limit]
    return records


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
    if opts.dataset == "pfpascal" and opts.geo_groups:
        raise ValueError(
            f"--geo-groups {opts.geo_groups}: PF-Pascal has no geometry-aware subset. Its CSV "
            "lists each pair's keypoints by position, not by a keypoint id, so a twin group "
            "(ids) cannot be matched to its points; drop --geo-groups for pfpascal (SPair-71k "
            "and AP-10K have one)"
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
        if opts.dataset == "pfpascal":
            raise ValueError(
                "--flip is for SPair-71k and AP-10K: PF-Pascal keypoints have no fixed semantic "
                "ids, so there is no left/right flip list for them"
            )
        flip_src = opts.flip_table or flip_default
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


# ---------------------------------------------------------------------------------- store
class PredictionStore:
    """The finished pairs of a run: one JSON line per pair, appended and fsync'd pair by pair.

    One process appends to ``predictions.jsonl``; under torchrun rank ``r`` appends to
    ``predictions.r.jsonl``, so no two processes write the same file. Reading takes every
    ``predictions*.jsonl`` of the folder. Each line carries a CRC-32 of its content
    (``"crc32"``; lines written before it existed are read without one). Only the torn last
    line of the file this process appends to (the pair in flight when it was stopped) is cut
    off; any other bad line (not JSON, not a prediction record, or failing its checksum) is left
    on disk. Every problem is reported in :attr:`problems` with its file and line number, and
    its pair is computed again. ``own=None`` opens the store read-only (re-scoring never
    rewrites a file). A failed append (disk full, read-only folder) restores the file's
    previous length and raises :class:`~corr.io.WriteError`.
    """

    def __init__(self, out: Path, own: str | None = PRED_FILE) -> None:
        self.out = Path(out)
        self.path = self.out / own if own else None
        self.entries: dict[str, dict] = {}
        self.problems: list[str] = []
        for f in sorted(self.out.glob("predictions*.jsonl")):
            self._read(f, repair_tail=f == self.path)

    def _read(self, path: Path, repair_tail: bool) -> None:
        data = path.read_bytes()
        offset = 0
        for number, line in enumerate(data.splitlines(keepends=True), 1):
            if not line.endswith(b"\n"):  # only the last line can lack its newline
                if repair_tail:
                    try:
                        with open(path, "r+b") as f:
                            f.truncate(offset)
                    except OSError as err:
                        raise WriteError(path, err) from None
                    self.problems.append(
                        f"{path}:{number}: torn last line (a write cut off) removed; "
                        "its pair is recomputed"
                    )
                else:
                    self.problems.append(f"{path}:{number}: torn last line ignored")
                break
            offset += len(line)
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            problem = _record_problem(entry)
            if problem is not None:
                self.problems.append(
                    f"{path}:{number}: {problem}; ignored (its pair is recomputed)"
                )
                continue
            entry.pop("crc32", None)
            self.entries[entry["pair_id"]] = entry

    def append(self, entry: dict) -> None:
        if self.path is None:
            raise RuntimeError("this prediction store was opened read-only")
        text = json.dumps(entry, separators=(",", ":"))
        line = f'{text[:-1]},"crc32":{zlib.crc32(text.encode())}}}\n'
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            try:  # leave no partial line behind
                with open(self.path, "r+b") as f:
                    f.truncate(size)
            except OSError:
                pass  # a torn last line is cut off on resume anyway
            raise WriteError(self.path, err) from None
        self.entries[entry["pair_id"]] = entry


_RECORD_KEYS = {"pair_id", "pred", "flip", "skipped", "crc32"}


def _record_problem(entry: Any) -> str | None:
    """Why a parsed line is not a valid prediction record (None when it is)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("pair_id"), str):
        return "not a prediction record"
    if set(entry) - _RECORD_KEYS or ("pred" in entry) == ("skipped" in entry):
        return "not a prediction record"
    if "crc32" in entry:
        body = {k: v for k, v in entry.items() if k != "crc32"}
        text = json.dumps(body, separators=(",", ":"))
        if entry["crc32"] != zlib.crc32(text.encode()):
            return "damaged (its checksum does not match)"
    if "pred" in entry:
        pred = entry["pred"]
        if not isinstance(pred, list) or not all(
            p is None
            or (isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p))
            for p in pred
        ):
            return "damaged (its points are not [x, y] pairs)"
    return None


def _points(arr: np.ndarray) -> list:
    return [
        None if not np.isfinite(p).all() else [round(float(p[0]), 3), round(float(p[1]), 3)]
        for p in arr
    ]


def _array(points: list) -> np.ndarray:
    return np.array(
        [[np.nan, np.nan] if p is None else p for p in points], dtype=np.float64
    ).reshape(-1, 2)


# ---------------------------------------------------------------------------------- running
def environment() -> dict[str, Any]:
    """Package versions, Python, platform and the git commit of this checkout."""
    import importlib.metadata as md

    from .. import __version__

    versions: dict[str, str | None] = {"corr": __version__}  # distribution: semcorr
    for pkg in (
        "torch",
        "diffusers",
        "timm",
        "numpy",
        "huggingface_hub",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    repo = Path(__file__).resolve().parents[2]
    commit = dirty = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


_NOT_IDENTITY = (
    "skip_bad",
    "extra",
    "batch_size",
    "num_workers",
    "extract_only",
    "memory_cache_gb",
)


def image_items(records: Sequence[PairRecord], flip: bool, matcher) -> list[ImageItem]:
    """The unique images a run needs: every source and target, and the mirrored sources with
    ``flip``. Categories are kept only when an extractor's features depend on them (a
    ``{category}`` prompt), so that an image is extracted once."""
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
    return list(items)


def _run_config(opts: EvalOptions, matcher_config: dict, geo_src, flip_src) -> dict:
    run = {k: v for k, v in asdict(opts).items() if k not in _NOT_IDENTITY}
    run["root"] = str(Path(opts.root).resolve())
    run["geo_groups"] = geo_src
    run["flip_table"] = flip_src if opts.flip else None
    return {"run": run, "matcher": matcher_config}


def run_eval(
    opts: EvalOptions,
    matcher,
    out: str | Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
    ctx: DistContext | None = None,
) -> dict:
    """Evaluate ``matcher`` (a :class:`corr.Matcher`) on a data set; resumable in ``out``.

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
    if not ctx.is_main:
        return _run_eval(opts, matcher, out, progress, log, ctx)
    with RunLock(out, log):
        remove_stale_temporaries(out, recursive=False)  # of a killed write of results or config
        return _run_eval(opts, matcher, out, progress, log, ctx)


def _run_eval(
    opts: EvalOptions,
    matcher,
    out: Path,
    progress: bool,
    log: Callable[[str], None],
    ctx: DistContext,
) -> dict:
    records = load_records(opts)
    if not records:
        raise ValueError(
            f"no pairs found for {opts.dataset} split {opts.split!r} under {opts.root}"
        )
    tables = tables_for(opts, sorted({r.table_category for r in records}))
    config = _run_config(opts, matcher.config(), tables.geo_source, tables.flip_source)
    cfg_path = out / "config.json"
    if ctx.is_main and not cfg_path.exists():
        atomic_write_json(cfg_path, config)
    ctx.barrier()  # the other ranks compare with what rank 0 found or wrote
    old = json.loads(cfg_path.read_text())
    if old != json.loads(json.dumps(config, default=str)):
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
    ctx.barrier()  # every rank has read the stores before any rank appends
    # stage 1: every unique image of the pairs still to do, in batches (cached ones skipped)
    items = image_items(todo if not opts.extract_only else todo_records, opts.flip, matcher)
    if ctx.active:
        if matcher.cache.root is None:
            raise ValueError(
                "several processes share features through an on-disk cache: give cache_dir"
            )
        if ctx.is_main:  # the configuration files of the cache, written once, by one process
            for category in {item.category for item in items}:
                for ext in matcher.extractors:
                    matcher.cache.write_config(matcher._cache_config(ext, category))
        matcher.cache.write_configs = False
        ctx.barrier()
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
        + (f", {len(extracted.bad)} unreadable (skipped)" if extracted.bad else "")
    )
    if opts.extract_only:
        ctx.barrier()
        log(f"--extract-only: the features are in {matcher.cache.root}; run without it to match")
        return {"extraction": extracted.as_dict()}
    ctx.barrier()  # every image's features are on disk before any rank matches
    # stage 2: the pairs, category by category, features kept in memory up to the budget
    matcher.cache.memory_items = max(matcher.cache.memory_items, len(items) * 2 + 8)
    matcher.cache.memory_bytes = int(opts.memory_cache_gb * 2**30)
    todo.sort(key=lambda r: (r.category, r.pair_id))
    mine = shard(todo, ctx)
    t0 = time.perf_counter()
    for rec in tqdm(mine, desc=f"{opts.dataset} pairs", unit="pair", disable=not progress):
        queries = np.where(rec.src_vis[:, None], rec.src_kps, np.nan)
        kwargs: dict[str, Any] = {"category": prompt_categories(rec)}
        if opts.flip:
            perm = flip_permutation(tables.flip[rec.table_category], len(queries))
            kwargs.update(flip=True, flip_pairs=perm, tgt_visible=rec.tgt_vis)
        try:
            res = matcher.match(rec.src_image, rec.tgt_image, queries, **kwargs)
        except (OSError, ValueError) as err:
            if not _is_image_error(err):
                raise ValueError(f"pair {rec.pair_id}: {err}") from err
            if not opts.skip_bad:
                raise BadPairsError(
                    f"pair {rec.pair_id}: {err}\nFix the data, or pass --skip-bad to record it as skipped."
                ) from err
            store.append({"pair_id": rec.pair_id, "skipped": str(err)})
            continue
        entry = {"pair_id": rec.pair_id, "pred": _points(res["keypoints1"])}
        if opts.flip:
            f = res["flip"]
            entry["flip"] = {
                "flipped": f["flipped"],
                "distance": f["distance"],
                "distance_flipped": f["distance_flipped"],
                "pred_plain": _points(f["keypoints1_plain"]),
            }
        store.append(entry)
    elapsed = time.perf_counter() - t0
    ctx.barrier()  # every rank's pairs are on disk
    if not ctx.is_main:
        return {}
    if ctx.active:  # the other ranks' predictions
        store = PredictionStore(out, own=None)

    skipped += _skipped_in_run(todo_records, store.entries)
    scored = [r for r in todo_records if "pred" in store.entries[r.pair_id]]
    results = score_run(opts, scored, store.entries, tables)
    results["skipped"] = skipped
    results["config"] = config
    results["environment"] = environment()
    results["timing"] = {
        "extraction_this_run": extracted.as_dict(),
        "processes": ctx.world,
        "pairs_computed_this_run": len(todo),
        "seconds_this_run": round(elapsed, 3),
        "seconds_per_pair_this_run": round(elapsed / len(mine), 4) if mine else None,
        "feature_cache": {"hits": matcher.cache.hits, "misses": matcher.cache.misses},
    }
    write_results(out, results)
    print_results(results, out, log)
    return results


def print_results(results: dict, out: Path, log: Callable[[str], None] = print) -> None:
    """The tables a run prints (and ``score`` prints again): PCK, and with flip alignment the
    PCK without it and the flip rates; then the notes and where the files are."""
    alphas = ALPHAS[results["dataset"]]
    log(format_table(results["results"], alphas))
    if "results_without_alignment" in results:
        log("\nWithout pose alignment (same pairs):")
        log(format_table(results["results_without_alignment"], alphas))
        log(_flip_summary(results["flip"]))
    for note in results["notes"]:
        log(f"note: {note}")
    skipped = results.get("skipped") or []
    if skipped:
        log(f"skipped {len(skipped)} pair(s) with bad images (listed in results.json)")
    log(f"results: {out / 'results.json'} and {out / 'results.csv'}")


def prompt_categories(rec: PairRecord) -> str | tuple[str, str]:
    """The category for a ``{category}`` prompt: per image where the data set names each
    image's own class (AP-10K species), else the pair's category."""
    src, tgt = rec.flags.get("src_species"), rec.flags.get("trg_species")
    if src and tgt:
        return (str(src), str(tgt))
    return rec.category


def _is_image_error(err: BaseException) -> bool:
    return isinstance(err, FileNotFoundError) or "cannot read image file" in str(err)


def _skipped_in_run(records: Sequence[PairRecord], entries: dict[str, dict]) -> list[dict]:
    """Pairs that failed while running (e.g. a truncated image) and were recorded as skipped."""
    return [
        {"pair_id": r.pair_id, "path": None, "reason": entries[r.pair_id]["skipped"]}
        for r in records
        if "skipped" in entries.get(r.pair_id, {})
    ]


def score_run(
    opts: EvalOptions,
    records: Sequence[PairRecord],
    entries: dict[str, dict],
    tables: Tables,
) -> dict:
    """PCK of the stored predictions (both averages, geo-aware subset, flip statistics)."""
    alphas = ALPHAS[opts.dataset]
    missing = [r.pair_id for r in records if r.pair_id not in entries]
    if missing:
        raise ValueError(
            f"{len(missing)} pairs have no prediction yet (first: {missing[0]}); run the evaluation to finish them"
        )
    if opts.pck not in ("<", "<="):
        raise ValueError(f"pck must be '<' or '<=', got {opts.pck!r}")
    inclusive = opts.pck == "<="
    preds = [_array(entries[r.pair_id]["pred"]) for r in records]
    out: dict[str, Any] = {
        "dataset": opts.dataset,
        "split": opts.split,
        "subset": opts.subset,
        "n_pairs": len(records),
        "metric": {
            "pck": (
                "a prediction is correct if ||pred - gt|| / T_ref <= alpha (inclusive, DIFT)"
                if inclusive
                else "a prediction is correct if ||pred - gt|| < alpha * T_ref (strict)"
            )
            + ", over keypoints visible in both images",
            "T_ref": T_REF[opts.dataset],
            "alphas": list(alphas),
            "per_image": "PCK of each pair, averaged over pairs (overall = mean over all pairs)",
            "per_keypoint": "all correct keypoints over all evaluated keypoints",
            "frame": "distances in original target-image pixels",
            "geo_groups": tables.geo_source,
        },
        "results": evaluate(records, preds, alphas, geo_groups=tables.geo, inclusive=inclusive),
        "notes": [tables.note] if tables.note else [],
    }
    if opts.flip:
        plain = [_array(entries[r.pair_id]["flip"]["pred_plain"]) for r in records]
        out["results_without_alignment"] = evaluate(
            records, plain, alphas, geo_groups=tables.geo, inclusive=inclusive
        )
        per_cat: dict[str, dict] = {}
        for r in records:
            c = per_cat.setdefault(r.category, {"n_pairs": 0, "n_flipped": 0})
            c["n_pairs"] += 1
            c["n_flipped"] += int(entries[r.pair_id]["flip"]["flipped"])
        for c in per_cat.values():
            c["flip_rate"] = c["n_flipped"] / c["n_pairs"]
        total = sum(c["n_pairs"] for c in per_cat.values())
        flipped = sum(c["n_flipped"] for c in per_cat.values())
        out["flip"] = {
            "per_category": dict(sorted(per_cat.items())),
            "overall": {"n_pairs": total, "n_flipped": flipped, "flip_rate": flipped / total},
        }
    return out


def _flip_summary(flip: dict) -> str:
    rows = [f"{'category':<20} {'pairs':>6} {'flipped':>8} {'rate':>6}"]
    for cat, c in flip["per_category"].items():
        rows.append(f"{cat:<20} {c['n_pairs']:>6} {c['n_flipped']:>8} {c['flip_rate']:>6.2f}")
    o = flip["overall"]
    rows.append(f"{'overall':<20} {o['n_pairs']:>6} {o['n_flipped']:>8} {o['flip_rate']:>6.2f}")
    return "Pose alignment: how often the mirrored source was chosen (per pair)\n" + "\n".join(rows)


def write_results(out: Path, results: dict) -> None:
    atomic_write_json(out / "results.json", results)
    write_csv(results["results"], out / "results.csv")
    if "results_without_alignment" in results:
        write_csv(results["results_without_alignment"], out / "results_without_alignment.csv")


def evaluate_run(out: str | Path, log: Callable[[str], None] = print) -> dict:
    """Re-score a finished run folder from its predictions (no features needed)."""
    out = Path(out)
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{out} is not an evaluation folder: {cfg_path} is missing")
    config = json.loads(cfg_path.read_text())
    run = config["run"]
    opts = EvalOptions(
        dataset=run["dataset"],
        root=run["root"],
        split=run["split"],
        subset=run.get("subset"),
        flip=run.get("flip", False),
        flip_table=run.get("flip_table"),
        geo_groups=run.get("geo_groups"),
        tables_rule=run.get("tables_rule", "ids"),
        pck=run.get("pck", "<"),
        limit=run.get("limit"),
    )
    with RunLock(out, log):  # not while an evaluation is writing into the folder
        return _rescore(out, opts, config, log)


def _rescore(out: Path, opts: EvalOptions, config: dict, log: Callable[[str], None]) -> dict:
    store = PredictionStore(out, own=None)  # read-only: re-scoring never rewrites a file
    for problem in store.problems:
        log(f"warning: {problem}")
    listed = [r for r in load_records(opts) if r.pair_id in store.entries]
    tables = tables_for(opts, sorted({r.table_category for r in listed}))
    listed, tables = apply_tables_rule(listed, tables, opts.tables_rule)
    records = [r for r in listed if "pred" in store.entries[r.pair_id]]
    previous = (
        json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    )
    results = score_run(opts, records, store.entries, tables)
    for key in ("skipped", "timing"):
        if key in previous:
            results[key] = previous[key]
    results["config"] = config
    results["environment"] = environment()
    write_results(out, results)
    print_results(results, out, log)
    return results
