"""SPair-71k loader: the verbatim fixture (real schema) and the minireal copy."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from corr.datasets import DatasetLayoutError, check_images, load_pairs, load_spair

PAIR = "000001-2008_002719-2008_004100:aeroplane"

# The full minireal copy (its README table): K per category, pairs + mirror pairs per category.
MINIREAL_K = {
    "aic": 14, "ak": 23, "animalpose": 20, "ap10k": 17, "atrw": 15, "coco": 17, "crowdpose": 14,
    "fly": 32, "horse10": 22, "humanart": 21, "locust": 35, "macaque": 17, "mpii": 16,
    "ochuman": 17, "zebra": 9,
}  # fmt: skip
MINIREAL_PAIRS = {
    "aic": 6, "ak": 3, "animalpose": 3, "ap10k": 3, "atrw": 3, "coco": 10, "crowdpose": 3,
    "fly": 3, "horse10": 3, "humanart": 6, "locust": 3, "macaque": 3, "mpii": 15, "ochuman": 6,
    "zebra": 3,
}  # fmt: skip


def test_fixture_real_schema(spair_fixture: Path) -> None:
    (rec,) = load_spair(spair_fixture, "test")
    assert rec.dataset == "spair" and rec.pair_id == PAIR
    assert rec.category == rec.table_category == "aeroplane"
    assert rec.src_image == spair_fixture / "JPEGImages/aeroplane/2008_002719.jpg"
    assert rec.tgt_image == spair_fixture / "JPEGImages/aeroplane/2008_004100.jpg"
    # K = 30 keys "0".."29" in the source ImageAnnotation
    assert rec.src_kps.shape == rec.tgt_kps.shape == (30, 2)
    # source visibility from the ImageAnnotation: nulls at 1, 2, 4, 5, 22, 25..29
    null = {1, 2, 4, 5, 22, 25, 26, 27, 28, 29}
    assert set(np.nonzero(~rec.src_vis)[0].tolist()) == null
    assert np.isnan(rec.src_kps[sorted(null)]).all()
    assert rec.src_kps[3].tolist() == [244, 165]
    # the target ImageAnnotation is not in the fixture: fall back to the pair file's kps_ids
    assert set(np.nonzero(rec.tgt_vis)[0].tolist()) == {0, 7, 11}
    assert rec.flags["missing_annotation"] == ["trg"]
    assert np.nonzero(rec.mutual)[0].tolist() == [0, 7, 11]
    assert rec.src_kps[[0, 7, 11]].tolist() == [[212, 153], [300, 130], [330, 127]]
    assert rec.tgt_kps[[0, 7, 11]].tolist() == [[39, 145], [364, 171], [416, 173]]
    # sizes [W, H, C] -> (W, H); boxes [x1, y1, x2, y2] with x2 == image width
    assert rec.src_size == (500, 333) and rec.tgt_size == (500, 332)
    assert rec.src_bbox == (210, 34, 475, 250)
    assert rec.tgt_bbox == (36, 92, 500, 200) and rec.tgt_bbox[2] == rec.tgt_size[0]
    assert rec.pck_size == 464.0  # max(500 - 36, 200 - 92)
    assert rec.flags["mirror"] == 0 and rec.flags["truncation"] == 2
    assert rec.flags["occlusion"] == 2 and rec.flags["src_pose"] == "Left"
    assert rec.src_kps.dtype == np.float64 and rec.src_vis.dtype == bool
    assert not rec.src_kps.flags.writeable


def _copy_fixture(spair_fixture: Path, dst: Path) -> Path:
    shutil.copytree(spair_fixture, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_fixture_with_target_annotation_cross_check(spair_fixture: Path, tmp_path: Path) -> None:
    root = _copy_fixture(spair_fixture, tmp_path / "spair")
    kps = {str(i): None for i in range(30)}
    kps |= {"0": [39, 145], "7": [360, 171], "2": [50, 60], "5": [70, 80]}  # 7 differs, 11 null
    ann = {"filename": "2008_004100.jpg", "image_width": 500, "image_height": 332,
           "bndbox": [36, 92, 500, 200], "kps": kps}  # fmt: skip
    (root / "ImageAnnotation/aeroplane/2008_004100.json").write_text(json.dumps(ann))
    (rec,) = load_spair(root)
    assert "missing_annotation" not in rec.flags
    # full target visibility from the annotation, plus the pair file's ids
    assert np.nonzero(rec.tgt_vis)[0].tolist() == [0, 2, 5, 7, 11]
    # the pair file wins for its ids: 7 moved by 4 px, 11 was null -> 2 mismatches
    assert rec.tgt_kps[7].tolist() == [364, 171] and rec.tgt_kps[11].tolist() == [416, 173]
    assert rec.tgt_kps[2].tolist() == [50, 60]
    assert rec.flags["kps_mismatch"] == 2
    # mutual = visible in both annotations: 2 and 5 are null in the source
    assert np.nonzero(rec.mutual)[0].tolist() == [0, 7, 11]


def test_fixture_pair_file_only_and_int_ids(spair_fixture: Path, tmp_path: Path) -> None:
    root = _copy_fixture(spair_fixture, tmp_path / "spair")
    shutil.rmtree(root / "ImageAnnotation")
    path = root / "PairAnnotation/test" / f"{PAIR}.json"
    data = json.loads(path.read_text())
    data["kps_ids"] = [int(i) for i in data["kps_ids"]]
    path.write_text(json.dumps(data))
    (rec,) = load_spair(root)
    assert rec.src_kps.shape == (12, 2)  # K = max id + 1
    assert np.nonzero(rec.src_vis)[0].tolist() == [0, 7, 11]
    assert np.nonzero(rec.tgt_vis)[0].tolist() == [0, 7, 11]
    assert rec.flags["missing_annotation"] == ["src", "trg"]
    assert rec.pck_size == 464.0


def test_fixture_null_in_pair_file(spair_fixture: Path, tmp_path: Path) -> None:
    root = _copy_fixture(spair_fixture, tmp_path / "spair")
    path = root / "PairAnnotation/test" / f"{PAIR}.json"
    data = json.loads(path.read_text())
    data["trg_kps"][1] = None
    path.write_text(json.dumps(data))
    (rec,) = load_spair(root)
    assert np.nonzero(rec.mutual)[0].tolist() == [0, 11]


def _raw_pairs(minireal: Path) -> list[dict]:
    """Every pair file of the copy, read directly (not through the loader)."""
    folder = minireal / "SPair-71k/PairAnnotation/test"
    return [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]


def _raw_k(minireal: Path) -> dict[str, int]:
    """K per category: the number of keypoint names."""
    return {
        c: len(n) for c, n in json.loads((minireal / "keypoint_names.json").read_text()).items()
    }


def test_minireal_full_matches_its_readme(minireal_full: Path) -> None:
    raw = _raw_pairs(minireal_full)
    assert len(raw) == 73 and sum(p["mirror"] for p in raw) == 36
    assert Counter(p["category"] for p in raw) == MINIREAL_PAIRS
    assert _raw_k(minireal_full) == MINIREAL_K


@pytest.mark.parametrize("copy", ["minireal", "minireal_full"])
def test_minireal_counts_and_bounds(copy: str, request: pytest.FixtureRequest) -> None:
    minireal = request.getfixturevalue(copy)  # the in-repo subset, and the full copy
    raw = _raw_pairs(minireal)
    assert len(raw) >= 20 and sum(p["mirror"] for p in raw) >= 10  # a real test
    k = _raw_k(minireal)
    recs = load_spair(minireal / "SPair-71k", "test")
    assert len(recs) == len(raw)
    assert [r.pair_id for r in recs] == sorted(r.pair_id for r in recs)
    assert len({r.pair_id for r in recs}) == len(raw)
    assert Counter(r.category for r in recs) == Counter(p["category"] for p in raw)
    assert set(k) == {p["category"] for p in raw}
    assert sum(r.flags["mirror"] for r in recs) == sum(p["mirror"] for p in raw)
    for r in recs:
        assert r.src_kps.shape == (k[r.category], 2)
        assert "missing_annotation" not in r.flags and "kps_mismatch" not in r.flags
        data = json.loads(
            (minireal / "SPair-71k/PairAnnotation/test" / f"{r.pair_id}.json").read_text()
        )
        assert np.nonzero(r.mutual)[0].tolist() == [int(i) for i in data["kps_ids"]]
        assert r.tgt_kps[r.mutual].tolist() == data["trg_kps"]
        x1, y1, x2, y2 = data["trg_bndbox"]
        assert r.pck_size == max(x2 - x1, y2 - y1) > 0
        for kps, vis, (w, h) in ((r.src_kps, r.src_vis, r.src_size), (r.tgt_kps, r.tgt_vis, r.tgt_size)):  # fmt: skip
            assert np.isnan(kps[~vis]).all() and np.isfinite(kps[vis]).all()
            assert (kps[vis] >= 0).all()
            assert (kps[vis, 0] <= w - 1).all() and (kps[vis, 1] <= h - 1).all()
        assert r.src_image.is_file() and r.tgt_image.is_file()
    mirror = next(r for r in recs if r.flags["mirror"] == 1)
    assert mirror.tgt_image.stem.endswith("_flip")
    assert load_pairs("spair", minireal / "SPair-71k")[5].pair_id == recs[5].pair_id
    assert check_images(recs) == []


def _linked_root(minireal: Path, tmp_path: Path) -> Path:
    root = tmp_path / "SPair-71k"
    root.mkdir()
    for sub in ("PairAnnotation", "ImageAnnotation", "JPEGImages"):
        (root / sub).symlink_to(minireal / "SPair-71k" / sub)
    (root / "Layout/large").mkdir(parents=True)
    return root


def test_layout_crlf_equals_lf(minireal: Path, tmp_path: Path) -> None:
    stems = (minireal / "SPair-71k/Layout/large/test.txt").read_text().splitlines()
    n_files = len(list((minireal / "SPair-71k/PairAnnotation/test").glob("*.json")))
    assert len(stems) == n_files >= 20
    root = _linked_root(minireal, tmp_path)
    layout = root / "Layout/large/test.txt"
    subset = stems[10:20][::-1]  # reversed: records are still sorted
    layout.write_bytes(("\n".join(subset) + "\n").encode())
    lf = load_spair(root)
    layout.write_bytes(("\r\n".join(subset) + "\r\n\r\n").encode())
    crlf = load_spair(root)
    assert [r.pair_id for r in lf] == [r.pair_id for r in crlf] == sorted(subset)
    for a, b in zip(lf, crlf, strict=True):
        assert np.array_equal(a.tgt_kps, b.tgt_kps, equal_nan=True)
    assert len(load_spair(root, layout=None)) == n_files  # ignore the layout file
    assert len(load_spair(root, layout="small")) == n_files  # absent layout: list the folder


def test_layout_missing_pair_file(minireal: Path, tmp_path: Path) -> None:
    root = _linked_root(minireal, tmp_path)
    (root / "Layout/large/test.txt").write_text("000001-nope-nope:aic\n")
    with pytest.raises(DatasetLayoutError) as err:
        load_spair(root)
    assert err.value.missing == root / "PairAnnotation/test/000001-nope-nope:aic.json"
    assert "Layout/large/test.txt" in str(err.value)


def test_split_alias(spair_fixture: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_spair(spair_fixture, "train")  # alias of trn
    assert err.value.missing == spair_fixture / "PairAnnotation" / "trn"
    with pytest.raises(ValueError, match="unknown split"):
        load_spair(spair_fixture, "dev")
