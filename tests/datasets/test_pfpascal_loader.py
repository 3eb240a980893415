"""PF-Pascal loader on the minireal copy, and the default 20-class mapping."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from corr.datasets import check_images, load_pairs, load_pfpascal, load_spair
from corr.datasets.pfpascal import PASCAL_CLASSES

FIRST_SRC = "aic_054d9ce9201beffc76e5ff2169d2af2f027002ca"
FIRST_TRG = "aic_fa436c914fe4a8ec1ec5474af4d3820b84d17561"


def test_minireal_pfpascal(minireal: Path) -> None:
    root = minireal / "PF-Pascal"
    recs = load_pfpascal(root, "test")
    # one row per non-mirror pair of the SPair copy (its pair files, read directly)
    pair_files = (minireal / "SPair-71k/PairAnnotation/test").glob("*.json")
    assert len(recs) == sum(not json.loads(f.read_text())["mirror"] for f in pair_files) >= 10
    classes = json.loads((root / "classes.json").read_text())
    assert {r.category for r in recs} <= set(classes.values())
    r = recs[0]
    assert r.dataset == "pfpascal" and r.category == r.table_category == "aic"
    assert r.pair_id == f"000001-{FIRST_SRC}-{FIRST_TRG}:aic"
    assert r.src_image == root / f"PF-dataset-PASCAL/JPEGImages/{FIRST_SRC}.jpg"
    # ;-joined columns: first and last points of the first row
    assert r.src_kps.shape == (10, 2) and r.mutual.all()
    assert r.src_kps[0].tolist() == [144.0, 180.0] and r.src_kps[-1].tolist() == [205.0, 133.0]
    assert r.tgt_kps[0].tolist() == [368.0, 142.0] and r.tgt_kps[-1].tolist() == [430.0, 131.0]
    assert r.src_bbox is None and r.tgt_bbox is None
    for rec in recs:
        with Image.open(rec.tgt_image) as im:
            assert rec.tgt_size == im.size
        assert rec.pck_size == max(rec.tgt_size)
    # the same pairs as the SPair copy's non-mirror pairs, same class per pair
    spair = [s for s in load_spair(minireal / "SPair-71k") if s.flags["mirror"] == 0]
    assert Counter(r.category for r in recs) == Counter(s.category for s in spair)
    by_images = {(s.src_image.name, s.tgt_image.name): s for s in spair}
    for rec in recs:
        s = by_images[(rec.src_image.name, rec.tgt_image.name)]
        assert rec.category == s.category and rec.tgt_size == s.tgt_size
        # SPair files hold the coordinates rounded to integers, the CSV with one decimal
        assert np.abs(rec.tgt_kps - s.tgt_kps[s.mutual]).max() <= 0.5 + 1e-9
    assert check_images(recs) == []
    assert [x.pair_id for x in load_pairs("pfpascal", root)] == [x.pair_id for x in recs]


def test_default_classes_and_missing_images(minireal: Path, tmp_path: Path) -> None:
    src = (minireal / "PF-Pascal/test_pairs_pf_pascal.csv").read_text().splitlines()
    header, row = src[0], src[1].split(",")
    rows = [header]
    for cls in (1, 20, 15):
        row[2] = str(cls)
        rows.append(",".join(row))
    (tmp_path / "PF-dataset-PASCAL/JPEGImages").mkdir(parents=True)
    # the CSV inside PF-dataset-PASCAL/ (the reference code's layout), CRLF line ends
    (tmp_path / "PF-dataset-PASCAL/test_pairs_pf_pascal.csv").write_bytes(
        ("\r\n".join(rows) + "\r\n").encode()
    )
    for root in (tmp_path, tmp_path / "PF-dataset-PASCAL"):
        recs = load_pfpascal(root)
        assert [r.category for r in recs] == [PASCAL_CLASSES[0], "tvmonitor", "person"]
        assert all(r.src_image.parent == tmp_path / "PF-dataset-PASCAL/JPEGImages" for r in recs)
        # no images: size unknown, reported by check_images with the pair id
        assert all(np.isnan(r.pck_size) and r.flags["size_unknown"] for r in recs)
        bad = check_images(recs)
        assert len(bad) == 6 and {b[2] for b in bad} == {"missing"}
        assert bad[0][0] == recs[0].pair_id
