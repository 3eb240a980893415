"""demos/show_features.py: joint-PCA feature view and query similarity maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from demo_loader import load_demo

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "demos" / "assets"


sf = load_demo("show_features")


def test_two_images_with_a_query(tmp_path, capsys):
    out = tmp_path / "features.png"
    argv = [
        str(ASSETS / "gazelle.jpg"),
        str(ASSETS / "jaguar.jpg"),
        "--query",
        "291,312",
        "--out",
        str(out),
    ]
    assert sf.main([*argv, "--extractor", "tiny", "--no-pretrained", "--device", "cpu"]) == 0
    assert out.is_file() and out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "best match" in printed and str(out) in printed


def test_three_images_without_query(tmp_path):
    out = tmp_path / "three.png"
    imgs = [str(ASSETS / "gazelle.jpg"), str(ASSETS / "jaguar.jpg"), str(ASSETS / "gazelle.jpg")]
    assert (
        sf.main(
            [*imgs, "--out", str(out), "--extractor", "tiny", "--no-pretrained", "--device", "cpu"]
        )
        == 0
    )
    assert out.stat().st_size > 10_000


def test_bad_query_and_missing_image(tmp_path, capsys):
    out = tmp_path / "f.png"
    assert (
        sf.main(
            [str(ASSETS / "gazelle.jpg"), "--query", "1;2", "--out", str(out), "--no-pretrained"]
        )
        == 2
    )
    assert "--query" in capsys.readouterr().err
    assert (
        sf.main(
            [str(ASSETS / "gazelle.jpg"), "--query", "5000,1", "--out", str(out), "--no-pretrained"]
        )
        == 2
    )
    assert sf.main([str(tmp_path / "missing.png"), "--out", str(out), "--no-pretrained"]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert not out.exists()


def test_joint_pca_and_grid_mapping():
    from corr.geometry import Letterbox, content_mask
    from corr.viz import grid_to_image, joint_pca_rgb

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, 12, 12, generator=g), torch.randn(16, 12, 12, generator=g)
    lb = Letterbox(200, 100, 168)
    masks = [content_mask(lb, 12), np.ones((12, 12), bool)]
    ra, rb = joint_pca_rgb([a, b], masks)
    assert ra.shape == (12, 12, 3)
    assert np.isnan(ra[~masks[0]]).all() and not np.isnan(ra[masks[0]]).any()
    valid = np.concatenate([ra[masks[0]], rb.reshape(-1, 3)])
    np.testing.assert_allclose(valid.min(0), 0, atol=1e-9)  # jointly min-max scaled
    np.testing.assert_allclose(valid.max(0), 1, atol=1e-9)
    img = grid_to_image(ra, lb)
    assert img.shape == (100, 200, 3) and not np.isnan(img).any()  # padding cropped away
