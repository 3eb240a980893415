"""demos/show_features.py: joint-PCA feature view and query similarity maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from demo_loader import load_demo

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "corr" / "samples"


sf = load_demo("show_features")


class Spy:
    """Records what the demo hands to corr: the Matcher it builds, the similarity grids, the
    arguments of the figure and the figure it saves."""

    def __init__(self, monkeypatch) -> None:
        import corr
        import corr.pair
        import corr.viz

        self.matchers, self.similarity, self.plot, self.figures = [], [], {}, []
        real_matcher = corr.Matcher
        real_sim, real_plot = corr.pair.cosine_similarity_map, corr.viz.plot_feature_views
        real_save = corr.viz.save_figure

        def matcher(*args, **kwargs):
            self.matchers.append(real_matcher(*args, **kwargs))
            return self.matchers[-1]

        def sim(src, tgt, cell):
            self.similarity.append((tuple(int(c) for c in cell), real_sim(src, tgt, cell)))
            return self.similarity[-1][1]

        def plot(images, pca_rgb, **kwargs):
            self.plot = {"images": images, "pca_rgb": pca_rgb, **kwargs}
            return real_plot(images, pca_rgb, **kwargs)

        def save(fig, path, *args, **kwargs):
            self.figures.append(fig)
            return real_save(fig, path, *args, **kwargs)

        monkeypatch.setattr(corr, "Matcher", matcher)
        monkeypatch.setattr(corr.pair, "cosine_similarity_map", sim)  # Pair.similarity's
        monkeypatch.setattr(corr.viz, "plot_feature_views", plot)
        monkeypatch.setattr(corr.viz, "save_figure", save)


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()  # decodes the whole image: a truncated file fails here
        return im.size


def test_two_images_with_a_query(tmp_path, capsys, monkeypatch):
    import re

    spy = Spy(monkeypatch)
    out = tmp_path / "features.png"
    argv = [
        str(ASSETS / "gazelle.jpg"),  # 640 x 427
        str(ASSETS / "jaguar.jpg"),  # 640 x 462
        "--query",
        "291,312",
        "--out",
        str(out),
        "--matcher",
        "nn",
    ]
    assert sf.main([*argv, "--extractor", "tiny", "--no-pretrained", "--device", "cpu"]) == 0
    w, h = _png_size(out)
    assert 0 < w <= 3 * 3.0 * (640 / 427) * 100 and 0 < h <= 2 * 3.0 * 100 + 40  # within the figure
    (m,) = spy.matchers
    t = m.frame
    # the query's cell on the gazelle, by hand: x * T / 640, y * T / 640 + (T - round(T * 427
    # / 640)) // 2, in cells of T / g
    ((cell, sim),) = spy.similarity
    g = sim.shape[0]
    off_g = (t - round(t * 427 / 640)) // 2
    assert cell == (int(291 * g / 640), int((312 * t / 640 + off_g) * g / t))
    # the best match (nearest neighbour) is the centre of the most similar jaguar cell
    off_j = (t - round(t * 462 / 640)) // 2
    from corr.geometry import Letterbox, content_mask

    content = content_mask(Letterbox(640, 462, t), g)
    assert not content.all()  # the jaguar's letterbox has padding cells: left out
    sim = np.where(content, sim, np.nan)
    cy, cx = np.unravel_index(np.nanargmax(sim), sim.shape)
    want = ((cx + 0.5) * t / g * 640 / t, ((cy + 0.5) * t / g - off_j) * 640 / t)
    printed = capsys.readouterr().out
    found = re.search(r"best match \(([\d.]+), ([\d.]+)\) on jaguar.jpg, cosine ([-\d.]+)", printed)
    assert found, printed
    assert float(found[1]) == pytest.approx(want[0], abs=0.051)
    assert float(found[2]) == pytest.approx(min(want[1], 461), abs=0.051)
    assert float(found[3]) == pytest.approx(np.nanmax(sim), abs=5e-4)
    assert f"figure: {out}" in printed
    # the figure: a row per image (photo, PCA colours, similarity) and one colour bar
    assert spy.plot["query"] == (291.0, 312.0)
    assert spy.plot["best"][0] is None
    assert spy.plot["best"][1] == pytest.approx(want, abs=1e-6)
    assert spy.plot["similarity"][0] is None and spy.plot["similarity"][1].shape == (462, 640)
    assert [im.shape for im in spy.plot["pca_rgb"]] == [(427, 640, 3), (462, 640, 3)]
    assert len(spy.figures[0].axes) == 2 * 3 + 1


def test_three_images_without_query(tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    out = tmp_path / "three.png"
    imgs = [str(ASSETS / "gazelle.jpg"), str(ASSETS / "jaguar.jpg"), str(ASSETS / "gazelle.jpg")]
    # DINOv2 alone: no co-PCA, so a descriptor does not depend on the pair it is fused in
    args = ["--out", str(out), "--extractor", "dinov2-tiny", "--no-pretrained", "--device", "cpu"]
    assert sf.main([*imgs, *args]) == 0
    _png_size(out)
    assert spy.similarity == [] and spy.plot["similarity"] is None  # no query: no maps
    rgb = spy.plot["pca_rgb"]
    assert [im.shape for im in rgb] == [(427, 640, 3), (462, 640, 3), (427, 640, 3)]
    # images 0 and 2 are the same photo: the same descriptors, hence the same colours, and
    # the jaguar's differ
    np.testing.assert_allclose(rgb[0], rgb[2], atol=1e-6)
    assert np.abs(rgb[0][:400] - rgb[1][:400]).mean() > 0.01
    assert len(spy.figures[0].axes) == 3 * 2  # photo and PCA colours per image, no colour bar


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
    from corr.geometry import Letterbox, content_mask, grid_to_image
    from corr.viz import joint_pca_rgb

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
