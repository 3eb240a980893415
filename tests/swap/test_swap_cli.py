"""python -m corr.swap: the files it writes, and its refusals (exit status 2, a clear line)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from corr.swap.cli import main, parse_mask

STANDIN = "corr.contrib.mobilenet:mobilenetv2"


def test_cli_writes_the_initial_swap_and_its_config(tmp_path, real_mobilenet, capsys):
    rng = np.random.default_rng(0)
    src, tgt = tmp_path / "src.png", tmp_path / "tgt.png"
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(src)
    Image.fromarray(rng.integers(0, 256, (80, 112, 3), dtype=np.uint8)).save(tgt)
    mask = np.zeros((80, 112), np.uint8)
    mask[20:70, 30:100] = 255
    Image.fromarray(mask).save(tmp_path / "mask_tgt.png")
    out = tmp_path / "out"
    argv = [str(src), str(tgt), "--out", str(out), "--no-refine", "--device", "cpu"]
    argv += ["--extractors", STANDIN, "--mask-src", "10,10,110,90"]
    argv += ["--mask-tgt", str(tmp_path / "mask_tgt.png"), "--no-progress"]
    argv += ["--figure", str(tmp_path / "fig.png")]
    assert main(argv) == 0
    assert "corr.swap: written to" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["initial.png", "mask.png", "mask_src.png", "mask_tgt.png", "swap.json"]
    with Image.open(out / "initial.png") as im:
        assert im.size == (112, 80) and im.mode == "RGB"
    with Image.open(out / "mask_tgt.png") as im:
        np.testing.assert_array_equal(np.asarray(im) > 0, mask > 0)
    record = json.loads((out / "swap.json").read_text())
    assert record["size"] == {"width": 112, "height": 80}
    assert record["files"]["initial"] == "initial.png" and "refined" not in record["files"]
    assert record["config"]["masks_from"] == "given" and record["config"]["refine"] is False
    assert record["arguments"]["extractors"] == STANDIN
    assert record["figure"] == str(tmp_path / "fig.png")
    with Image.open(tmp_path / "fig.png") as im:
        assert im.width > 2 * im.height  # source, target and the swap side by side
    with Image.open(out / "mask.png") as im:
        assert (np.asarray(im) > 0).sum() == record["replaced_pixels"] > 0


def test_cli_refusals(tmp_path, capsys, monkeypatch):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    out = str(tmp_path / "out")
    assert main([str(img), str(tmp_path / "missing.png"), "--out", out, "--no-refine"]) == 2
    assert "missing.png: no such image file" in capsys.readouterr().err
    assert main([str(img), str(img), "--out", out]) == 2  # refinement without a category
    assert "needs --category" in capsys.readouterr().err
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))  # no SD weights here
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main([str(img), str(img), "--out", out, "--category", "cat", "--device", "cpu"]) == 2
    assert "python -m corr.weights download sd15" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_masks_on_the_command_line(tmp_path):
    assert parse_mask(None, "--mask-src") is None
    assert parse_mask("1,2,30.5,40", "--mask-src") == (1.0, 2.0, 30.5, 40.0)
    with pytest.raises(FileNotFoundError, match="--mask-tgt nope.png: no such file"):
        parse_mask("nope.png", "--mask-tgt")


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "corr.swap", "--help"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("usage: python -m corr.swap") and "--category" in done.stdout
