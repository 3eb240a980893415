"""Keypoint -> cell and cell -> point, against GeoAware-SC / sd-dino (golden/keypoint_cells.json,
golden/cell_centres.json)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from corr.alignment import mirror_in_letterbox
from corr.geometry import Letterbox, grid_cells, grid_to_letterbox


def _keypoints(case):
    xs = np.arange(case["width"], dtype=np.float64)
    ys = np.arange(case["height"], dtype=np.float64)
    n = max(len(xs), len(ys))
    return np.stack([np.resize(xs, n), np.resize(ys, n)], 1)


def test_float32_arithmetic_reproduces_the_reference_cells(golden):
    data = golden("keypoint_cells.json")
    for case in data["cases"]:
        lb = Letterbox(case["width"], case["height"], data["frame"])
        boxed = lb.to_letterbox(_keypoints(case), arithmetic="float32")
        assert boxed[:, 0].tolist() == case["letterbox_x"]
        assert boxed[:, 1].tolist() == case["letterbox_y"]
        cells = grid_cells(boxed, data["frame"], data["grid"], arithmetic="float32")
        assert cells[:, 0].tolist() == case["cell_x"], case["width"]
        assert cells[:, 1].tolist() == case["cell_y"], case["height"]
        mirrored = mirror_in_letterbox(boxed, data["frame"], arithmetic="float32")
        mcells = grid_cells(mirrored, data["frame"], data["grid"], arithmetic="float32")
        # x' = T exactly (x = 0 with no left pad): the reference's cell index 60 wraps into the
        # next grid row, ours is clipped to the last cell; compare everywhere else
        inside = mirrored[:, 0] < data["frame"]
        assert (~inside).sum() <= 2
        assert mcells[inside, 0].tolist() == np.asarray(case["mirrored_cell_x"])[inside].tolist()


def test_exact_arithmetic_puts_boundary_points_in_the_cell_they_start():
    # exact rational floor((x * T / max(W, H) + off) * g / T) for many image sizes
    frame, grid = 840, 60
    for w, h in [
        (300, 225),
        (500, 375),
        (375, 500),
        (500, 333),
        (640, 480),
        (353, 500),
        (127, 999),
    ]:
        lb = Letterbox(w, h, frame)
        pts = np.stack([np.arange(w + 1) % (w + 1), np.arange(w + 1) % (h + 1)], 1).astype(float)
        cells = grid_cells(lb.to_letterbox(pts), frame, grid)
        long = max(w, h)
        for (x, y), (cx, cy) in zip(pts.astype(int), cells, strict=True):
            ex = (Fraction(int(x) * frame, long) + lb.offset[0]) * grid / frame
            ey = (Fraction(int(y) * frame, long) + lb.offset[1]) * grid / frame
            assert (cx, cy) == (min(int(ex), grid - 1), min(int(ey), grid - 1)), (w, h, x, y)
    # the case that motivated it: x = 85 of a 300 px image lands exactly at 238 = 17 * 14
    assert grid_cells(Letterbox(300, 225, 840).to_letterbox([[85, 0]]), 840, 60)[0, 0] == 17


def test_float32_differs_from_exact_somewhere(golden):
    # the knob matters: some keypoints (e.g. x = 45 of a 100 px image) change cell
    data = golden("keypoint_cells.json")
    changed = 0
    for case in data["cases"]:
        lb = Letterbox(case["width"], case["height"], data["frame"])
        exact = grid_cells(lb.to_letterbox(_keypoints(case)), data["frame"], data["grid"])
        changed += int((exact[:, 0] != np.asarray(case["cell_x"])).sum())
    assert changed > 0


def test_cell_centres_of_both_references(golden):
    data = golden("cell_centres.json")
    cells = np.stack([np.arange(60), np.zeros(60)], 1)
    assert grid_to_letterbox(cells, 840, 60)[:, 0].tolist() == data["geoaware"]
    assert grid_to_letterbox(cells, 840, 60, centre_shift=-0.5)[:, 0].tolist() == data["sd-dino"]
