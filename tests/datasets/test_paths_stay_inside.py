"""Paths read from data files never leave the data set folder (hostile annotation files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from corr.datasets import load_pfpascal, load_spair
from corr.datasets.records import inside


def test_inside_refuses_parent_and_absolute_paths(tmp_path):
    assert inside(tmp_path, "JPEGImages/cat/a.jpg", "x") == tmp_path / "JPEGImages/cat/a.jpg"
    for bad in ("../../outside.jpg", "JPEGImages/../../x.jpg", "/etc/passwd", "..\\\\secret.jpg"):
        with pytest.raises(ValueError, match="leaves the data set folder"):
            inside(tmp_path, bad, "pairs.json line 3")


def test_spair_pair_file_pointing_outside_is_refused(minireal, tmp_path):
    root = tmp_path / "SPair-71k"
    shutil.copytree(minireal / "SPair-71k", root)
    pair = sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]
    data = json.loads(pair.read_text())
    data["src_imname"] = "../../../outside.jpg"
    pair.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"(?s){pair.name}.*leaves the data set folder"):
        load_spair(root)


def test_pfpascal_row_pointing_outside_is_refused(minireal, tmp_path):
    root = tmp_path / "PF-Pascal"
    shutil.copytree(minireal / "PF-Pascal", root)
    csv = root / "test_pairs_pf_pascal.csv"
    lines = csv.read_text().splitlines()
    first = lines[1].split(",")
    first[0] = "../../secret.jpg"
    lines[1] = ",".join(first)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="row 1: the path '../../secret.jpg' leaves"):
        load_pfpascal(root)


def _ap10k_pair_file(root: Path, pair: dict) -> Path:
    """A prepared AP-10K folder holding one test pair file with the given fields."""
    for sub in ("ImageAnnotation", "JPEGImages"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    path = root / "PairAnnotation" / "test" / "000000000001-000000000002:cat.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(pair))
    return path


def test_ap10k_paths_pointing_outside_are_refused(tmp_path):
    from corr.datasets import load_ap10k

    whole = {"kps": [0] * 51, "bbox": [0, 0, 1, 1], "imsize": [2, 2], "image": "JPEGImages/a.jpg"}
    trg = {f"trg_{k}": v for k, v in whole.items()}
    root = tmp_path / "a"
    _ap10k_pair_file(root, {"src_json_path": "../../../etc/x.json", **trg})
    with pytest.raises(ValueError, match="leaves the data set folder"):
        load_ap10k(root)
    root = tmp_path / "b"
    src = {f"src_{k}": v for k, v in whole.items()}
    _ap10k_pair_file(root, {**src, "src_image": "../x.jpg", **trg})
    with pytest.raises(ValueError, match="src_image: the path '../x.jpg' leaves"):
        load_ap10k(root)


def test_ap10k_builder_refuses_a_raw_file_name_outside_data(tmp_path):
    from test_ap10k_builder import SPLIT_FILES, make_raw  # same folder: on sys.path

    from corr.datasets.ap10k import build_ap10k

    raw = tmp_path / "raw"
    make_raw(raw)
    f = raw / "annotations" / SPLIT_FILES[0]
    part = json.loads(f.read_text())
    part["images"][0]["file_name"] = "../../secret.txt"
    f.write_text(json.dumps(part))
    with pytest.raises(ValueError, match="file_name: the path '../../secret.txt' leaves"):
        build_ap10k(raw, tmp_path / "out")
    assert not (tmp_path / "out" / "JPEGImages").exists()
