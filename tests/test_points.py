"""corr.points: points typed by a user and points files."""

from __future__ import annotations

import numpy as np
import pytest

from corr.points import PointsError, parse_points, points_outside, read_points_file


def test_points_text():
    np.testing.assert_allclose(parse_points("1,2; 3.5,4;"), [[1, 2], [3.5, 4]])
    for bad, why in (
        ("1,2;abc", "point 2"),
        ("1,2,3", "point 1"),
        (";", "no points"),
        ("nan,4", "not finite"),
    ):
        with pytest.raises(PointsError, match=why):
            parse_points(bad, "--points")


def test_points_files(tmp_path):
    csv = tmp_path / "pts.csv"
    csv.write_text("x,y\n# a comment\n10, 20\n30.5,40\n")
    pts, names = read_points_file(csv)
    np.testing.assert_allclose(pts, [[10, 20], [30.5, 40]])
    assert names is None
    txt = tmp_path / "pts.txt"
    txt.write_text("1 2\n3 4\n")
    np.testing.assert_allclose(read_points_file(txt)[0], [[1, 2], [3, 4]])
    js = tmp_path / "pts.json"
    js.write_text("[[1, 2], [3, 4.5]]")
    np.testing.assert_allclose(read_points_file(js)[0], [[1, 2], [3, 4.5]])
    js.write_text('{"points": [[1, 2]], "names": ["nose"]}')
    assert read_points_file(js)[1] == ["nose"]
    js.write_text('{"points": [[1, 2]], "names": ["nose", "tail"]}')
    with pytest.raises(PointsError, match="one name per point"):
        read_points_file(js)
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\nfoo,bar\n")
    with pytest.raises(PointsError, match=r"--points-file .*bad.csv: line 2"):
        read_points_file(bad, f"--points-file {bad}")
    with pytest.raises(PointsError, match="no such file"):
        read_points_file(tmp_path / "missing.json")


def test_points_outside_an_image():
    assert points_outside(np.array([[0, 0], [9, 4]]), 10, 5) is None
    assert points_outside(np.array([[0, 0], [10, 4]]), 10, 5) == 1
    assert points_outside(np.array([[-0.1, 0]]), 10, 5) == 0
