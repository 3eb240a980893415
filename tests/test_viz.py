"""corr.viz.plot_correspondences: the list of points sits beside the images, never on them."""

from __future__ import annotations

import numpy as np
import pytest

from corr.viz import plot_correspondences


def _figure(**kw):
    rng = np.random.default_rng(0)
    src = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    tgt = rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)
    p0 = np.array([[10.0, 20.0], [100.0, 50.0], [150.0, 110.0]])
    p1 = np.array([[30.0, 40.0], [120.0, 60.0], [np.nan, np.nan]])
    return plot_correspondences(src, tgt, p0, p1, height=240, **kw)


def test_legend_and_caption_stay_off_the_images():
    gt = np.array([[33.0, 44.0], [150.0, 60.0], [10.0, 10.0]])
    fig = _figure(
        confidence=np.array([0.9, 0.5, np.nan]),
        legend=["0 nose", "1 tail", "2 paw"],
        ground_truth=gt,
        threshold=10.0,
        caption=["features: a test", "PCK: 1 of 2"],
        title="a -> b",
    )
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    image = fig.axes[0].get_window_extent(renderer)
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.x0 >= image.x1  # right of the images
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[0] == "0 nose  conf 0.90  err 5 px  ok"  # |(30,40) - (33,44)| = 5 < 10
    assert texts[1] == "1 tail  conf 0.50  err 30 px  off"  # |(120,60) - (150,60)| = 30
    assert texts[2] == "2 paw  conf -  no label"  # no prediction
    captions = [t for t in fig.texts if t.get_text().startswith(("features", "PCK"))]
    assert len(captions) == 2
    for t in captions:
        assert t.get_window_extent(renderer).y1 <= image.y0 + 1  # under the images


def test_ground_truth_rows_must_match_the_points():
    with pytest.raises(ValueError, match="3 points but 2 ground-truth"):
        _figure(ground_truth=np.zeros((2, 2)))
