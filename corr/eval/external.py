"""Score predictions made by any tool under corr's protocol (docs/protocol.md §7).

``python -m corr.eval score --predictions FILE --dataset spair --root data/SPair-71k`` reads

- a JSONL file, one pair per line: ``{"pair_id": ID, "pred": [[x, y] | null, ...]}``, where
  ``ID`` is corr's pair id (for SPair-71k the pair file's stem, e.g.
  ``"000001-2008_000008-2008_000075:aeroplane"``) and ``pred[k]`` is the prediction for
  keypoint ``k`` of the pair as corr's loader orders them (SPair-71k and AP-10K: the keypoint
  id; PF-Pascal: the row of the CSV) in **original target-image pixels**; ``null`` for none;
- or GeoAware-SC's ``result.pkl`` (SPair-71k; its ``pck_train.py --DO_EVAL`` writes it): a list
  of ``{"src_fn", "trg_fn", "src_kpts_pred" (30, 2+) (x, y) in its letterboxed
  ``resize_resolution`` frame, "resize_resolution"}``. It is read with a restricted unpickler
  that accepts only plain data and numpy arrays (anything that would run code is refused), and
  its points are mapped back to original target pixels with the reference's letterbox. Every
  array is sized before it is allocated: one larger than the file's own bytes could fill is
  refused (a forged file cannot ask for gigabytes).

It prints and writes the same tables as a corr run (both averages, the geometry-aware subset),
for the pairs that have predictions, and says how many pairs of the split have none.
No model code is imported.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import PairRecord
from ..geometry import Letterbox
from .plan import EvalOptions, apply_tables_rule, load_records, tables_for
from .results import environment, print_results, score_run, write_results

FORMATS = ("jsonl", "geoaware-pkl")


class PredictionsError(ValueError):
    """A predictions file that cannot be scored: names the file, the line or item, and why."""


# ------------------------------------------------------------------------------- reading
def read_jsonl(path: str | Path) -> dict[str, list]:
    """``pair_id -> pred`` from a JSONL file; a bad line is an error naming its number."""
    path = Path(path)
    out: dict[str, list] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                pair_id, pred = item["pair_id"], item["pred"]
                if not isinstance(pair_id, str) or not isinstance(pred, list):
                    raise TypeError("pair_id must be a string and pred a list")
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise PredictionsError(
                    f"{path}:{lineno}: not a prediction line ({err}); expected "
                    '{"pair_id": "...", "pred": [[x, y] | null, ...]}'
                ) from None
            if pair_id in out:
                raise PredictionsError(f"{path}:{lineno}: pair {pair_id!r} appears twice")
            out[pair_id] = pred
    return out


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused unrun. Every
    array, dtype and numpy scalar is sized before it is allocated: one larger than ``limit``
    bytes (a results file's arrays are made of its own bytes) is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def __init__(self, file: io.BytesIO, limit: int) -> None:
        super().__init__(file)
        self.limit = limit
        self.array_type = _bounded_array_type(limit)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refused: the pickle asks for {module}.{name}, which a results file never "
                "needs (it could run code); nothing of it was run"
            )
        found = super().find_class(module, name)
        limit = self.limit
        if name == "_reconstruct":

            def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
                if subtype is not np.ndarray:
                    raise pickle.UnpicklingError(f"refused: an array of type {subtype!r}")
                _check_size(shape, dtype, limit)
                return found(self.array_type, shape, dtype)

            return reconstruct
        if name == "dtype":

            def dtype(*args: Any) -> np.dtype:
                made = np.dtype(*args)
                _check_size((), made, limit)
                return made

            return dtype
        if name == "scalar":

            def scalar(dtype: Any, *args: Any) -> Any:
                _check_size((), dtype, limit)
                return found(dtype, *args)

            return scalar
        return found


def _check_size(shape: Any, dtype: Any, limit: int) -> None:
    """Refuse an array of ``shape`` and ``dtype`` above ``limit`` bytes, before allocating it."""
    try:
        dtype = np.dtype(dtype)  # a dtype, or its character code (b"b" in _reconstruct)
    except (TypeError, ValueError):
        raise pickle.UnpicklingError(f"refused: {dtype!r} is not a numpy dtype") from None
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"refused: {shape!r} is not an array shape")
    size = int(np.prod(dims, dtype=object)) * dtype.itemsize
    if size > limit:
        raise pickle.UnpicklingError(
            f"refused: it asks for an array of shape {dims} and type {dtype} ({size / 2**30:.3g} "
            f"GiB), more than the file's own bytes could fill ({limit} bytes); nothing was "
            "allocated"
        )


def _bounded_array_type(limit: int) -> type:
    """An ``ndarray`` subclass whose unpickling state is sized before numpy allocates it."""

    class BoundedArray(np.ndarray):
        def __setstate__(self, state: Any) -> None:
            if not isinstance(state, tuple) or len(state) not in (4, 5):
                raise pickle.UnpicklingError("refused: not an array's pickled state")
            shape, dtype = state[-4], state[-3]
            _check_size(shape, dtype, limit)
            super().__setstate__(state)

    return BoundedArray


#: an array of a results file holds at most this many times the file's size (object arrays
#: keep an 8-byte pointer per element, which a 1-byte pickle opcode can make)
ARRAY_BYTES_PER_FILE_BYTE = 8


def read_geoaware_pkl(path: str | Path, records: list[PairRecord]) -> dict[str, list]:
    """GeoAware-SC's ``result.pkl`` (SPair-71k) -> ``pair_id -> pred`` in original pixels."""
    path = Path(path)
    data = path.read_bytes()
    limit = ARRAY_BYTES_PER_FILE_BYTE * len(data) + 4096
    try:
        items = _DataOnlyUnpickler(io.BytesIO(data), limit).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        RecursionError,
    ) as err:
        raise PredictionsError(f"{path}: cannot read it as GeoAware's result.pkl: {err}") from None
    if not isinstance(items, list):
        raise PredictionsError(f"{path}: expected a list of pair results, got {type(items)}")
    by_names = {(r.category, r.src_image.stem, r.tgt_image.stem): r for r in records}
    out: dict[str, list] = {}
    for i, item in enumerate(items):
        try:
            src_fn, trg_fn = str(item["src_fn"]), str(item["trg_fn"])
            pred = np.asarray(item["src_kpts_pred"], dtype=np.float64)[:, :2]
            size = int(item["resize_resolution"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise PredictionsError(
                f"{path}: item {i} lacks src_fn / trg_fn / src_kpts_pred / resize_resolution "
                f"({err})"
            ) from None
        category = Path(src_fn).parent.name
        rec = by_names.get((category, Path(src_fn).stem, Path(trg_fn).stem))
        if rec is None:
            raise PredictionsError(
                f"{path}: item {i} ({category}: {Path(src_fn).name} -> {Path(trg_fn).name}) is "
                "not a pair of this split under --root"
            )
        k = len(rec.tgt_kps)
        if len(pred) < k:
            raise PredictionsError(f"{path}: item {i} has {len(pred)} keypoints, the pair {k}")
        w, h = rec.tgt_size
        # the reference letterboxes into size x size (scale size / max(W, H), centred; the
        # same frame as corr.geometry.Letterbox) and stores predictions as (x, y) there
        pts = Letterbox(w, h, size).from_letterbox(pred[:k])
        out[rec.pair_id] = pts.tolist()
    return out


# ------------------------------------------------------------------------------- scoring
def score_predictions(
    predictions: str | Path,
    dataset: str,
    root: str | Path,
    *,
    fmt: str | None = None,
    split: str = "test",
    subset: str | None = None,
    geo_groups: str | None = None,
    pck: str = "<",
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Score a predictions file (``fmt``: ``"jsonl"`` or ``"geoaware-pkl"``; default from the
    suffix) on ``dataset`` under ``root``; write ``results.json``/``.csv`` to ``out`` if given.
    Returns the results (as :func:`corr.eval.results.score_run` plus ``predictions`` facts)."""
    path = Path(predictions)
    if not path.is_file():
        raise PredictionsError(f"--predictions {path}: no such file")
    fmt = fmt or ("geoaware-pkl" if path.suffix == ".pkl" else "jsonl")
    if fmt not in FORMATS:
        raise PredictionsError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "geoaware-pkl" and dataset != "spair":
        raise PredictionsError(
            f"{path}: the GeoAware result.pkl converter reads SPair-71k results only; convert "
            "yours to JSONL (pair_id, pred in original target pixels)"
        )
    opts = EvalOptions(
        dataset=dataset, root=str(root), split=split, subset=subset, geo_groups=geo_groups, pck=pck
    )
    records = load_records(opts)
    preds = read_geoaware_pkl(path, records) if fmt == "geoaware-pkl" else read_jsonl(path)
    known = {r.pair_id: r for r in records}
    unknown = [p for p in preds if p not in known]
    if unknown:
        raise PredictionsError(
            f"{path}: {len(unknown)} pair id(s) are not pairs of {dataset} {split} under {root}, "
            f"e.g. {unknown[0]!r}"
        )
    entries: dict[str, dict] = {}
    for pid, pred in preds.items():
        k = len(known[pid].tgt_kps)
        if len(pred) != k:
            raise PredictionsError(
                f"{path}: pair {pid!r} has {len(pred)} predictions for its {k} keypoints"
            )
        entries[pid] = {"pred": pred}
    scored = [r for r in records if r.pair_id in entries]
    if not scored:
        raise PredictionsError(f"{path}: no predictions to score")
    tables = tables_for(opts, sorted({r.table_category for r in scored}))
    scored, tables = apply_tables_rule(scored, tables, opts.tables_rule)
    results = score_run(opts, scored, entries, tables)
    missing = len(records) - len(scored)
    results["predictions"] = {
        "file": str(path.resolve()),
        "format": fmt,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "pairs_scored": len(scored),
        "pairs_in_split": len(records),
        "pairs_without_prediction": missing,
    }
    if missing:
        results["notes"].append(
            f"{missing} of the {len(records)} pairs of the split have no prediction and are not "
            "in these figures"
        )
    results["config"] = {"run": {"dataset": dataset, "root": str(root), "split": split}}
    results["environment"] = environment()
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_results(folder, results)
        print_results(results, folder, log)
    else:  # nothing written: the tables without the line naming the files

        def tables_only(line: str) -> None:
            if not line.startswith("results: "):
                log(line)

        print_results(results, Path("."), tables_only)
    return results
