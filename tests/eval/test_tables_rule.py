"""The evaluation's keypoint-table rules: tables as written (ids) or as GeoAware-SC reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from corr.datasets import PairRecord
from corr.eval.plan import EvalOptions, apply_tables_rule, tables_for
from corr.keypoint_tables import flip_permutation

GOLDEN = Path(__file__).resolve().parents[1] / "parity" / "golden" / "keypoint_tables.json"


def _record(i: int, category: str, k: int, visible: list[int]) -> PairRecord:
    vis = np.zeros(k, bool)
    vis[visible] = True
    kps = np.where(vis[:, None], 10.0, np.nan) * np.ones((k, 2))
    return PairRecord(
        "spair", f"p{i}", category, Path("a.jpg"), Path("b.jpg"), kps, kps, vis, vis, 100.0,
        (200, 100), (200, 100), None, None, {}, category,
    )  # fmt: skip


def test_geoaware_rule_derives_used_ids_from_the_records_and_rekeys_them():
    golden = json.loads(GOLDEN.read_text())
    opts = EvalOptions("spair", ".", flip=True)
    # bus ids 8 and 9 are never annotated; every other id appears in at least one pair
    used = golden["spair_flip"]["bus"]["used"]
    recs = [_record(0, "bus", 30, used[:15]), _record(1, "bus", 30, used[15:])]
    tables = tables_for(opts, ["bus"])
    out_recs, out = apply_tables_rule(recs, tables, "geoaware")
    perm = flip_permutation(out.flip["bus"], 30)
    assert {str(i): int(perm[i]) for i in used} == golden["spair_flip"]["bus"]["perm"]
    assert out.geo["bus"] == golden["spair_geo"]["bus"]
    assert [r.table_category for r in out_recs] == ["bus", "bus"] and out.note is None
    # the ids rule leaves both alone
    same_recs, same = apply_tables_rule(recs, tables, "ids")
    assert same is tables and same_recs == recs


def test_geoaware_rule_keeps_a_table_given_by_file_as_written(tmp_path):
    table = tmp_path / "flip.json"
    table.write_text(json.dumps({"thing": [[0, 3]]}))
    opts = EvalOptions("spair", ".", flip=True, flip_table=str(table), geo_groups=str(table))
    recs = [_record(0, "thing", 4, [0, 1, 3])]
    _, out = apply_tables_rule(recs, tables_for(opts, ["thing"]), "geoaware")
    assert out.flip == {"thing": [[0, 3]]} and out.geo == {"thing": [[0, 3]]}
    assert "used as written" in out.note
