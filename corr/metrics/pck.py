"""PCK evaluation (docs/protocol.md §7): per-image and per-keypoint averages, geometry-aware subset.

A predicted target keypoint is correct iff ``||pred - gt|| < alpha * T_ref`` (strict ``<``), in
target original pixels, counted only for keypoints visible in both images (``record.mutual``).
``T_ref`` is ``record.pck_size`` (SPair-71k: max side of the target bbox; AP-10K: max(w, h) of the
target COCO box; PF-Pascal: max(W, H) of the target image).

Result layout (JSON-serialisable; every PCK is a fraction in [0, 1], ``None`` where nothing was
evaluated)::

    {"dataset", "alphas": ["0.10", ...], "definition": str,
     "categories": {category: block, ...}, "overall": block}
    block = {"n_pairs", "n_pairs_evaluated", "n_pairs_without_keypoints", "n_keypoints",
             "pck_per_image": {"0.10": v, ...}, "pck_per_keypoint": {"0.10": v, ...},
             "geo": {...}}                      # only when geo_groups is given
    geo   = {"n_pairs", "n_keypoints", "share_pairs", "share_keypoints",
             "pck_per_image": {...}, "pck_per_keypoint": {...}}

Alpha keys are strings with two decimals (``"0.10"``, ``"0.05"``), more when two decimals do not
represent the value (``"0.005"``), so JSON files sort and read well.

* per image: each pair's PCK (correct / evaluated keypoints), averaged over the pairs with at
  least one evaluated keypoint; pairs without any are counted in ``n_pairs_without_keypoints``.
  "overall" averages over all such pairs, which equals the category means weighted by their
  pair counts.
* per keypoint: all correct keypoints over all evaluated keypoints.
* geometry-aware: a mutually visible keypoint whose group (``geo_groups[record.table_category]``)
  has at least two members visible in the target. ``geo.n_pairs`` counts pairs with at least one
  such keypoint (their geo per-image PCK is averaged over those pairs); ``share_pairs`` =
  ``geo.n_pairs / n_pairs_evaluated``; ``share_keypoints`` = ``geo.n_keypoints / n_keypoints``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

from corr.datasets.records import PairRecord
from corr.keypoint_tables import geo_group_of

__all__ = [
    "ALPHAS",
    "T_REF",
    "alpha_key",
    "pair_distances",
    "evaluate",
    "format_table",
    "TABLE_WIDTH",
    "write_csv",
]

ALPHAS: dict[str, tuple[float, ...]] = {
    "spair": (0.10, 0.05, 0.01),
    "ap10k": (0.10, 0.05, 0.01),
    "pfpascal": (0.05, 0.10, 0.15),
    "spair-u": (0.10, 0.05, 0.01),
    "pfwillow": (0.05, 0.10, 0.15),
}

T_REF: dict[str, str] = {
    "spair": "max(width, height) of the target bounding box",
    "ap10k": "max(w, h) of the target COCO box",
    "pfpascal": "max(W, H) of the target image",
    "spair-u": "max(width, height) of the target bounding box",
    "pfwillow": "max(w, h) of the tight box around the target keypoints",
}


def alpha_key(alpha: float) -> str:
    """JSON key of an alpha: two decimals (``"0.10"``) unless more are needed (``"0.005"``)."""
    a = float(alpha)
    for d in range(2, 13):
        s = f"{a:.{d}f}"
        if abs(float(s) - a) <= 1e-12 * max(1.0, abs(a)):
            return s
    return repr(a)


def pair_distances(pred: np.ndarray, record: PairRecord) -> np.ndarray:
    """(K,) Euclidean distances in target original pixels between ``pred`` (K, 2) ``(x, y)``
    and the ground truth; NaN where the keypoint is not mutually visible, ``inf`` where it is
    but the prediction is missing (NaN/inf), so a missing prediction counts as wrong.
    """
    pred = np.asarray(pred, dtype=np.float64)
    k = record.num_keypoints
    if pred.shape != (k, 2):
        raise ValueError(
            f"pair {record.pair_id}: prediction has shape {pred.shape}, expected ({k}, 2)"
        )
    mutual = record.mutual
    dist = np.full(k, np.nan)
    diff = pred[mutual] - record.tgt_kps[mutual]
    d = np.hypot(diff[:, 0], diff[:, 1])
    d[~np.isfinite(d)] = np.inf
    dist[mutual] = d
    return dist


def _geo_mask(record: PairRecord, groups: list[list[int]], cache: dict) -> np.ndarray:
    """(K,) bool: mutual keypoints with >= 2 members of their group visible in the target."""
    key = (record.table_category, record.num_keypoints)
    if key not in cache:
        cache[key] = geo_group_of(groups, record.num_keypoints)
    gid = cache[key]
    counts = np.bincount(gid[record.tgt_vis], minlength=int(gid.max(initial=-1)) + 1)
    return record.mutual & (counts[gid] >= 2)


class _Acc:
    """Accumulates per-pair counts for one category (or overall)."""

    def __init__(self, n_alpha: int) -> None:
        self.n_pairs = 0
        self.n_empty = 0
        self.n_kps = 0
        self.correct = np.zeros(n_alpha, np.int64)
        self.ratio_sum = np.zeros(n_alpha)
        self.geo_pairs = 0
        self.geo_kps = 0
        self.geo_correct = np.zeros(n_alpha, np.int64)
        self.geo_ratio_sum = np.zeros(n_alpha)

    def add(self, ok: np.ndarray, geo_ok: np.ndarray | None) -> None:
        """``ok``: (n_alpha, n_evaluated) bool; ``geo_ok``: (n_alpha, n_geo) bool or None."""
        self.n_pairs += 1
        n = ok.shape[1]
        if n == 0:
            self.n_empty += 1
            return
        self.n_kps += n
        c = ok.sum(1)
        self.correct += c
        self.ratio_sum += c / n
        if geo_ok is not None and geo_ok.shape[1] > 0:
            g = geo_ok.sum(1)
            self.geo_pairs += 1
            self.geo_kps += geo_ok.shape[1]
            self.geo_correct += g
            self.geo_ratio_sum += g / geo_ok.shape[1]

    def block(self, keys: list[str], with_geo: bool) -> dict[str, Any]:
        def per(values: np.ndarray, denom: int) -> dict[str, float | None]:
            return {
                k: (float(v) / denom if denom else None) for k, v in zip(keys, values, strict=True)
            }

        n_eval = self.n_pairs - self.n_empty
        out: dict[str, Any] = {
            "n_pairs": self.n_pairs,
            "n_pairs_evaluated": n_eval,
            "n_pairs_without_keypoints": self.n_empty,
            "n_keypoints": self.n_kps,
            "pck_per_image": per(self.ratio_sum, n_eval),
            "pck_per_keypoint": per(self.correct, self.n_kps),
        }
        if with_geo:
            out["geo"] = {
                "n_pairs": self.geo_pairs,
                "n_keypoints": self.geo_kps,
                "share_pairs": self.geo_pairs / n_eval if n_eval else None,
                "share_keypoints": self.geo_kps / self.n_kps if self.n_kps else None,
                "pck_per_image": per(self.geo_ratio_sum, self.geo_pairs),
                "pck_per_keypoint": per(self.geo_correct, self.geo_kps),
            }
        return out


def evaluate(
    records: Sequence[PairRecord],
    predictions: Sequence[np.ndarray],
    alphas: Sequence[float],
    geo_groups: dict[str, list[list[int]]] | None = None,
    inclusive: bool = False,
) -> dict[str, Any]:
    """PCK of ``predictions`` (one (K, 2) array per record, target original pixels).

    ``inclusive=True`` counts ``||pred - gt|| / T_ref <= alpha`` as correct (DIFT's rule)
    instead of the strict ``||pred - gt|| < alpha * T_ref``.

    ``geo_groups`` is a table from :func:`corr.keypoint_tables.load_groups`; every record's
    ``table_category`` must be in it. Raises ValueError on a length mismatch, a wrong prediction
    shape, an unknown table category, or a pair with evaluated keypoints but no valid ``pck_size``.
    See the module docstring for the result layout.
    """
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise ValueError("no alphas given")
    keys = [alpha_key(a) for a in alphas]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate alphas: {alphas}")
    a = np.asarray(alphas)[:, None]
    with_geo = geo_groups is not None
    per_cat: dict[str, _Acc] = {}
    overall = _Acc(len(alphas))
    cache: dict = {}
    for rec, pred in zip(records, predictions, strict=True):
        dist = pair_distances(pred, rec)
        mutual = rec.mutual
        if mutual.any() and not (math.isfinite(rec.pck_size) and rec.pck_size > 0):
            raise ValueError(
                f"pair {rec.pair_id}: invalid T_ref (pck_size={rec.pck_size}); "
                "check the target image / box"
            )
        ok = _correct(dist[mutual], a, rec.pck_size, inclusive)  # (n_alpha, n_mutual)
        geo_ok = None
        if with_geo:
            if rec.table_category not in geo_groups:
                raise ValueError(
                    f"pair {rec.pair_id}: category {rec.table_category!r} is not in the geo "
                    f"table (it has {sorted(geo_groups)[:5]}...)"
                )
            geo = _geo_mask(rec, geo_groups[rec.table_category], cache)
            geo_ok = _correct(dist[geo], a, rec.pck_size, inclusive)
        acc = per_cat.setdefault(rec.category, _Acc(len(alphas)))
        acc.add(ok, geo_ok)
        overall.add(ok, geo_ok)
    dataset = records[0].dataset if records else ""
    datasets = {r.dataset for r in records}
    t_ref = T_REF.get(dataset, "record.pck_size") if len(datasets) <= 1 else "record.pck_size"
    rule = (
        "||pred - gt|| / T_ref <= alpha (inclusive)"
        if inclusive
        else ("||pred - gt|| < alpha * T_ref (strict)")
    )
    return {
        "dataset": dataset if len(datasets) <= 1 else "mixed",
        "alphas": keys,
        "definition": (
            f"PCK@alpha: {rule}, T_ref = {t_ref}, over "
            "keypoints visible in both images; values are fractions in [0, 1]; per image = mean "
            "over pairs of each pair's PCK, per keypoint = all correct / all evaluated"
        ),
        "categories": {c: per_cat[c].block(keys, with_geo) for c in sorted(per_cat)},
        "overall": overall.block(keys, with_geo),
    }


def _correct(dist: np.ndarray, alphas: np.ndarray, size: float, inclusive: bool) -> np.ndarray:
    if inclusive:
        return dist[None, :] / size <= alphas
    return dist[None, :] < alphas * size


def _rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [*result["categories"].items(), ("overall", result["overall"])]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


#: the widest line :func:`format_table` writes (columns of a terminal)
TABLE_WIDTH = 100


def format_table(
    result: dict[str, Any], alphas: Sequence[float] | None = None, width: int = TABLE_WIDTH
) -> str:
    """Plain-text per-category table (percentages) of an :func:`evaluate` result.

    ``alphas`` picks and orders the columns (default: all alphas of the result). Lines stay
    within ``width`` characters: the columns are split into blocks, one under the other, each
    starting with the category (a column pair, e.g. ``0.10 img`` and ``0.10 kp``, is never
    split); the CSV of :func:`write_csv` keeps every figure in one row per category.
    """
    keys = [alpha_key(a) for a in alphas] if alphas is not None else list(result["alphas"])
    missing = [k for k in keys if k not in result["alphas"]]
    if missing:
        raise ValueError(f"alphas {missing} are not in the result ({result['alphas']})")
    with_geo = "geo" in result["overall"]
    dataset = result.get("dataset") or ""
    t_ref = T_REF.get(dataset, "the record's pck_size")
    header = [
        f"PCK@alpha in % ({dataset or 'pairs'}): correct if ||pred - gt|| < alpha * T_ref, "
        "keypoints visible in both images;",
        f"T_ref = {t_ref}.",
        "img = per image (mean of the pairs' PCKs); kp = per keypoint "
        "(all correct / all evaluated)" + (";" if with_geo else "."),
    ]
    if with_geo:
        header.append("geo = geometry-aware subset.")
    header = [part for line in header for part in textwrap.wrap(line, width)]
    rows = _rows(result)
    # column groups, each a list of (title, cell per row)
    groups = [
        [
            ("pairs", [str(b["n_pairs"]) for _, b in rows]),
            ("kps", [str(b["n_keypoints"]) for _, b in rows]),
        ]
    ]
    for k in keys:
        groups.append(
            [
                (f"{k} img", [_pct(b["pck_per_image"][k]) for _, b in rows]),
                (f"{k} kp", [_pct(b["pck_per_keypoint"][k]) for _, b in rows]),
            ]
        )
    if with_geo:
        groups.append(
            [
                ("geo pairs%", [_pct(b["geo"]["share_pairs"]) for _, b in rows]),
                ("geo kps%", [_pct(b["geo"]["share_keypoints"]) for _, b in rows]),
            ]
        )
        for k in keys:
            groups.append(
                [
                    (f"geo {k} img", [_pct(b["geo"]["pck_per_image"][k]) for _, b in rows]),
                    (f"geo {k} kp", [_pct(b["geo"]["pck_per_keypoint"][k]) for _, b in rows]),
                ]
            )
    names = [name for name, _ in rows]
    lead = max(len("category"), *map(len, names))

    def col_width(col: tuple[str, list[str]]) -> int:
        return max(len(col[0]), *map(len, col[1]))

    blocks: list[list[tuple[str, list[str]]]] = []
    used = width + 1
    for group in groups:
        need = sum(2 + col_width(c) for c in group)
        if blocks and used + need <= width:
            blocks[-1] += group
            used += need
        else:
            blocks.append(list(group))
            used = lead + need
    lines = list(header)
    for n, block in enumerate(blocks):
        widths = [col_width(c) for c in block]

        def fmt(first: str, cells: list[str], widths: list[int] = widths) -> str:
            parts = [first.ljust(lead)] + [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
            return "  ".join(parts).rstrip()

        title = fmt("category", [c[0] for c in block])
        rule = "-" * len(title)
        body = [fmt(name, [c[1][i] for c in block]) for i, name in enumerate(names)]
        lines += ([""] if n else []) + [title, rule, *body[:-1], rule, body[-1]]
    empty = result["overall"].get("n_pairs_without_keypoints", 0)
    if empty:
        lines.append(f"({empty} pairs without mutually visible keypoints are not averaged)")
    return "\n".join(lines) + "\n"


def csv_columns(result: dict[str, Any]) -> list[str]:
    """The CSV header of :func:`write_csv` for ``result``."""
    cols = ["category", "n_pairs", "n_pairs_evaluated", "n_pairs_without_keypoints", "n_keypoints"]
    for k in result["alphas"]:
        cols += [f"pck@{k}_per_image", f"pck@{k}_per_keypoint"]
    if "geo" in result["overall"]:
        cols += ["geo_n_pairs", "geo_n_keypoints", "geo_share_pairs", "geo_share_keypoints"]
        for k in result["alphas"]:
            cols += [f"geo_pck@{k}_per_image", f"geo_pck@{k}_per_keypoint"]
    return cols


def write_csv(result: dict[str, Any], path: str | os.PathLike) -> None:
    """One row per category and a last ``overall`` row, every figure of the result (fractions
    in [0, 1]; empty cell where nothing was evaluated). Written atomically.
    """
    from corr.io import atomic_write_text

    cols = csv_columns(result)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v)
        return str(v)

    for name, b in _rows(result):
        vals: dict[str, Any] = {"category": name}
        for f in ("n_pairs", "n_pairs_evaluated", "n_pairs_without_keypoints", "n_keypoints"):
            vals[f] = b[f]
        for k in result["alphas"]:
            vals[f"pck@{k}_per_image"] = b["pck_per_image"][k]
            vals[f"pck@{k}_per_keypoint"] = b["pck_per_keypoint"][k]
        if "geo" in b:
            g = b["geo"]
            for f in ("n_pairs", "n_keypoints", "share_pairs", "share_keypoints"):
                vals[f"geo_{f}"] = g[f]
            for k in result["alphas"]:
                vals[f"geo_pck@{k}_per_image"] = g["pck_per_image"][k]
                vals[f"geo_pck@{k}_per_keypoint"] = g["pck_per_keypoint"][k]
        w.writerow([cell(vals.get(c)) for c in cols])
    atomic_write_text(path, buf.getvalue())
