"""``predictions.jsonl``: the finished pairs of a run, one checksummed JSON line per pair.

Lines are appended and fsync'd pair by pair, so an interrupted run (even ``kill -9``) loses at
most the pair in flight. Points are stored in original target pixels, rounded to 1/1000 px,
``null`` for a keypoint without a prediction.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..io import WriteError, atomic_write_bytes

PRED_FILE = "predictions.jsonl"


class PredictionStore:
    """The finished pairs of a run: one JSON line per pair, appended and fsync'd pair by pair.

    One process appends to ``predictions.jsonl``; under torchrun rank ``r`` appends to
    ``predictions.r.jsonl``, so no two processes write the same file. Reading takes every
    ``predictions*.jsonl`` of the folder. Each line carries a CRC-32 of its content
    (``"crc32"``; lines written before it existed are read without one). A bad line (not JSON,
    not a prediction record, failing its checksum, or the torn last line of a cut-off write) is
    reported in :attr:`problems` with its file and line number, and its pair is computed again.
    The file this process appends to is repaired at once: rewritten atomically (a temporary
    file, fsync, rename) with every good line in its order and the bad ones left out, so the
    next run finds it clean and reports nothing. ``own=None`` opens the store read-only:
    re-scoring, and the files of other ranks, are never rewritten. A failed append (disk full,
    read-only folder) restores the file's previous length and raises
    :class:`~corr.io.WriteError`.
    """

    def __init__(self, out: Path, own: str | None = PRED_FILE) -> None:
        self.out = Path(out)
        self.path = self.out / own if own else None
        self.entries: dict[str, dict] = {}
        self.problems: list[str] = []
        for f in sorted(self.out.glob("predictions*.jsonl")):
            self._read(f, repair=f == self.path)

    def _read(self, path: Path, repair: bool) -> None:
        data = path.read_bytes()
        good: list[bytes] = []
        bad: list[str] = []
        for number, line in enumerate(data.splitlines(keepends=True), 1):
            if not line.endswith(b"\n"):  # only the last line can lack its newline
                bad.append(f"{path}:{number}: torn last line (a write cut off)")
                break
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            problem = _record_problem(entry)
            if problem is not None:
                bad.append(f"{path}:{number}: {problem}")
                continue
            good.append(line)
            entry.pop("crc32", None)
            self.entries[entry["pair_id"]] = entry
        if not bad:
            return
        if repair:
            atomic_write_bytes(path, b"".join(good))  # raises WriteError naming the file
            self.problems += [f"{b}; removed from the file, its pair is recomputed" for b in bad]
        else:
            self.problems += [f"{b}; ignored (the run recomputes its pair)" for b in bad]

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


def points_to_json(arr: np.ndarray) -> list:
    """``(K, 2)`` points -> ``[[x, y] | None, ...]`` (1/1000 px; ``None`` where not finite)."""
    return [
        None if not np.isfinite(p).all() else [round(float(p[0]), 3), round(float(p[1]), 3)]
        for p in arr
    ]


def points_from_json(points: list) -> np.ndarray:
    """:func:`points_to_json`'s list -> ``(K, 2)`` float64 points, NaN rows for ``None``."""
    return np.array(
        [[np.nan, np.nan] if p is None else p for p in points], dtype=np.float64
    ).reshape(-1, 2)
