"""python -m corr.extract: a full disk is one line naming the folder, exit 1, and resumable."""

from __future__ import annotations

import errno

import numpy as np
from PIL import Image

from corr import cache as cache_module
from corr.extract import main
from corr.io import WriteError


def test_full_disk_is_one_line_and_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "features"
    argv = ["--images", str(images), "--out", str(out), "--extractor", "dinov2-tiny"]
    argv += ["--no-pretrained", "--no-progress", "--device", "cpu"]
    real_put = cache_module.FeatureCache.put
    calls = {"n": 0}

    def put(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second entry hits a full disk
            raise WriteError(out / "entry.safetensors", OSError(errno.ENOSPC, "No space left"))
        return real_put(self, *a, **k)

    monkeypatch.setattr(cache_module.FeatureCache, "put", put)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "No space left" in err and str(out) in err and "run the same command" in err
    assert "Traceback" not in err
    monkeypatch.setattr(cache_module.FeatureCache, "put", real_put)
    assert main(argv) == 0  # resumes: the missing entries are extracted now
