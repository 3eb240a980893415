"""GeoAware-SC's released adapters as registered weights: ``python -m corr.weights download
geoaware-spair`` (a pinned raw file, checked against its git blob id, from a loopback server
here), the not-found message, and ``Matcher(adapter="geoaware-spair")`` loading it by name."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

from corr import weights as W
from corr.adapters import AggregationNetwork, open_adapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_weights_wheel_file import FileServer  # noqa: E402

sys.path.pop(0)
D = importlib.import_module("corr.weights.download")


def blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def test_the_entries_pin_the_reference_commit():
    for name in ("geoaware-spair", "geoaware-ap10k"):
        known = W.KNOWN_WEIGHTS[name]
        assert known.kind == "url-file"
        assert "/99fd6b6a37d22aa2fabe75e7f48a3eaba51cfb72/" in known.remote.url
        assert re.fullmatch(r"[0-9a-f]{40}", known.remote.git_blob_sha1)
    assert W.KNOWN_WEIGHTS["geoaware-spair"].remote.url.endswith("results_spair/best_856.PTH")


@pytest.fixture
def released(tmp_path, monkeypatch):
    """A GeoAware-SC-style checkpoint (torch.save of a reference-sized state dict) served at the
    pinned URL's path; the registry entry's blob id is this file's."""
    torch.manual_seed(0)
    buf = tmp_path / "best.PTH"
    torch.save(AggregationNetwork().state_dict(), buf)
    data = buf.read_bytes()
    known = W.KNOWN_WEIGHTS["geoaware-spair"]
    path = "/" + known.remote.url.split("://", 1)[1]
    server = FileServer({path: data})
    pinned = dataclasses.replace(known.remote, git_blob_sha1=blob_id(data))
    monkeypatch.setitem(
        W.KNOWN_WEIGHTS, "geoaware-spair", dataclasses.replace(known, remote=pinned)
    )
    monkeypatch.setenv("CORR_REMOTE_FILES_URL", server.url)
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.delenv("CORR_OFFLINE", raising=False)
    yield data, server
    server.close()


def test_download_checks_the_blob_and_open_adapter_finds_it_by_name(released, tmp_path):
    data, server = released
    with pytest.raises(
        W.WeightsNotFoundError, match="python -m corr.weights download geoaware-spair"
    ):
        open_adapter("geoaware-spair")
    target = D.download("geoaware-spair")
    assert target == tmp_path / "weights" / "geoaware-sc" / "results_spair_best_856.PTH"
    assert target.read_bytes() == data and len(server.log) == 1
    D.download("geoaware-spair")  # already there with the right blob: not fetched again
    assert len(server.log) == 1
    module, record = open_adapter("geoaware-spair")
    assert isinstance(module, AggregationNetwork) and not module.training
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["evaluation"] == {"soft_eval": True, "soft_eval_window": 7}
    assert record["features"] == {"extractors": ["sd15", "dinov2_vitb14"], "protocol": "geoaware"}
    torch.manual_seed(0)
    want = AggregationNetwork().state_dict()
    for k, v in module.state_dict().items():
        assert torch.equal(v, want[k]), k


def test_a_file_that_is_not_the_pinned_one_is_refused(released, tmp_path, monkeypatch):
    data, server = released
    server.files = {k: v[:-10] for k, v in server.files.items()}  # truncated
    with pytest.raises(D.DownloadError, match="git blob id .* expected .*nothing was kept"):
        D.download("geoaware-spair")
    folder = tmp_path / "weights" / "geoaware-sc"
    assert not any(p.is_file() for p in folder.rglob("*")) if folder.exists() else True
    monkeypatch.setenv("CORR_OFFLINE", "1")
    with pytest.raises(D.DownloadError, match="offline.*copy best_856.PTH from a checkout"):
        D.download("geoaware-spair")
