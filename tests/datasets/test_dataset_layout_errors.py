"""Wrong roots raise DatasetLayoutError naming the layout and the first missing path."""

from __future__ import annotations

from pathlib import Path

import pytest

from corr.datasets import DatasetLayoutError, check_images, load_ap10k, load_pairs, load_spair
from corr.datasets.ap10k import build_ap10k


def test_spair_wrong_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_spair(tmp_path / "nowhere")
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.missing == tmp_path / "nowhere"
    msg = str(err.value)
    assert "SPair-71k" in msg and "PairAnnotation/{split}" in msg and str(tmp_path) in msg
    with pytest.raises(DatasetLayoutError) as err:
        load_spair(tmp_path)  # exists, but holds no PairAnnotation/
    assert err.value.missing == tmp_path / "PairAnnotation"
    (tmp_path / "PairAnnotation/val").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as err:
        load_spair(tmp_path, "test")
    assert err.value.missing == tmp_path / "PairAnnotation/test"


def test_spair_root_one_level_off(minireal: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_spair(minireal)  # the folder above SPair-71k/
    assert err.value.missing == minireal / "PairAnnotation"


def test_pfpascal_wrong_root(minireal: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_pairs("pfpascal", minireal / "SPair-71k")
    assert err.value.missing == minireal / "SPair-71k/test_pairs_pf_pascal.csv"
    assert "PF-dataset-PASCAL" in str(err.value)
    with pytest.raises(DatasetLayoutError) as err:
        load_pairs("pfpascal", tmp_path / "x", split="val")
    assert err.value.missing == tmp_path / "x"
    with pytest.raises(ValueError, match="unknown split"):
        load_pairs("pfpascal", minireal / "PF-Pascal", split="train")


def test_ap10k_wrong_root(tmp_path: Path) -> None:
    (tmp_path / "PairAnnotation/test").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as err:
        load_ap10k(tmp_path, subset="cross-family")
    assert err.value.missing == tmp_path / "PairAnnotation/test_cross_family"
    assert "ImageAnnotation/{family}/{species}" in str(err.value)
    assert load_ap10k(tmp_path) == []  # an empty split is not an error
    with pytest.raises(ValueError, match="unknown subset"):
        load_ap10k(tmp_path, subset="intra")


def test_ap10k_builder_wrong_raw(tmp_path: Path) -> None:
    (tmp_path / "raw/annotations").mkdir(parents=True)
    (tmp_path / "raw/annotations/ap10k-train-split1.json").write_text("{}")
    with pytest.raises(DatasetLayoutError) as err:
        build_ap10k(tmp_path / "raw", tmp_path / "out")
    # the files are read in the notebook's order (train, test, val): test is the first missing
    assert err.value.missing == tmp_path / "raw/annotations/ap10k-test-split1.json"
    assert "ap10k-{train,val,test}-split1.json" in str(err.value)


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_pairs("cub", tmp_path)


def test_check_images_corrupt(minireal: Path, tmp_path: Path) -> None:
    recs = load_spair(minireal / "SPair-71k")[:2]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    from dataclasses import replace

    recs = [replace(recs[0], tgt_image=bad), replace(recs[1], src_image=tmp_path / "no.jpg")]
    found = check_images(recs)
    assert [(p, path) for p, path, _ in found] == [
        (recs[0].pair_id, bad),
        (recs[1].pair_id, tmp_path / "no.jpg"),
    ]
    assert found[0][2].startswith("unreadable") and found[1][2] == "missing"
