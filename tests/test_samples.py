"""corr.samples: the bundled photos ship with the package, with consistent keypoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from corr.samples import SAMPLE_PAIRS, SAMPLES, default_points, sample_keypoints, sample_path


def test_samples_are_small_and_consistent():
    for name in SAMPLES:
        path = sample_path(name)
        assert path.stat().st_size < 300_000
        labels = sample_keypoints(name)
        with Image.open(path) as im:  # the recorded labels lie on the file's pixels
            w, h = im.size
        known = labels.points[np.isfinite(labels.points).all(1)]
        assert len(known) and (known >= 0).all() and (known[:, 0] <= w).all()
        assert (known[:, 1] <= h).all()
    assert all(a in SAMPLES and b in SAMPLES for a, b in SAMPLE_PAIRS)
    assert (sample_path("tiger_a.jpg").parent / "README.md").is_file()  # terms and provenance
    with pytest.raises(ValueError, match="no bundled sample 'cat.jpg'"):
        sample_path("cat.jpg")


def test_default_points_are_labelled_on_both_tigers():
    points, names = default_points()
    a, b = sample_keypoints("tiger_a.jpg"), sample_keypoints("tiger_b.jpg")
    assert len(names) == 15 and len(points) == 15
    for name, xy in zip(names, points, strict=True):
        np.testing.assert_array_equal(a.point(name), xy)
        assert b.point(name) is not None


def test_boxes_only_where_the_data_set_gives_one():
    # ATRW gives no object box: its annotation's box is the whole image, reported as None
    ann = json.loads((sample_path("tiger_b.jpg").parent / "annotations.json").read_text())
    assert ann["images"]["tiger_b.jpg"]["bndbox"] == [0, 0, 1238, 730]
    assert sample_keypoints("tiger_b.jpg").box is None
    assert sample_keypoints("gazelle.jpg").box == pytest.approx((255.0, 123.2, 523.1, 336.3))
