"""Complementarity of two sets of predictions on the same pairs: per keypoint and threshold, which
of the two is right.

The analysis of the SD+DINO paper (Zhang et al., "A Tale of Two Features", NeurIPS 2023): for
every keypoint visible in both images of a pair (the keypoints PCK evaluates) and every alpha,
one of four outcomes

* ``both_fail``: neither prediction is correct;
* ``a_fails_b_right``: A's is wrong, B's correct;
* ``a_right_b_fails``: A's is correct, B's wrong;
* ``both_right``: both are correct;

with "correct" as in :func:`corr.metrics.evaluate`: ``||pred - gt|| < alpha * T_ref`` (strict)
or ``||pred - gt|| / T_ref <= alpha`` (inclusive), distances in original target pixels,
``T_ref = record.pck_size``; a missing prediction is wrong. Counts are per keypoint (every
evaluated keypoint of every pair counts once).

Result layout (JSON-serialisable)::

    {"alphas": ["0.05", ...], "outcomes": [...], "definition": str,
     "categories": {category: block, ...}, "overall": block}
    block = {"n_pairs", "n_keypoints",
             "counts": {"0.05": {outcome: int, ...}, ...},
             "shares": {"0.05": {outcome: fraction | None, ...}, ...},
             "pck_per_keypoint_a": {"0.05": fraction | None, ...}, "pck_per_keypoint_b": {...}}
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from corr.datasets.records import PairRecord

from .pck import alpha_key, pair_distances

__all__ = [
    "OUTCOMES",
    "OUTCOME_TITLES",
    "complementarity",
    "format_complementarity",
    "write_complementarity_csv",
]

#: the four outcomes of a keypoint, in the paper's order
OUTCOMES = ("both_fail", "a_fails_b_right", "a_right_b_fails", "both_right")
OUTCOME_TITLES = {
    "both_fail": "both fail",
    "a_fails_b_right": "A fails, B right",
    "a_right_b_fails": "A right, B fails",
    "both_right": "both right",
}


def keypoint_correct(
    pred: np.ndarray, record: PairRecord, alphas: Sequence[float], inclusive: bool
) -> np.ndarray:
    """``(n_alpha, n_mutual)`` bool: whether each keypoint visible in both images of ``record``
    is predicted within ``alpha * T_ref`` (``pred``: ``(K, 2)`` target original pixels)."""
    dist = pair_distances(pred, record)[record.mutual]
    a = np.asarray(alphas, dtype=np.float64)[:, None]
    if inclusive:
        return dist[None, :] / record.pck_size <= a
    return dist[None, :] < a * record.pck_size


class _Tally:
    def __init__(self, n_alpha: int) -> None:
        self.n_pairs = 0
        self.n_kps = 0
        self.counts = np.zeros((n_alpha, len(OUTCOMES)), np.int64)

    def add(self, ok_a: np.ndarray, ok_b: np.ndarray) -> None:
        self.n_pairs += 1
        self.n_kps += ok_a.shape[1]
        # outcome index: 2 * A right + B right -> 0 both fail, 1 A fails B right, ...
        index = 2 * ok_a.astype(np.int64) + ok_b.astype(np.int64)
        for i, row in enumerate(index):
            self.counts[i] += np.bincount(row, minlength=len(OUTCOMES))

    def block(self, keys: list[str]) -> dict[str, Any]:
        n = self.n_kps

        def share(v: int) -> float | None:
            return int(v) / n if n else None

        counts = {
            k: dict(zip(OUTCOMES, map(int, row), strict=True))
            for k, row in zip(keys, self.counts, strict=True)
        }
        return {
            "n_pairs": self.n_pairs,
            "n_keypoints": n,
            "counts": counts,
            "shares": {k: {o: share(v) for o, v in c.items()} for k, c in counts.items()},
            "pck_per_keypoint_a": {
                k: share(c["a_right_b_fails"] + c["both_right"]) for k, c in counts.items()
            },
            "pck_per_keypoint_b": {
                k: share(c["a_fails_b_right"] + c["both_right"]) for k, c in counts.items()
            },
        }


def complementarity(
    records: Sequence[PairRecord],
    preds_a: Sequence[np.ndarray],
    preds_b: Sequence[np.ndarray],
    alphas: Sequence[float],
    inclusive: bool = False,
) -> dict[str, Any]:
    """The four outcomes of every evaluated keypoint of ``records`` under predictions A and B
    (one ``(K, 2)`` array per record each, target original pixels), per category and overall.

    Raises ValueError on a length mismatch, a wrong prediction shape, duplicate or no alphas,
    or a pair with evaluated keypoints but no valid ``pck_size``. See the module docstring.
    """
    if not len(records) == len(preds_a) == len(preds_b):
        raise ValueError(
            f"{len(records)} records but {len(preds_a)} and {len(preds_b)} predictions"
        )
    keys = [alpha_key(a) for a in alphas]
    if not keys or len(set(keys)) != len(keys):
        raise ValueError(f"give distinct alphas, got {list(alphas)}")
    per_cat: dict[str, _Tally] = {}
    overall = _Tally(len(keys))
    for rec, pa, pb in zip(records, preds_a, preds_b, strict=True):
        if rec.mutual.any() and not (np.isfinite(rec.pck_size) and rec.pck_size > 0):
            raise ValueError(f"pair {rec.pair_id}: invalid T_ref (pck_size={rec.pck_size})")
        ok_a = keypoint_correct(pa, rec, alphas, inclusive)
        ok_b = keypoint_correct(pb, rec, alphas, inclusive)
        per_cat.setdefault(rec.category, _Tally(len(keys))).add(ok_a, ok_b)
        overall.add(ok_a, ok_b)
    rule = "||pred - gt|| / T_ref <= alpha" if inclusive else "||pred - gt|| < alpha * T_ref"
    return {
        "alphas": keys,
        "outcomes": list(OUTCOMES),
        "definition": (
            f"per keypoint visible in both images of a pair and per alpha, whether A's and B's "
            f"predictions are correct ({rule}, T_ref = the pair's pck_size, distances in "
            "original target pixels; a missing prediction is wrong); counts are keypoints, "
            "shares are fractions of the evaluated keypoints"
        ),
        "categories": {c: per_cat[c].block(keys) for c in sorted(per_cat)},
        "overall": overall.block(keys),
    }


def _pct(count: int, share: float | None) -> str:
    return "-" if share is None else f"{100 * share:5.1f} ({count})"


def format_complementarity(result: dict[str, Any], block: str = "overall") -> str:
    """A plain-text table of one block of a :func:`complementarity` result (``"overall"`` or a
    category): one row per alpha, the four outcomes in % of the evaluated keypoints (count),
    then each side's PCK per keypoint in %."""
    b = result["overall"] if block == "overall" else result["categories"][block]
    titles = [OUTCOME_TITLES[o] for o in OUTCOMES] + ["PCK A", "PCK B"]
    rows = []
    for k in result["alphas"]:
        cells = [_pct(b["counts"][k][o], b["shares"][k][o]) for o in OUTCOMES]
        for side in ("a", "b"):
            v = b[f"pck_per_keypoint_{side}"][k]
            cells.append("-" if v is None else f"{100 * v:.1f}")
        rows.append((k, cells))
    widths = [max(len(t), *(len(c[i]) for _, c in rows)) for i, t in enumerate(titles)]
    lead = max(len("alpha"), *(len(k) for k, _ in rows))

    def line(first: str, cells: list[str]) -> str:
        return "  ".join(
            [first.ljust(lead)] + [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
        )

    title = line("alpha", titles)
    return "\n".join([title, "-" * len(title), *(line(k, c) for k, c in rows)]) + "\n"


def csv_columns() -> list[str]:
    """The header of :func:`write_complementarity_csv`."""
    return [
        "category",
        "alpha",
        "n_pairs",
        "n_keypoints",
        *OUTCOMES,
        *(f"share_{o}" for o in OUTCOMES),
        "pck_per_keypoint_a",
        "pck_per_keypoint_b",
    ]


def write_complementarity_csv(result: dict[str, Any], path: str | os.PathLike) -> None:
    """One row per (category, alpha), then the ``overall`` rows: counts of keypoints, shares
    (fractions in [0, 1]; empty where no keypoint was evaluated). Written atomically."""
    from corr.io import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_columns())
    blocks = [*result["categories"].items(), ("overall", result["overall"])]
    for name, b in blocks:
        for k in result["alphas"]:
            shares = [b["shares"][k][o] for o in OUTCOMES]
            pcks = [b["pck_per_keypoint_a"][k], b["pck_per_keypoint_b"][k]]
            w.writerow(
                [name, k, b["n_pairs"], b["n_keypoints"]]
                + [b["counts"][k][o] for o in OUTCOMES]
                + ["" if v is None else repr(v) for v in shares + pcks]
            )
    atomic_write_text(path, buf.getvalue())
