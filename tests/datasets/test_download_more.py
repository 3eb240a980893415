"""``python -m corr.datasets download/check`` for PF-Willow and SPair-U against a loopback
server (the server and helpers of test_download.py), on synthetic copies in the published
formats (synthetic_benchmarks.py)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from synthetic_benchmarks import make_pfwillow, make_spair_u
from test_download import Log, Served, server, table_for  # noqa: F401  (server: a fixture)

from corr.datasets import load_pfwillow, load_spair_u
from corr.datasets.__main__ import main
from corr.datasets.check import check_dataset
from corr.datasets.download import RECORD, download


def _zip_tree(folder: Path, arcname: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(
                    path, "/".join(filter(None, (arcname, path.relative_to(folder).as_posix())))
                )
    return buf.getvalue()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict:
    """The published files: PF-Willow's zip and CSV; SPair-71k's tarball and SPair-U's zip
    (the Extra* folders at its top)."""
    base = tmp_path_factory.mktemp("published")
    make_pfwillow(base / "willow")
    make_spair_u(base / "spair")
    extra = base / "extra"
    for sub in ("ExtraPairAnnotation", "ExtraImageAnnotation"):
        shutil.move(base / "spair" / sub, extra / sub)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(base / "spair", arcname="SPair-71k")
    return {
        "PF-dataset.zip": _zip_tree(base / "willow" / "PF-dataset", "PF-dataset"),
        "test_pairs_pf.csv": (base / "willow" / "test_pairs_pf.csv").read_bytes(),
        "SPair-71k.tar.gz": buf.getvalue(),
        "SPair-U.zip": _zip_tree(extra),
    }


def test_pfwillow_download_then_check(
    server: Served,  # noqa: F811  (the loopback server fixture of test_download.py)
    published: dict,
    tmp_path: Path,
) -> None:
    for name in ("PF-dataset.zip", "test_pairs_pf.csv"):
        server.files[f"official/{name}"] = published[name]
    root = tmp_path / "data"
    res = download("pfwillow", root, table=table_for(server), progress=False, log=Log())
    assert res.status == "done" and res.folder == root / "PF-WILLOW"
    assert (res.folder / RECORD).is_file() and not (root / ".downloads").exists()
    recs = load_pfwillow(res.folder)
    assert len(recs) == 3 and all(r.tgt_image.is_file() for r in recs)
    report = check_dataset("pfwillow", res.folder, progress=False)
    assert report.ok and report.pairs == {"test": 3} and report.subset  # 3 of the 900
    log = Log()
    again = download("pfwillow", root, table=table_for(server), progress=False, log=log)
    assert again.status == "complete" and "nothing to do" in log.text
    assert len(server.asked("official/PF-dataset.zip")) == 1


def test_spair_u_download_reuses_the_spair_tarball(
    server: Served,  # noqa: F811
    published: dict,
    tmp_path: Path,
) -> None:
    server.files["official/SPair-U.zip"] = published["SPair-U.zip"]
    mine = tmp_path / "SPair-71k.tar.gz"  # the SPair-71k archive the user already has
    mine.write_bytes(published["SPair-71k.tar.gz"])
    root = tmp_path / "data"
    res = download(
        "spair-u", root, origins=[str(mine)], table=table_for(server), progress=False, log=Log()
    )
    assert res.folder == root / "SPair-U"
    assert server.asked("official/SPair-71k.tar.gz") == [] and mine.is_file()
    recs = load_spair_u(res.folder)
    assert [r.category for r in recs] == ["cat", "cat", "dog"]
    assert all(r.src_image.is_file() for r in recs)
    report = check_dataset("spair-u", res.folder, progress=False)
    assert report.ok, report.format()
    assert report.pairs == {"test": 3} and report.images_checked == 5


def test_check_reports_what_is_wrong(tmp_path: Path, capsys) -> None:
    willow = tmp_path / "PF-WILLOW"
    rows = make_pfwillow(willow)
    (willow / rows[0]["imageB"]).unlink()
    assert main(["check", "pfwillow", "--root", str(willow), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert rows[0]["imageB"].split("/")[-1] in out and "PROBLEMS" in out

    spair = tmp_path / "SPair-U"
    pairs = make_spair_u(spair)
    bad = spair / "ExtraPairAnnotation" / "test" / f"{pairs[0]['filename']}.json"
    bad.write_text(json.dumps({**pairs[0], "src_imname": "../../../../etc/passwd"}))
    report = check_dataset("spair-u", spair, progress=False)
    assert not report.ok and report.outside and "src_imname" in report.outside[0][1]
    assert main(["check", "spair-u", "--root", str(tmp_path / "absent")]) == 2
    assert "download spair-u" in capsys.readouterr().err
