"""TSS: the loader, the .flo reader, the check and the download recipe on a synthetic copy in
the published layout (Middlebury .flo flows, PNG masks)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from synthetic_benchmarks import TSS_SIZES, make_tss, tss_truth, write_flo
from test_download import Log, Served, server, table_for  # noqa: F401  (server: a fixture)

from corr.datasets import DatasetLayoutError
from corr.datasets.check import check_dataset
from corr.datasets.download import download
from corr.datasets.tss import load_tss, read_flo, read_mask


@pytest.fixture
def tss(tmp_path) -> Path:
    root = tmp_path / "TSS_CVPR2016"
    make_tss(root)
    return root


def test_two_pairs_per_folder_with_the_targets_flow(tss):
    pairs = load_tss(tss)
    assert [p.pair_id for p in pairs] == [
        "FG3DCar/car_001:1-2", "FG3DCar/car_001:2-1", "JODS/bike_002:1-2",
        "JODS/bike_002:2-1", "PASCAL/plane_003:1-2", "PASCAL/plane_003:2-1",
    ]  # fmt: skip
    assert [p.category for p in pairs[::2]] == ["car", "bicycle", "aeroplane"]
    first = pairs[0]
    assert first.flow.name == "flow2.flo" and first.mask.name == "mask2.png"
    assert first.src_size == TSS_SIZES[1] and first.tgt_size == TSS_SIZES[2]
    assert first.pck_size == 40.0 and pairs[1].pck_size == 36.0  # the source's longer side
    flow, mask = tss_truth(2)
    np.testing.assert_array_equal(read_flo(first.flow), flow)
    np.testing.assert_array_equal(read_mask(first.mask), mask)
    assert [p.subset for p in load_tss(tss, subsets=("JODS",))] == ["JODS", "JODS"]


def test_bad_files_and_layouts_are_named(tss, tmp_path):
    flo = tss / "JODS" / "bike_002" / "flow1.flo"
    flo.write_bytes(flo.read_bytes()[:-8])
    with pytest.raises(ValueError, match="flow1.flo.*truncated or damaged"):
        read_flo(flo)
    flo.write_bytes(b"XXXX" + bytes(8))  # ("PIEH" is what the magic number reads as)
    with pytest.raises(ValueError, match="not a Middlebury .flo"):
        read_flo(flo)
    (tss / "PASCAL" / "plane_003" / "mask2.png").unlink()
    with pytest.raises(DatasetLayoutError, match="mask2.png"):
        load_tss(tss)
    with pytest.raises(ValueError, match="only test"):
        load_tss(tss, split="val")
    with pytest.raises(DatasetLayoutError, match="TSS"):
        load_tss(tmp_path / "absent")


def test_check_finds_a_flow_of_the_wrong_size(tss):
    assert check_dataset("tss", tss, progress=False).ok
    write_flo(tss / "FG3DCar" / "car_001" / "flow2.flo", np.zeros((5, 5, 2), np.float32))
    report = check_dataset("tss", tss, progress=False)
    assert not report.ok and "5 x 5" in report.unreadable_annotations[0][1]


def test_download_from_a_loopback_server(server: Served, tss, tmp_path):  # noqa: F811
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(tss.rglob("*")):
            if path.is_file():
                zf.write(path, f"TSS_CVPR2016/{path.relative_to(tss).as_posix()}")
    server.files["official/TSS_CVPR2016.zip"] = buf.getvalue()
    res = download("tss", tmp_path / "data", table=table_for(server), progress=False, log=Log())
    assert res.folder == tmp_path / "data" / "TSS_CVPR2016"
    assert len(load_tss(res.folder)) == 6
    assert check_dataset("tss", res.folder, progress=False).ok
