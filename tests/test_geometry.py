import numpy as np
import pytest

from corr.geometry import (
    Letterbox,
    content_mask,
    grid_cells,
    grid_to_letterbox,
    mirror_points,
)


@pytest.mark.parametrize(
    "w,h,t",
    [(500, 333, 840), (333, 500, 840), (641, 479, 960), (479, 641, 960), (7, 3, 64), (1, 999, 56)],
)
def test_letterbox_round_trip_odd_sizes_both_orientations(w, h, t):
    lb = Letterbox(w, h, t)
    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], [w - 1, h - 1], size=(50, 2))
    assert np.allclose(lb.from_letterbox(lb.to_letterbox(pts)), pts, atol=1e-9)
    nw, nh = lb.new_size
    assert max(nw, nh) == t
    assert (nw, nh) == ((t, round(t * h / w)) if w >= h else (round(t * w / h), t))
    ox, oy = lb.offset
    assert (ox, oy) == ((t - nw) // 2, (t - nh) // 2)


def test_letterbox_maps_corners_onto_the_content_box():
    lb = Letterbox(500, 250, 100)  # s = 0.2, new 100 x 50, offset y = 25
    assert lb.scale == pytest.approx(0.2)
    assert lb.offset == (0, 25)
    assert np.allclose(lb.to_letterbox([[0, 0], [500, 250]]), [[0, 25], [100, 75]])
    assert lb.content_box == (0, 25, 100, 75)


def test_letterbox_image_places_content_and_zero_padding():
    img = np.full((30, 60, 3), 200, np.uint8)
    out = Letterbox(60, 30, 40).apply(img)
    assert out.shape == (40, 40, 3)
    assert (out[:10] == 0).all() and (out[30:] == 0).all()
    assert (out[12:28] == 200).all()


def test_grid_cells_and_centres_follow_the_reference():
    # 60 x 60 grid on 840: patch p covers [14p, 14p + 14), centre 14p + 7
    pts = np.array([[0.0, 13.99], [14.0, 839.9], [420.0, 421.0]])
    assert grid_cells(pts, 840, 60).tolist() == [[0, 0], [1, 59], [30, 30]]
    assert np.allclose(grid_to_letterbox([[0, 0], [59, 30]], 840, 60), [[7, 7], [833, 427]])
    assert np.allclose(grid_to_letterbox([[0.5, 0]], 840, 60), [[14, 7]])  # fractional cells


def test_content_mask_excludes_padding_rows():
    m = content_mask(Letterbox(100, 50, 40), 4)  # content y in [10, 30); cells of 10 px
    assert m[:, 0].tolist() == [False, True, True, False]
    assert m.all(axis=0).sum() == 0 and m.any(axis=0).all()
    # a cell that only partly overlaps the content counts (its pixels can be matched)
    m = content_mask(Letterbox(100, 46, 40), 4)  # new height 18 -> content y in [11, 29)
    assert m[:, 0].tolist() == [False, True, True, False]
    m = content_mask(Letterbox(100, 56, 40), 4)  # new height 22 -> content y in [9, 31)
    assert m[:, 0].tolist() == [True, True, True, True]


def test_mirror_points_is_an_involution_on_pixel_indices():
    pts = np.array([[0.0, 1.0], [9.0, 2.0], [3.5, 0.0]])
    m = mirror_points(pts, 10)
    assert m[:, 0].tolist() == [9.0, 0.0, 5.5]
    assert np.allclose(mirror_points(m, 10), pts)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="positive"):
        Letterbox(0, 10, 10)
    with pytest.raises(ValueError, match="made for"):
        Letterbox(10, 10, 10).apply(np.zeros((5, 10, 3), np.uint8))


def test_clip_to_image_keeps_points_on_pixels_and_copies():
    from corr.geometry import clip_to_image

    pts = np.array([[-3.0, 5.0], [12.0, 7.5], [4.0, 99.0]])
    out = clip_to_image(pts, 10, 8)
    assert out.tolist() == [[0.0, 5.0], [9.0, 7.0], [4.0, 7.0]]
    assert pts[0, 0] == -3.0  # the input is untouched
