"""The printed PCK table fits 100 columns (blocks of columns, one under the other) and still
holds every figure once; the CSV keeps each category in one whole row."""

from __future__ import annotations

import csv
import re

import pytest

from corr.metrics import format_table, write_csv

WIDTH = 100  # columns of a terminal (issue 23.8); corr.metrics.pck.TABLE_WIDTH

SPAIR = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "train", "tvmonitor",
]  # fmt: skip
KEYS = ["0.10", "0.05", "0.01"]


def _result(categories: list[str], geo: bool = True) -> dict:
    """A result in :func:`corr.metrics.evaluate`'s layout whose every figure is distinct."""
    counter = iter(range(1, 10_000))

    def pck() -> dict[str, float]:
        return {k: next(counter) / 1000 for k in KEYS}

    def block(n: int) -> dict:
        b = {
            "n_pairs": 100 + n,
            "n_pairs_evaluated": 100 + n,
            "n_pairs_without_keypoints": 0,
            "n_keypoints": 1000 + n,
            "pck_per_image": pck(),
            "pck_per_keypoint": pck(),
        }
        if geo:
            b["geo"] = {
                "n_pairs": n,
                "n_keypoints": n,
                "share_pairs": next(counter) / 1000,
                "share_keypoints": next(counter) / 1000,
                "pck_per_image": pck(),
                "pck_per_keypoint": pck(),
            }
        return b

    return {
        "dataset": "spair",
        "alphas": KEYS,
        "categories": {c: block(i) for i, c in enumerate(categories)},
        "overall": block(len(categories)),
    }


def _expected(result: dict) -> dict[tuple[str, str], str]:
    out = {}
    for name, b in [*result["categories"].items(), ("overall", result["overall"])]:
        cells = {"pairs": str(b["n_pairs"]), "kps": str(b["n_keypoints"])}
        for k in KEYS:
            cells[f"{k} img"] = f"{100 * b['pck_per_image'][k]:.1f}"
            cells[f"{k} kp"] = f"{100 * b['pck_per_keypoint'][k]:.1f}"
        if "geo" in b:
            g = b["geo"]
            cells["geo pairs%"] = f"{100 * g['share_pairs']:.1f}"
            cells["geo kps%"] = f"{100 * g['share_keypoints']:.1f}"
            for k in KEYS:
                cells[f"geo {k} img"] = f"{100 * g['pck_per_image'][k]:.1f}"
                cells[f"geo {k} kp"] = f"{100 * g['pck_per_keypoint'][k]:.1f}"
        out.update({(name, col): v for col, v in cells.items()})
    return out


def _parse(text: str) -> dict[tuple[str, str], str]:
    """Every block of the table: (category, column) -> cell; a cell seen twice fails."""
    cells: dict[tuple[str, str], str] = {}
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("category")]
    assert starts, text
    for s in starts:
        columns = re.split(r"\s{2,}", lines[s].strip())[1:]
        assert set(lines[s + 1]) == {"-"}
        for line in lines[s + 2 :]:
            if not line or line.startswith("("):
                break
            if set(line) == {"-"}:
                continue
            name, *values = line.split()
            assert len(values) == len(columns), line
            for col, v in zip(columns, values, strict=True):
                assert (name, col) not in cells, f"{name} {col} printed twice"
                cells[(name, col)] = v
    return cells


@pytest.mark.parametrize(
    "categories, geo",
    [(SPAIR, True), (SPAIR, False), (["a-rather-long-category-name-of-forty-chars"], True)],
)
def test_table_fits_the_width_and_keeps_every_figure(categories, geo, tmp_path):
    result = _result(categories, geo)
    text = format_table(result)
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, too_wide
    assert _parse(text) == _expected(result)
    path = tmp_path / "results.csv"
    write_csv(result, path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == len(categories) + 2 and {len(r) for r in rows} == {len(rows[0])}
    assert len(rows[0]) == 5 + 2 * len(KEYS) + (4 + 2 * len(KEYS) if geo else 0)


def test_narrower_width_gives_more_blocks():
    result = _result(SPAIR[:3])
    wide, narrow = format_table(result), format_table(result, width=60)
    assert max(map(len, narrow.splitlines())) <= 60
    count = lambda t: sum(line.startswith("category") for line in t.splitlines())  # noqa: E731
    assert count(narrow) > count(wide) >= 2
    assert _parse(narrow) == _parse(wide) == _expected(result)
