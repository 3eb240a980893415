"""``python -m corr.eval compare RUN_A RUN_B``: the complementarity table of two finished runs.

Per keypoint visible in both images of a pair and per alpha (default 0.05, 0.10, 0.15, as in
the SD+DINO paper's table), whether run A and run B are right:
both fail / A fails, B right / A right, B fails / both right (:mod:`corr.metrics.complementarity`).
Each run is read from its folder (``config.json``, ``results.json``, the stored predictions;
no features, no model) and its ground truth is loaded again from the data root its
``config.json`` records. Runs are refused, with a message naming both, when they are not
finished, cover different pairs (data set, split, ``--limit``, skipped pairs), were scored with
a different threshold reference or comparison, or read different annotations for a pair.

The table is printed and written (atomically) as ``complementarity.json`` (with both runs'
configurations) and ``complementarity.csv``, in ``--out`` (default: a folder
``compare-<A>-vs-<B>`` beside run A).

Example::

    python -m corr.eval compare runs/spair-test-1a2b3c4d runs/spair-test-5e6f7a8b
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import PairRecord
from ..io import WriteError, atomic_write_json
from ..metrics import (
    alpha_key,
    complementarity,
    format_complementarity,
    write_complementarity_csv,
)
from .lock import RunLock, RunLockedError
from .plan import load_records
from .results import environment, options_from_config
from .store import PredictionStore, points_from_json

#: the thresholds of the SD+DINO paper's complementarity table
DEFAULT_ALPHAS = (0.05, 0.10, 0.15)
JSON_FILE = "complementarity.json"
CSV_FILE = "complementarity.csv"


class CompareError(ValueError):
    """Two runs that cannot be compared (unfinished, other pairs, other thresholds)."""


@dataclass
class FinishedRun:
    """A finished run as ``compare`` reads it: its files and the pairs it scored."""

    folder: Path
    config: dict
    results: dict
    records: list[PairRecord]  # the scored pairs (skipped ones left out), by pair_id
    preds: dict[str, np.ndarray]  # pair_id -> (K, 2) predicted target points, original pixels

    @property
    def rule(self) -> str:
        """The run's PCK comparison, ``"<"`` (strict) or ``"<="`` (inclusive)."""
        return self.config["run"].get("pck", "<")

    @property
    def t_ref(self) -> str:
        """The threshold reference its ``results.json`` names."""
        return str(self.results.get("metric", {}).get("T_ref"))

    def describe(self) -> dict[str, Any]:
        """What the run was: folder, data, extractors (with their weights) and protocol."""
        run, matcher = self.config["run"], self.config.get("matcher", {})
        extractors = [
            f"{e.get('name')} ({e['weights']})" if e.get("weights") else str(e.get("name"))
            for e in matcher.get("extractors", [])
        ]
        return {
            "folder": str(self.folder.resolve()),
            "dataset": run["dataset"],
            "split": run["split"],
            "subset": run.get("subset"),
            "root": run["root"],
            "n_pairs": len(self.records),
            "extractors": extractors,
            "protocol": matcher.get("protocol"),
            "overrides": matcher.get("overrides"),
            "flip": run.get("flip", False),
            "pck": self.rule,
            "T_ref": self.t_ref,
        }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CompareError(
            f"{path} is not valid JSON ({err}); re-score the run: "
            f"python -m corr.eval score {path.parent}"
        ) from None


def load_finished_run(folder: str | Path) -> FinishedRun:
    """Read a finished run folder: every pair of its data set predicted or recorded as skipped,
    ``results.json`` written. Raises FileNotFoundError (not a run folder) or
    :class:`CompareError` (unfinished, damaged predictions) naming the folder."""
    folder = Path(folder)
    cfg_path, res_path = folder / "config.json", folder / "results.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder} is not an evaluation folder: {cfg_path} is missing")
    if not res_path.is_file():
        raise CompareError(
            f"{folder} is not finished ({res_path} is missing): run its evaluation command "
            "again to finish it"
        )
    config, results = _read_json(cfg_path), _read_json(res_path)
    store = PredictionStore(folder, own=None)
    if store.problems:
        raise CompareError(
            f"{folder}: {store.problems[0]}; run its evaluation command again to recompute "
            "the damaged pairs"
        )
    listed = load_records(options_from_config(config))
    skipped = {s["pair_id"] for s in results.get("skipped") or []}
    unfinished = [
        r.pair_id for r in listed if r.pair_id not in store.entries and r.pair_id not in skipped
    ]
    if unfinished:
        raise CompareError(
            f"{folder} is not finished: {len(unfinished)} of {len(listed)} pairs have no "
            f"prediction (first: {unfinished[0]}); run its evaluation command again to finish it"
        )
    records = sorted(
        (r for r in listed if "pred" in store.entries.get(r.pair_id, {})),
        key=lambda r: r.pair_id,
    )
    preds = {r.pair_id: points_from_json(store.entries[r.pair_id]["pred"]) for r in records}
    return FinishedRun(folder, config, results, records, preds)


def _first(items: Sequence[str]) -> str:
    return f" (first: {items[0]})" if items else ""


def check_comparable(a: FinishedRun, b: FinishedRun) -> None:
    """Refuse (:class:`CompareError`, naming both runs) two runs over different data sets or
    pairs, with different threshold references or comparisons, or whose ground truth differs
    for a pair (other annotations under the same pair names)."""
    names = f"run A ({a.folder}) and run B ({b.folder})"
    da, db = a.describe(), b.describe()
    what_a = (da["dataset"], da["split"], da["subset"])
    what_b = (db["dataset"], db["split"], db["subset"])
    if what_a != what_b:
        raise CompareError(
            f"{names} evaluate different data: {'/'.join(filter(None, what_a))} and "
            f"{'/'.join(filter(None, what_b))}; compare needs two runs over the same pairs"
        )
    ids_a, ids_b = [r.pair_id for r in a.records], [r.pair_id for r in b.records]
    if ids_a != ids_b:
        only_a = sorted(set(ids_a) - set(ids_b))
        only_b = sorted(set(ids_b) - set(ids_a))
        raise CompareError(
            f"{names} scored different pairs: A {len(ids_a)}, B {len(ids_b)}; "
            f"{len(only_a)} only in A{_first(only_a)}, {len(only_b)} only in B{_first(only_b)}. "
            "compare needs two runs over the same pairs (same --limit, no pair skipped in one "
            "run only)"
        )
    if a.rule != b.rule or a.t_ref != b.t_ref:
        raise CompareError(
            f"{names} use different thresholds: A counts ||pred - gt|| {a.rule} alpha * T_ref "
            f"with T_ref = {a.t_ref}, B {b.rule} with T_ref = {b.t_ref}; run both with the same "
            "--pck (and protocol) to compare them"
        )
    for ra, rb in zip(a.records, b.records, strict=True):
        same = (
            ra.num_keypoints == rb.num_keypoints
            and np.array_equal(ra.mutual, rb.mutual)
            and np.array_equal(ra.tgt_kps[ra.mutual], rb.tgt_kps[rb.mutual])
            and ra.pck_size == rb.pck_size
        )
        if not same:
            raise CompareError(
                f"{names} read different ground truth for pair {ra.pair_id} (A from "
                f"{da['root']}, B from {db['root']}): its keypoints or T_ref differ; compare "
                "runs over the same annotations"
            )


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    out: str | Path | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The complementarity table of two finished runs over the same pairs, printed with
    ``log`` and written to ``out`` (default ``compare-<A>-vs-<B>`` beside ``run_a``) as
    ``complementarity.json`` and ``complementarity.csv``. Each run folder is locked while it
    is read (not while an evaluation writes into it)."""
    fa, fb = Path(run_a), Path(run_b)
    if fa.resolve() == fb.resolve():
        raise CompareError(f"compare needs two different run folders, got {fa} twice")
    with ExitStack() as stack:
        for folder in (fa, fb):
            if folder.is_dir():
                stack.enter_context(RunLock(folder, log))
        a, b = load_finished_run(fa), load_finished_run(fb)
    check_comparable(a, b)
    table = complementarity(
        a.records,
        [a.preds[r.pair_id] for r in a.records],
        [b.preds[r.pair_id] for r in a.records],
        alphas,
        inclusive=a.rule == "<=",
    )
    desc = a.describe()
    result = {
        "what": "complementarity of run A and run B, per keypoint and threshold",
        "dataset": desc["dataset"],
        "split": desc["split"],
        "subset": desc["subset"],
        "T_ref": a.t_ref,
        "run_a": desc,
        "run_b": b.describe(),
        **table,
        "configs": {"run_a": a.config, "run_b": b.config},
        "environment": environment(),
    }
    dest = Path(out) if out is not None else fa.parent / f"compare-{fa.name}-vs-{fb.name}"
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(dest, err) from None
    atomic_write_json(dest / JSON_FILE, result)
    write_complementarity_csv(table, dest / CSV_FILE)
    log(summary(result))
    log(f"results: {dest / JSON_FILE} and {dest / CSV_FILE} (per category too)")
    return result


def summary(result: dict[str, Any]) -> str:
    """The printed report: what was compared, the rule, and the overall table."""
    o = result["overall"]
    data = "/".join(filter(None, (result["dataset"], result["split"], result["subset"])))
    rule = "<=" if result["run_a"]["pck"] == "<=" else "<"
    lines = [
        f"Complementarity per keypoint ({data}: {o['n_keypoints']} keypoints visible in both "
        f"images of {o['n_pairs']} pairs); cells: % of those keypoints (count)",
        f"A: {result['run_a']['folder']}: {', '.join(result['run_a']['extractors'])}",
        f"B: {result['run_b']['folder']}: {', '.join(result['run_b']['extractors'])}",
        f"correct: ||pred - gt|| {rule} alpha * T_ref, T_ref = {result['T_ref']}; "
        "PCK A / B = per keypoint",
        "",
        format_complementarity(result),
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m corr.eval compare",
        description="Complementarity of two finished runs over the same pairs: per keypoint and "
        "threshold, both fail / A fails, B right / A right, B fails / both right.",
    )
    p.add_argument("run_a", metavar="RUN_A", help="run folder A (python -m corr.eval ... --out)")
    p.add_argument("run_b", metavar="RUN_B", help="run folder B, over the same pairs")
    p.add_argument(
        "--alphas",
        default=",".join(alpha_key(a) for a in DEFAULT_ALPHAS),
        help="comma-separated PCK thresholds (default: %(default)s, the SD+DINO paper's)",
    )
    p.add_argument(
        "--out", help="folder for complementarity.json/.csv (default: compare-A-vs-B beside A)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corr.eval compare``: 0 done, 1 a file could not be written, 2 refused."""
    args = build_parser().parse_args(argv)
    try:
        try:
            alphas = [float(x) for x in args.alphas.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--alphas {args.alphas!r}: give numbers like 0.05,0.10") from None
        if not alphas or not all(0 < x < 1 for x in alphas):
            raise ValueError(f"--alphas {args.alphas!r}: give thresholds between 0 and 1")
        compare_runs(args.run_a, args.run_b, out=args.out, alphas=alphas)
        return 0
    except WriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (RunLockedError, FileNotFoundError, ValueError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2
