"""Keypoint group tables: geometry-aware groups (docs/protocol.md §7) and flip lists (§6).

A table is a JSON object ``{category: [entry, ...]}``; an entry is a list of keypoint ids (a
group) or a bare id (a singleton). Ids are 0-based keypoint indices of the category (SPair-71k:
the keys of ``kps``; AP-10K: the 17 COCO keypoints, one category ``"all"``). An id a table does
not mention is a singleton. Bundled tables (``corr/tables/*.json``): ``spair_geo_groups``,
``ap10k_geo_groups`` and ``ap10k_flip`` are GeoAware-SC's values as published (they are written in
data ids); ``spair_flip`` is GeoAware-SC's flip list *in SPair ids*, i.e. the list its
evaluation effectively applies (``SPAIR_FLIP_TRN``: bus ids past the unused 8 and 9 shifted by
2, bicycle's last id 13), while ``spair_flip_geoaware`` is its ``SPAIR_FLIP`` verbatim, which the
reference reads as positions among the used keypoints (see :func:`reference_groups`).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable  # Python >= 3.11; annotations only

__all__ = [
    "BUNDLED",
    "load_groups",
    "geo_group_of",
    "flip_permutation",
    "default_tables",
    "table_path",
    "reference_groups",
    "REFERENCE_VERBATIM",
]

BUNDLED = (
    "spair_geo_groups",
    "spair_flip",
    "spair_flip_geoaware",
    "ap10k_geo_groups",
    "ap10k_flip",
)
#: the verbatim reference table behind a bundled table, where the two differ
REFERENCE_VERBATIM = {"spair_flip": "spair_flip_geoaware"}
_TABLE_DIR = resources.files("corr") / "tables"  # package data: corr/tables/*.json

Groups = dict[str, list[list[int]]]


def table_path(source: str | os.PathLike) -> Path | Traversable:
    """The JSON file behind ``source`` (a bundled name: the package's resource; or a path)."""
    if isinstance(source, str) and source in BUNDLED:
        return _TABLE_DIR / f"{source}.json"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"keypoint table not found: {source!r} (not a file, and not one of the bundled "
            f"tables {', '.join(BUNDLED)})"
        )
    return path


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def load_groups(source: str | os.PathLike) -> Groups:
    """Load a group table: ``{category: [[id, ...], ...]}`` with singletons as one-element lists.

    ``source`` is a bundled name (see :data:`BUNDLED`) or a path to a JSON file in the same
    format. Raises ValueError naming the file for malformed JSON, a non-integer or negative id, a
    nested or empty group, or an id listed twice in one category.
    """
    path = table_path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"keypoint table {path}: malformed JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"keypoint table {path}: expected an object {{category: [...]}}")
    out: Groups = {}
    for cat, entries in data.items():
        if not isinstance(entries, list):
            raise ValueError(f"keypoint table {path}: category {cat!r}: expected a list")
        groups: list[list[int]] = []
        seen: set[int] = set()
        for entry in entries:
            group = [entry] if not isinstance(entry, list) else entry
            if not group or not all(_is_id(i) for i in group):
                raise ValueError(
                    f"keypoint table {path}: category {cat!r}: bad entry {entry!r} "
                    "(expected a non-negative integer or a non-empty list of them)"
                )
            dup = seen.intersection(group) or (len(set(group)) < len(group))
            if dup:
                raise ValueError(
                    f"keypoint table {path}: category {cat!r}: entry {entry!r} repeats an id"
                )
            seen.update(group)
            groups.append(list(group))
        out[str(cat)] = groups
    return out


def geo_group_of(groups_for_category: list[list[int]] | None, num_keypoints: int) -> np.ndarray:
    """(K,) int64 group id of each keypoint: groups numbered in listing order, then the ids the
    table does not mention, each its own group. Ids >= K (a table entry for keypoints the data
    does not have, such as the published bicycle ``13``) are ignored.
    """
    k = int(num_keypoints)
    gid = np.full(k, -1, np.int64)
    nxt = 0
    for group in groups_for_category or []:
        members = [i for i in group if i < k]
        if not members:
            continue
        gid[members] = nxt
        nxt += 1
    rest = np.nonzero(gid < 0)[0]
    gid[rest] = np.arange(nxt, nxt + rest.size)
    return gid


def flip_permutation(
    flip_groups_for_category: list[list[int]] | None, num_keypoints: int
) -> np.ndarray:
    """(K,) int64 ``perm`` with ``perm[i]`` = the keypoint whose label ``i`` becomes under a
    horizontal flip.

    A pair ``[a, b]`` swaps (``perm[a] = b``, ``perm[b] = a``); a group ``[g0, g1, ..., gn-1]``
    of more than two rotates forward: ``perm[g_j] = g_{(j+1) mod n}``; a bare id and an
    unmentioned id map to themselves. A group lying entirely at ids >= K is ignored; a group
    only partly inside range raises ValueError. The result is checked to be a permutation.
    """
    k = int(num_keypoints)
    perm = np.arange(k, dtype=np.int64)
    for group in flip_groups_for_category or []:
        inside = [i for i in group if i < k]
        if not inside:
            continue
        if len(inside) != len(group):
            raise ValueError(f"flip group {group} has ids outside 0..{k - 1}")
        for j, i in enumerate(group):
            perm[i] = group[(j + 1) % len(group)]
    if not np.array_equal(np.sort(perm), np.arange(k)):
        raise ValueError(f"flip table does not give a permutation of {k} keypoints: {perm}")
    return perm


def _renumbered(groups: list[list[int]], used: list[int]) -> list[list[int]]:
    """GeoAware-SC's ``renumber_indices`` after filtering by ``used``: members are numbered in
    *listing* order, and number ``k`` stands for the k-th used keypoint id (sorted)."""
    out, k = [], 0
    for group in groups:
        members = [i for i in group if i in used]
        if not members:
            continue
        out.append([used[k + j] for j in range(len(members))])
        k += len(members)
    return out


def reference_groups(groups: list[list[int]], used_ids, kind: str) -> list[list[int]]:
    """The groups GeoAware-SC's evaluation effectively applies, in data keypoint ids.

    The reference keeps only the ``used_ids`` of a category (ids visible in at least one image
    of its evaluated pairs, sorted) and indexes keypoints by their position among them. Then:

    - ``kind="flip"``: if the table has exactly as many ids as there are used ids, its entries
      are read as *positions* (so SPair's literal bus list lands on ids shifted by 2 past the
      unused 8 and 9); otherwise the entries are filtered by ``used_ids`` and renumbered;
    - ``kind="geo"``: always filtered and renumbered.

    Renumbering numbers the members in listing order, not by id, so a table whose groups are
    not listed in ascending order (SPair car ``[2, 3, 6, 7]`` after ``[0, 1]``) turns into
    different groups (``[2, 3, 4, 5]``). This reproduces the published numbers; the ``ids``
    rule (our default) uses the tables as written. See docs/protocol.md, "Keypoint tables".
    """
    used = sorted(int(i) for i in used_ids)
    if kind == "flip" and sum(len(g) for g in groups) == len(used):
        bad = [i for g in groups for i in g if i >= len(used)]
        if bad:
            raise ValueError(f"flip table position {bad[0]} is past the {len(used)} used keypoints")
        return [[used[i] for i in g] for g in groups]
    if kind not in ("flip", "geo"):
        raise ValueError(f"kind must be 'flip' or 'geo', got {kind!r}")
    return _renumbered(groups, used)


def default_tables(dataset: str) -> tuple[str | None, str | None]:
    """(geo-group table, flip table) bundled for a data set; ``(None, None)`` for PF-Pascal."""
    if dataset == "spair":
        return "spair_geo_groups", "spair_flip"
    if dataset == "ap10k":
        return "ap10k_geo_groups", "ap10k_flip"
    if dataset in ("pfpascal", "pfwillow", "spair-u"):  # no keypoint ids, or SPair-U's new ones
        return None, None
    raise ValueError(
        f"unknown dataset {dataset!r}; use spair, spair-u, ap10k, pfpascal or pfwillow"
    )
