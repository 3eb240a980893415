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


def test_labels_of_close_points_do_not_cover_each_other():
    from corr.viz import label_offsets

    def box(p, off, text, char_px=6.5, h=12.0):
        (x, y), (dx, dy), w = p, off, len(text) * char_px + 4
        x0 = x - w / 2 if dx == 0 else (x + dx if dx > 0 else x + dx - w)
        y0 = y - h / 2 if dy == 0 else (y + dy if dy > 0 else y + dy - h)
        return x0, y0, x0 + w, y0 + h

    def overlap(a, b):
        return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])

    # the tigers' keypoints 2 and 3 (nose, right shoulder) 29 px apart read "1 2" before
    pts = np.array([[246.0, 806.0], [217.0, 806.0], [230.0, 815.0], [500.0, 100.0]])
    texts = ["2", "3", "10", "4"]
    offs = label_offsets(pts, texts)
    boxes = [box(p, o, t) for p, o, t in zip(pts, offs, texts, strict=True)]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not overlap(boxes[i], boxes[j]), (i, j, offs)
    assert offs[3] == (5, -5)  # a lone point keeps the first slot
    # NaN rows are skipped
    assert len(label_offsets(np.array([[np.nan, np.nan], [1.0, 1.0]]), ["a", "b"])) == 2


def test_warp_picture_greys_out_what_has_no_match():
    from corr.viz import warp_picture

    tgt = np.zeros((2, 1, 3), np.uint8)
    pic = warp_picture(np.full((2, 1, 3), 7, np.uint8), np.array([[True], [False]]), tgt)
    assert pic[0].tolist() == [[7, 7, 7]] and pic[1].tolist() == [[100, 100, 100]]
