"""``corr.eval --adapter`` and ``corr.extract --adapter``: the adapter's extractors and
evaluation by default, recorded in the run; a missing adapter named by the preflight with the
other missing pieces."""

from __future__ import annotations

import hashlib
import json

import pytest

from corr.eval.cli import main
from corr.extract import main as extract_main


@pytest.fixture
def adapter(standin_adapter):
    """A (randomly initialised) adapter for the MobileNetV2 stand-in's features."""
    return standin_adapter


def test_eval_with_an_adapter_uses_its_extractors_and_records_it(
    adapter, minireal, mobilenet_feature_cache, tmp_path
):
    out = tmp_path / "run"
    args = [
        "spair", "--root", str(minireal / "SPair-71k"), "--adapter", str(adapter),
        "--limit", "3", "--out", str(out), "--cache-dir", str(mobilenet_feature_cache),
        "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    cfg = json.loads((out / "config.json").read_text())["matcher"]
    assert cfg["adapter"]["sha256"] == hashlib.sha256(adapter.read_bytes()).hexdigest()
    assert cfg["adapter"]["recipe"]["extractors"] == ["corr.contrib.mobilenet:mobilenetv2"]
    assert cfg["method"] == "nn"  # the adapter's evaluation
    assert [e["name"] for e in cfg["extractors"]] == ["mobilenetv2"]
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["matcher"]["adapter"] == cfg["adapter"]
    # features for it, with corr.extract --adapter: the same extractors
    feats = tmp_path / "features"
    images = minireal / "SPair-71k" / "JPEGImages" / "zebra"
    rc = extract_main(["--images", str(images), "--out", str(feats), "--adapter", str(adapter)])
    assert rc == 0
    (key,) = [p.name for p in feats.iterdir() if p.is_dir() and p.name != "paths"]
    assert "mobilenet" in (feats / key / "config.json").read_text()


def test_a_missing_adapter_is_named_with_everything_else_missing(
    minireal, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CORR_OFFLINE", "1")
    base = ["spair", "--root", str(minireal / "SPair-71k"), "--out", str(tmp_path / "x")]
    assert main([*base, "--adapter", "geoaware-spair", "--protocol", "geoaware"]) == 2
    err = capsys.readouterr().err
    assert "adapter geoaware-spair" in err and "python -m corr.weights download" in err
    assert "geoaware-spair" in err.split("to fix them:")[1]
    assert "sd15" in err and "dinov2_vitb14" in err  # the extractors it needs, at once
    assert main([*base, "--adapter", str(tmp_path / "nothing.safetensors")]) == 2
    assert "no such file or folder, and not a registered name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing was written
