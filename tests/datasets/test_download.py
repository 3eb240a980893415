"""``python -m corr.datasets download``: fetch, resume, verify, unpack atomically, build AP-10K.

No internet: a loopback HTTP server (127.0.0.1, port 0) serves archives built here in each
benchmark's published layout (SPair-71k and PF-Pascal from the minireal photos, AP-10K a small
COCO-style raw release).
"""

from __future__ import annotations

import ast
import copy
import errno
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from minireal_subset import CATS, copy_spair
from synthetic_ap10k import make_ap10k_raw

import corr.datasets.fetching as fetching
from corr.datasets import DatasetLayoutError, load_ap10k, load_pairs, load_pfpascal, load_spair
from corr.datasets.__main__ import main
from corr.datasets.download import (
    RECORD,
    CorruptArchiveError,
    DownloadError,
    UnsafeArchiveError,
    download,
    sources,
    unpack_archive,
)

REPO = Path(__file__).resolve().parents[2]
SPAIR = "SPair-71k.tar.gz"
PF_ZIP = "PF-dataset-PASCAL.zip"
AP_ZIP = "ap-10k.zip"


# ------------------------------------------------------------------------------ test server


class Served:
    """What the loopback server serves, how it misbehaves, and what it was asked."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut: dict[str, list[int]] = {}  # path -> byte counts after which to hang up
        self.no_range: set[str] = set()  # paths served whole whatever Range says
        self.no_length: set[str] = set()  # paths sent without Content-Length
        self.html: set[str] = set()  # paths answered with a web page
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + urllib.parse.quote(path)

    def asked(self, path: str) -> list[str | None]:
        return [r for p, r in self.requests if p == path]


def _handler(state: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one response per connection
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            rng = self.headers.get("Range")
            state.requests.append((path, rng))
            if path in state.html:
                body = b"<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            data = state.files.get(path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and path not in state.no_range:
                start = int(m.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Type", "application/octet-stream")
            if path not in state.no_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cuts = state.cut.get(path)
            if cuts:
                self.wfile.write(body[: cuts.pop(0) - start])
                self.wfile.flush()
                return  # hang up half-way
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(fetching, "RETRY_WAIT", 0.0)
    monkeypatch.setattr(fetching, "CHUNK", 16 * 1024)  # several chunks per archive
    state = Served()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    assert httpd.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield state
    httpd.shutdown()
    httpd.server_close()


def table_for(state: Served) -> dict:
    """The packaged sources table with every URL moved to the loopback server."""
    table = copy.deepcopy(sources())
    for entry in table.values():
        for f in entry["files"]:
            f["url"] = state.url(f"official/{f['name']}")
    return table


class Log(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)

    @property
    def text(self) -> str:
        return "\n".join(self)


# -------------------------------------------------------------------------------- archives


def _tar_gz(folder: Path, arcname: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname=arcname)
    return buf.getvalue()


def _zip(folder: Path, arcname: str, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            name = f"{arcname}/{path.relative_to(folder).as_posix()}"
            if path.is_dir():
                zf.writestr(name + "/", b"")
            else:
                zf.write(path, name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_pfpascal(minireal: Path, dest: Path) -> dict[str, bytes]:
    """PF-dataset-PASCAL/ (images of CATS) in ``dest``; returns the two CSVs' bytes."""
    src = minireal / "PF-Pascal"
    lines = (src / "test_pairs_pf_pascal.csv").read_text().splitlines()
    rows = [r for r in lines[1:] if Path(r.split(",")[0]).name.split("_")[0] in CATS]
    (dest / "PF-dataset-PASCAL/JPEGImages").mkdir(parents=True)
    for row in rows:
        for rel in row.split(",")[:2]:
            shutil.copy(src / rel, dest / rel)
    test = "\n".join([lines[0], *rows]) + "\n"
    val = "\n".join([lines[0], rows[0]]) + "\n"
    return {"test_pairs_pf_pascal.csv": test.encode(), "val_pairs_pf_pascal.csv": val.encode()}


@pytest.fixture(scope="module")
def archives(minireal: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("archives")
    stems = copy_spair(minireal, base / "SPair-71k")
    csvs = make_pfpascal(minireal, base / "pf")
    make_ap10k_raw(base / "ap-10k")
    junk = {"__MACOSX/PF-dataset-PASCAL/._x.jpg": b"\0\5\26\7", "PF-dataset-PASCAL/.DS_Store": b"x"}
    return {
        "spair": _tar_gz(base / "SPair-71k", "SPair-71k"),
        "spair_stems": stems,
        "pf_zip": _zip(base / "pf/PF-dataset-PASCAL", "PF-dataset-PASCAL", junk),
        "pf_csv": csvs,
        "ap_zip": _zip(base / "ap-10k", "ap-10k"),
    }


def serve_all(state: Served, archives: dict) -> None:
    state.files["official/" + SPAIR] = archives["spair"]
    state.files["official/" + PF_ZIP] = archives["pf_zip"]
    for name, data in archives["pf_csv"].items():
        state.files["official/" + name] = data
    state.files["official/" + AP_ZIP] = archives["ap_zip"]


def leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# ------------------------------------------------------------------------------- the table


def test_sources_table_is_recorded_with_provenance() -> None:
    table = sources()
    assert set(table) == {"spair", "spair-u", "pfpascal", "pfwillow", "tss", "ap10k"}
    for name, entry in table.items():
        assert entry["files"], name
        for f in entry["files"]:
            assert urllib.parse.urlsplit(f["url"]).scheme in ("http", "https"), f
            assert f["url_from"], f  # where the URL is published
            # a sum is recorded only when known: never a guess
            assert f["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), f
    spair = table["spair"]["files"][0]
    assert spair["url"] == "http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz"
    assert table["spair"]["published_pairs"]["test"] == 12234
    assert table["pfpascal"]["published_pairs"]["test"] == 299
    pf = [f["url"] for f in table["pfpascal"]["files"]]
    assert "www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset-PASCAL.zip" in pf[0]
    assert pf[1].endswith("/cnngeometric/other_resources/test_pairs_pf_pascal.csv")
    assert "drive.google.com" in table["ap10k"]["files"][0]["url"]
    cfg = (REPO / "setup.cfg").read_text()
    assert re.search(r"^corr\.datasets\s*=.*sources\.json", cfg, re.M), "not packaged"


@pytest.mark.parametrize(
    "module", ["download.py", "fetching.py", "archives.py", "obtain.py", "check.py", "__main__.py"]
)
def test_new_modules_import_no_model_code(module: str) -> None:
    tree = ast.parse((REPO / "corr/datasets" / module).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    bad = [n for n in names if n.split(".")[0] in ("torch", "timm", "diffusers", "transformers")]
    bad += [n for n in names if n.startswith(("extractors", "corr.extractors", "..pipeline"))]
    assert not bad, bad


# ---------------------------------------------------------------------------- happy paths


def test_spair_download_unpacks_atomically_and_second_run_does_nothing(
    server: Served, archives: dict, tmp_path: Path
) -> None:
    serve_all(server, archives)
    root = tmp_path / "data"
    log = Log()
    res = download("spair", root, table=table_for(server), progress=False, log=log)
    assert res.status == "done" and res.folder == root / "SPair-71k"
    digest = hashlib.sha256(archives["spair"]).hexdigest()
    assert f"SHA-256 of {SPAIR}: {digest}" in log.text and "no sum is recorded" in log.text
    recs = load_spair(root / "SPair-71k")
    assert [r.pair_id for r in recs] == sorted(archives["spair_stems"])
    assert all(r.src_image.is_file() and r.tgt_image.is_file() for r in recs)
    record = json.loads((root / "SPair-71k" / RECORD).read_text())
    assert record["files"][0]["sha256"] == digest and record["files"][0]["verified"] is False
    assert not (root / ".downloads").exists()  # archive removed, staging gone
    assert server.asked("official/" + SPAIR) == [None]

    before = {p: p.stat().st_mtime_ns for p in (root / "SPair-71k").rglob("*")}
    log2 = Log()
    again = download("spair", root, table=table_for(server), progress=False, log=log2)
    assert again.status == "complete" and "nothing to do" in log2.text
    assert server.asked("official/" + SPAIR) == [None]  # no second request
    assert {p: p.stat().st_mtime_ns for p in (root / "SPair-71k").rglob("*")} == before


def test_pfpascal_from_mirror_base_url_drops_mac_litter(
    server: Served, archives: dict, tmp_path: Path
) -> None:
    server.files["mirror/" + PF_ZIP] = archives["pf_zip"]
    for name, data in archives["pf_csv"].items():
        server.files["mirror/" + name] = data
    root = tmp_path / "data"
    download("pfpascal", root, origins=[server.url("mirror/")], progress=False, log=Log())
    folder = root / "PF-Pascal"
    assert (folder / "test_pairs_pf_pascal.csv").read_bytes() == archives["pf_csv"][
        "test_pairs_pf_pascal.csv"
    ]
    assert not (root / "__MACOSX").exists() and not (folder / "__MACOSX").exists()
    assert not list(folder.rglob(".DS_Store")) and not list(folder.rglob("._*"))
    test = load_pfpascal(folder)
    assert len(test) == len(archives["pf_csv"]["test_pairs_pf_pascal.csv"].splitlines()) - 1
    assert all(r.tgt_image.is_file() and r.pck_size > 0 for r in test)
    assert len(load_pfpascal(folder, "val")) == 1
    assert {p for p, _ in server.requests} == {"mirror/" + n for n in (PF_ZIP, *archives["pf_csv"])}


def test_ap10k_download_runs_the_builder(server: Served, archives: dict, tmp_path: Path) -> None:
    serve_all(server, archives)
    root = tmp_path / "data"
    log = Log()
    res = download("ap10k", root, table=table_for(server), progress=False, log=log)
    assert res.folder == root / "AP-10K" and "building the AP-10K benchmark" in log.text
    manifest = json.loads((root / "AP-10K/manifest.json").read_text())
    assert (root / "ap-10k" / RECORD).is_file() and (root / "AP-10K" / RECORD).is_file()
    for subset, key in (("intra-species", "test"), ("cross-species", "test_cross_species")):
        recs = load_ap10k(root / "AP-10K", subset=subset)
        assert len(recs) == manifest["pairs"][key] > 0
        assert all(r.src_image.is_file() for r in recs)
    assert len(load_ap10k(root / "AP-10K", subset="cross-family")) > 0
    log2 = Log()
    assert download("ap10k", root, table=table_for(server), progress=False, log=log2).status == (
        "complete"
    )
    assert "nothing to do" in log2.text and len(server.asked("official/" + AP_ZIP)) == 1


def test_ap10k_from_a_local_file_is_used_and_kept(archives: dict, tmp_path: Path) -> None:
    mine = tmp_path / "Downloads" / "ap10k (1).zip"  # renamed by a browser
    mine.parent.mkdir()
    mine.write_bytes(archives["ap_zip"])
    root = tmp_path / "data"
    download("ap10k", root, origins=[str(mine)], progress=False, log=Log())
    assert mine.read_bytes() == archives["ap_zip"]  # the user's file is never removed
    assert (root / "AP-10K/manifest.json").is_file()
    rec = json.loads((root / "ap-10k" / RECORD).read_text())
    assert rec["files"][0]["origin"] == str(mine)


def test_pfpascal_from_a_folder_makes_no_request(archives: dict, tmp_path: Path) -> None:
    have = tmp_path / "have"
    have.mkdir()
    (have / PF_ZIP).write_bytes(archives["pf_zip"])
    for name, data in archives["pf_csv"].items():
        (have / name).write_bytes(data)
    table = copy.deepcopy(sources())
    for f in table["pfpascal"]["files"]:
        f["url"] = "http://127.0.0.1:9/never-fetched"  # port 9: nothing listens
    download("pfpascal", tmp_path / "data", origins=[str(have)], table=table, progress=False)
    assert load_pfpascal(tmp_path / "data/PF-Pascal")


# ------------------------------------------------------------------------------ checksums


def test_known_sum_verifies_and_a_wrong_sum_is_refused(
    server: Served, archives: dict, tmp_path: Path
) -> None:
    serve_all(server, archives)
    root = tmp_path / "data"
    good = hashlib.sha256(archives["spair"]).hexdigest()
    wrong = "0" * 64
    with pytest.raises(DownloadError) as err:
        download("spair", root, table=table_for(server), sums={SPAIR: wrong}, progress=False)
    msg = str(err.value)
    assert "SHA-256 mismatch" in msg and good in msg and wrong in msg and SPAIR in msg
    assert not (root / "SPair-71k").exists()
    assert not (root / ".downloads" / SPAIR).exists()  # the bad download is not kept
    # the recorded table's sum is used when no override is given
    table = table_for(server)
    table["spair"]["files"][0]["sha256"] = good
    log = Log()
    download("spair", root, table=table, progress=False, log=log)
    assert f"{good} (verified)" in log.text
    assert json.loads((root / "SPair-71k" / RECORD).read_text())["files"][0]["verified"] is True
    assert len(server.asked("official/" + SPAIR)) == 2
    with pytest.raises(ValueError, match="64 hex"):
        download("spair", tmp_path / "other", table=table, sums={SPAIR: "abc"}, progress=False)


def test_wrong_sum_of_a_local_file_leaves_it(archives: dict, tmp_path: Path) -> None:
    mine = tmp_path / SPAIR
    mine.write_bytes(archives["spair"])
    with pytest.raises(DownloadError, match="left as it is"):
        download("spair", tmp_path / "data", origins=[str(mine)], sums={SPAIR: "1" * 64})
    assert mine.read_bytes() == archives["spair"]
    assert not (tmp_path / "data/SPair-71k").exists()


# ------------------------------------------------------------------------ broken transfers


def test_connection_cut_half_way_is_resumed(server: Served, archives: dict, tmp_path: Path) -> None:
    serve_all(server, archives)
    half = len(archives["spair"]) // 2
    server.cut["official/" + SPAIR] = [half]
    log = Log()
    download("spair", tmp_path / "data", table=table_for(server), progress=False, log=log)
    assert server.asked("official/" + SPAIR) == [None, f"bytes={half}-"]
    assert "retrying" in log.text
    assert len(load_spair(tmp_path / "data/SPair-71k")) == len(archives["spair_stems"])


def test_cut_without_retries_keeps_the_part_for_the_next_run(
    server: Served, archives: dict, tmp_path: Path
) -> None:
    serve_all(server, archives)
    root = tmp_path / "data"
    third = len(archives["spair"]) // 3
    server.cut["official/" + SPAIR] = [third, 2 * third]
    for _ in range(2):
        with pytest.raises(DownloadError, match="run the same command to resume"):
            download("spair", root, table=table_for(server), retries=0, progress=False)
        assert not (root / "SPair-71k").exists() and not (root / ".downloads" / SPAIR).exists()
    part = root / ".downloads" / f"{SPAIR}.part"
    assert part.read_bytes() == archives["spair"][: 2 * third]
    download("spair", root, table=table_for(server), retries=0, progress=False)
    assert server.asked("official/" + SPAIR) == [None, f"bytes={third}-", f"bytes={2 * third}-"]
    assert load_spair(root / "SPair-71k") and not part.exists()


def test_server_without_range_support_restarts_cleanly(
    server: Served, archives: dict, tmp_path: Path
) -> None:
    serve_all(server, archives)
    server.no_range.add("official/" + SPAIR)
    server.cut["official/" + SPAIR] = [len(archives["spair"]) // 2]
    log = Log()
    download("spair", tmp_path / "data", table=table_for(server), progress=False, log=log)
    assert "does not resume" in log.text  # the whole file again, not appended to the half
    rec = json.loads((tmp_path / "data/SPair-71k" / RECORD).read_text())
    assert rec["files"][0]["sha256"] == hashlib.sha256(archives["spair"]).hexdigest()


def test_unknown_length_download_is_complete(server: Served, archives: dict, tmp_path: Path):
    serve_all(server, archives)
    server.no_length.add("official/" + SPAIR)
    download("spair", tmp_path / "data", table=table_for(server), progress=False, log=Log())
    assert load_spair(tmp_path / "data/SPair-71k")


def test_http_404_is_not_retried_and_names_from(server: Served, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as err:
        download("spair", tmp_path / "data", table=table_for(server), progress=False)
    assert "HTTP 404" in str(err.value) and "--from" in str(err.value)
    assert len(server.requests) == 1


def test_google_drive_page_tells_to_download_by_hand(server: Served, tmp_path: Path) -> None:
    server.html.add("uc")
    table = copy.deepcopy(sources())
    table["ap10k"]["files"][0]["url"] = server.url("uc") + "?id=1-FNNGcdtAQRehYYkGY1y4wzFNg4iWNad"
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as err:
        download("ap10k", root, table=table, progress=False)
    msg = str(err.value)
    assert "web page" in msg and "by hand" in msg and f"--from PATH/{AP_ZIP}" in msg
    assert f"--root {root}" in msg and "\n" not in msg
    assert not list(root.rglob("*.part")) and not (root / "ap-10k").exists()


def test_corrupt_archive_is_refused_and_the_bad_download_removed(
    server: Served, archives: dict, tmp_path: Path
) -> None:
    serve_all(server, archives)
    server.files["official/" + SPAIR] = archives["spair"][: len(archives["spair"]) * 2 // 3]
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as err:
        download("spair", root, table=table_for(server), progress=False)
    assert "damaged or truncated" in str(err.value) and "download it again" in str(err.value)
    assert not (root / "SPair-71k").exists()
    assert not (root / ".downloads" / SPAIR).exists()
    assert not list(root.rglob("unpack-*"))
    server.files["official/" + SPAIR] = archives["spair"]  # fixed upstream: the next run works
    download("spair", root, table=table_for(server), progress=False)
    assert len(server.asked("official/" + SPAIR)) == 2


@pytest.mark.parametrize(
    "content,match",
    [(b"PK\x03\x04 not really a zip", "damaged or truncated"), (b"<!doctype html><p>", "web page")],
)
def test_corrupt_local_zip_is_refused_and_kept(tmp_path: Path, content: bytes, match: str) -> None:
    mine = tmp_path / AP_ZIP
    mine.write_bytes(content)
    with pytest.raises(DownloadError, match=match) as err:
        download("ap10k", tmp_path / "data", origins=[str(mine)], progress=False)
    assert "left as it is" in str(err.value) and mine.read_bytes() == content
    assert not (tmp_path / "data/ap-10k").exists() and not (tmp_path / "data/AP-10K").exists()


def test_wrong_archive_is_refused(server: Served, archives: dict, tmp_path: Path) -> None:
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong/readme.txt").write_text("some other data set")
    server.files["official/" + SPAIR] = _tar_gz(tmp_path / "wrong", "SPair-71k")
    with pytest.raises(DownloadError, match="JPEGImages is missing"):
        download("spair", tmp_path / "data", table=table_for(server), progress=False)
    assert not (tmp_path / "data/SPair-71k").exists()


# ------------------------------------------------------------------------------- full disk


def _enospc_after(limit: int, only: str = ""):
    """A ``write_bytes`` that fills ``limit`` bytes of files whose path contains ``only``, then
    fails like a full disk."""
    written = {"n": 0}

    def write(f, data: bytes) -> None:
        if only not in str(getattr(f, "name", "")):
            f.write(data)
            return
        room = limit - written["n"]
        if len(data) > room:
            f.write(data[: max(room, 0)])
            written["n"] = limit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        f.write(data)
        written["n"] += len(data)

    return write


def test_disk_full_while_downloading(
    server: Served, archives: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_all(server, archives)
    root = tmp_path / "data"
    real_write = fetching.write_bytes
    monkeypatch.setattr(fetching, "write_bytes", _enospc_after(40_000))
    with pytest.raises(DownloadError) as err:
        download("spair", root, table=table_for(server), progress=False)
    msg = str(err.value)
    assert "disk is full" in msg and str(root / ".downloads") in msg and "resume" in msg
    assert not (root / "SPair-71k").exists() and not (root / ".downloads" / SPAIR).exists()
    assert (root / ".downloads" / f"{SPAIR}.part").stat().st_size == 40_000  # kept to resume
    monkeypatch.setattr(fetching, "write_bytes", real_write)
    download("spair", root, table=table_for(server), progress=False)
    assert server.asked("official/" + SPAIR) == [None, "bytes=40000-"]


def test_disk_full_while_unpacking(
    server: Served, archives: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_all(server, archives)
    root = tmp_path / "data"
    monkeypatch.setattr(fetching, "write_bytes", _enospc_after(30_000, only="unpack-"))
    with pytest.raises(DownloadError) as err:
        download("spair", root, table=table_for(server), progress=False)
    msg = str(err.value)
    assert "disk is full" in msg and str(root) in msg and "run the same command" in msg
    assert not (root / "SPair-71k").exists()  # nothing half-unpacked looks complete
    assert not (root / ".downloads/unpack-SPair-71k").exists()  # the staging folder is gone
    assert (root / ".downloads" / SPAIR).is_file()  # the verified archive is kept
    monkeypatch.setattr(fetching, "write_bytes", lambda f, data: f.write(data))
    download("spair", root, table=table_for(server), progress=False)
    assert len(server.asked("official/" + SPAIR)) == 1  # not fetched again
    assert load_spair(root / "SPair-71k")


_TMPFS_SCRIPT = """
import json, shutil, sys
from pathlib import Path
import corr.datasets.download as dl
mnt, table, cases = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = []
for origins in cases:
    root = mnt / "data"
    try:
        dl.download("spair", root, origins=origins, table=table, retries=0, progress=False,
                    log=lambda m: None)
        err = None
    except dl.DownloadError as e:
        err = str(e)
    out.append({"error": err, "left": sorted(str(p.relative_to(root)) for p in root.rglob("*"))})
    shutil.rmtree(root)
print(json.dumps(out))
"""


def test_disk_full_on_a_real_size_limited_folder(
    server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 256 KiB tmpfs mounted in a private user+mount namespace (no root needed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    probe = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mnt}"]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("no user namespaces here; the injected-ENOSPC tests cover this")
    # compressible: a 2 MiB file packs into a few KiB, so only the unpacking fills the disk
    big = tmp_path / "big/SPair-71k"
    for sub in ("JPEGImages", "ImageAnnotation", "PairAnnotation/test", "Layout/large"):
        (big / sub).mkdir(parents=True)
    (big / "Layout/large/test.txt").write_text("")
    (big / "JPEGImages/zeros.bin").write_bytes(bytes(2 << 20))
    local = tmp_path / SPAIR
    local.write_bytes(_tar_gz(big, "SPair-71k"))
    server.files["noisy.tar.gz"] = os.urandom(1 << 20)  # incompressible, 1 MiB
    server.files["quiet.tar.gz"] = server.files["noisy.tar.gz"]
    server.no_length.add("quiet.tar.gz")  # no Content-Length: the disk fills mid-download
    cases = [[str(local)], [server.url("noisy.tar.gz")], [server.url("quiet.tar.gz")]]
    script = 'mount -t tmpfs -o size=256k tmpfs "$1" && exec "$2" -c "$3" "$1" "$4" "$5"'
    cmd = ["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), sys.executable, _TMPFS_SCRIPT]
    cmd += [json.dumps(sources()), json.dumps(cases)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    unpack, preflight, midway = json.loads(proc.stdout.splitlines()[-1])
    root = mnt / "data"
    assert "disk is full" in unpack["error"] and str(root) in unpack["error"]
    assert unpack["left"] == []  # no SPair-71k/, no staging folder
    assert (
        "not enough space" in preflight["error"] and str(root / ".downloads") in preflight["error"]
    )
    assert preflight["left"] == []
    assert "disk is full" in midway["error"] and str(root / ".downloads") in midway["error"]
    assert midway["left"] == [".downloads", f".downloads/{SPAIR}.part"]  # kept to resume


# --------------------------------------------------------------------------------- unpacking


def _tar_with(members: list[tarfile.TarInfo], data: bytes = b"evil") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for m in members:
            if m.isreg():
                m.size = len(data)
                tf.addfile(m, io.BytesIO(data))
            else:
                tf.addfile(m)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, link
    return m


UNSAFE_TARS = {
    "dotdot": [_member("SPair-71k/ok.txt"), _member("SPair-71k/../../evil.txt")],
    "absolute": [_member("/tmp/corr-test-evil.txt")],
    "symlink-out": [_member("SPair-71k/l", tarfile.SYMTYPE, "../../evil")],
    "symlink-up": [_member("SPair-71k/l", tarfile.SYMTYPE, "..")],
    "symlink-abs": [_member("SPair-71k/l", tarfile.SYMTYPE, "/etc")],
    "hardlink-out": [_member("SPair-71k/h", tarfile.LNKTYPE, "../outside.txt")],
    "hardlink-dangling": [_member("SPair-71k/h", tarfile.LNKTYPE, "SPair-71k/none.txt")],
    "device": [_member("SPair-71k/dev", tarfile.CHRTYPE)],
}


@pytest.mark.parametrize("case", sorted(UNSAFE_TARS))
def test_tar_members_leaving_the_folder_are_refused(case: str, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_with(UNSAFE_TARS[case]))
    box = tmp_path / "box"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        unpack_archive(archive, box / "out", member="SPair-71k")
    assert not (tmp_path / "evil.txt").exists() and not (box / "evil.txt").exists()
    assert not Path("/tmp/corr-test-evil.txt").exists()
    assert not [p for p in (box / "out").rglob("*") if p.is_symlink()]
    # through download(): nothing appears, the staging folder is removed
    with pytest.raises(UnsafeArchiveError):
        download("spair", tmp_path / "data", origins=[str(archive)], progress=False)
    assert leftovers(tmp_path / "data") == []


def test_zip_members_leaving_the_folder_are_refused(tmp_path: Path) -> None:
    for name in ("../evil.txt", "/abs-evil.txt", "PF-dataset-PASCAL/../../evil.txt"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("PF-dataset-PASCAL/ok.txt", b"ok")
            zf.writestr(name, b"evil")
        (tmp_path / "a.zip").write_bytes(buf.getvalue())
        with pytest.raises(UnsafeArchiveError, match="refusing"):
            unpack_archive(tmp_path / "a.zip", tmp_path / "box/out", member="PF-dataset-PASCAL")
        assert not (tmp_path / "box/out/ok.txt").exists()  # every name is checked first
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("PF-dataset-PASCAL/link")
        info.external_attr = 0o120777 << 16  # a symbolic link
        zf.writestr(info, "../../outside")
    (tmp_path / "l.zip").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        unpack_archive(tmp_path / "l.zip", tmp_path / "box2", member="PF-dataset-PASCAL")
    assert not (tmp_path / "evil.txt").exists()


def test_links_inside_the_folder_are_unpacked(tmp_path: Path) -> None:
    members = [
        _member("SPair-71k/a/file.txt"),
        _member("SPair-71k/b/link", tarfile.SYMTYPE, "../a/file.txt"),
        _member("SPair-71k/hard.txt", tarfile.LNKTYPE, "SPair-71k/a/file.txt"),
        _member("__MACOSX/SPair-71k/._file.txt"),
        _member("other-top-folder/ignored.txt"),
    ]
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_with(members, b"data"))
    out = tmp_path / "out"
    assert unpack_archive(archive, out, member="SPair-71k") == 3
    assert (out / "b/link").is_symlink() and (out / "b/link").read_bytes() == b"data"
    assert (out / "hard.txt").read_bytes() == b"data"
    assert leftovers(out) == ["a", "a/file.txt", "b", "b/link", "hard.txt"]


def test_truncated_archive_raises_corrupt(tmp_path: Path, archives: dict) -> None:
    (tmp_path / "t.tar.gz").write_bytes(archives["spair"][:5000])
    with pytest.raises(CorruptArchiveError):
        unpack_archive(tmp_path / "t.tar.gz", tmp_path / "out", member="SPair-71k")


# ------------------------------------------------------------------------ existing folders


def test_a_folder_not_made_by_download_is_left_alone(tmp_path: Path, archives: dict) -> None:
    (tmp_path / "data/SPair-71k").mkdir(parents=True)
    (tmp_path / "data/SPair-71k/mine.txt").write_text("mine")
    local = tmp_path / SPAIR
    local.write_bytes(archives["spair"])
    with pytest.raises(DownloadError, match="not made by this command") as err:
        download("spair", tmp_path / "data", origins=[str(local)], progress=False)
    assert "corr.datasets check spair" in str(err.value)
    assert leftovers(tmp_path / "data") == ["SPair-71k", "SPair-71k/mine.txt"]


# -------------------------------------------------------------------------------------- CLI


def test_cli_download_mirror_url_then_nothing_to_do(
    server: Served, archives: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server.files["mirror/renamed.tgz"] = archives["spair"]
    root = tmp_path / "data"
    args = ["download", "spair", "--root", str(root), "--no-progress"]
    good = hashlib.sha256(archives["spair"]).hexdigest()
    assert main([*args, "--from", server.url("mirror/renamed.tgz"), "--sha256", "f" * 64]) == 1
    assert "SHA-256 mismatch" in capsys.readouterr().err
    assert main([*args, "--from", server.url("mirror/renamed.tgz"), "--sha256", good]) == 0
    assert f"{good} (verified)" in capsys.readouterr().out
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert len(server.asked("mirror/renamed.tgz")) == 2
    assert main(["download", "spair", "pfpascal", "--from", "x"]) == 2
    assert "--from needs a single data set" in capsys.readouterr().err
    assert main(["download", "pfpascal", "--root", str(root), "--from", str(tmp_path / "no")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


# ------------------------------------------------------------- item 3: the eval error names it


def test_missing_root_names_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_pairs("spair", tmp_path / "data/SPair-71k")
    assert f"python -m corr.datasets download spair --root {tmp_path / 'data'}" in str(err.value)
    assert err.value.missing == tmp_path / "data/SPair-71k"
    with pytest.raises(DatasetLayoutError) as err:
        load_pairs("ap10k", tmp_path / "AP-10K")
    assert f"python -m corr.datasets download ap10k --root {tmp_path}" in str(err.value)
    (tmp_path / "mine").mkdir()
    with pytest.raises(DatasetLayoutError) as err:
        load_pairs("pfpascal", tmp_path / "mine")
    msg = str(err.value)
    assert f"(makes {tmp_path / 'PF-Pascal'}; pass that as --root)" in msg
    assert f"python -m corr.datasets check pfpascal --root {tmp_path / 'mine'}" in msg


def test_eval_cli_missing_root_names_the_download_command(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from corr.eval.cli import main as eval_main

    root = tmp_path / "data" / "PF-Pascal"
    args = ["pfpascal", "--root", str(root), "--extractor", "corr.contrib.mobilenet:mobilenetv2"]
    assert eval_main(args) == 2
    err = capsys.readouterr().err
    assert f"python -m corr.datasets download pfpascal --root {tmp_path / 'data'}" in err
