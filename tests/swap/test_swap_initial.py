"""corr.swap with refine=False: the initial swap (dense correspondence restricted to the
instances), its masks (given, checked, or found by co-segmentation) and its frame and size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import corr
from corr.outputs import SwapOutput
from corr.swap.masks import check_mask

T = 128  # the fake extractor's input size: no resize for images of side <= T
CELL = 8  # a 16 x 16 grid


class GreenCells(corr.Extractor):
    """Each cell's feature is its own ``CELL x CELL`` green pixels (space-to-depth, centred).

    Translation-equivariant: a shift by whole cells shifts the features exactly. Only the
    green channel is seen, so two instances with the same green and other red/blue channels
    match exactly while the swap still visibly moves the source's red/blue into the target.
    """

    input_size = T

    def extract(self, pixels: torch.Tensor, category: str | None = None) -> dict:
        return {"px": F.pixel_unshuffle(pixels[:, 1:2] - 0.5, CELL)}

    def config(self) -> dict:
        return {"class": "GreenCells", "cell": CELL}


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


S = 48  # the instance: a 48 x 48 square (6 x 6 cells)
SRC_XY = (24, 24)  # its top-left corner in the source
TGT_XY = (40, 24)  # and in the 128 x 96 target (letterboxed 16 px down: whole cells)


def _pair(background: str = "noise"):
    """A source and a target with the same green instance (other red/blue), shifted."""
    green = _noise(S, S, 2)[..., 1]
    inst_s, inst_t = _noise(S, S, 3), _noise(S, S, 4)
    inst_s[..., 1] = inst_t[..., 1] = green
    if background == "noise":
        src, tgt = _noise(T, T, 0), _noise(96, T, 1)
    else:  # flat: darker than mid-grey in green, so both backgrounds point the same way
        src = np.full((T, T, 3), (200, 40, 60), np.uint8)
        tgt = np.full((96, T, 3), (30, 90, 200), np.uint8)
    (xs, ys), (xt, yt) = SRC_XY, TGT_XY
    src[ys : ys + S, xs : xs + S] = inst_s
    tgt[yt : yt + S, xt : xt + S] = inst_t
    box_s = (xs, ys, xs + S, ys + S)
    box_t = (xt, yt, xt + S, yt + S)
    return src, tgt, box_s, box_t


@pytest.fixture(scope="module")
def matcher():
    return corr.Matcher([GreenCells()], method="nn", device="cpu")


def test_initial_swap_reproduces_the_shifted_instance_exactly(matcher):
    src, tgt, box_s, box_t = _pair()
    out = corr.swap(src, tgt, mask_src=box_s, mask_tgt=box_t, refine=False, matcher=matcher)
    assert isinstance(out, SwapOutput) and out.refined is None and out.masks_from == "given"
    # the target's frame and size
    assert out.initial.shape == tgt.shape and out.initial.dtype == np.uint8
    assert out.mask.shape == out.mask_tgt.shape == out.confidence.shape == tgt.shape[:2]
    assert out.coords.shape == (*tgt.shape[:2], 2) and out.mask_src.shape == src.shape[:2]
    # inside the target instance, one cell away from its edges (there the coordinate field is
    # interpolated towards a background cell's match): target pixel (x, y) samples source
    # pixel (x, y) - shift, so the swap shows the source instance, shifted, pixel for pixel
    (xs, ys), (xt, yt) = SRC_XY, TGT_XY
    inner_t = (slice(yt + CELL, yt + S - CELL), slice(xt + CELL, xt + S - CELL))
    inner_s = (slice(ys + CELL, ys + S - CELL), slice(xs + CELL, xs + S - CELL))
    np.testing.assert_array_equal(out.initial[inner_t], src[inner_s])
    assert (out.initial[inner_t] != tgt[inner_t]).any()  # red/blue came from the source
    assert out.mask[inner_t].all()
    # nothing outside the target instance changes
    np.testing.assert_array_equal(out.initial[~out.mask_tgt], tgt[~out.mask_tgt])
    assert not out.mask[~out.mask_tgt].any()
    # every replaced pixel samples the source instance
    x, y = out.coords[out.mask][:, 0], out.coords[out.mask][:, 1]
    assert out.mask_src[np.rint(y).astype(int), np.rint(x).astype(int)].all()
    assert out.config["masks_from"] == "given" and out.config["refine"] is False


def test_masks_are_checked():
    w, h = 40, 30
    ok = np.zeros((h, w), bool)
    ok[5:10, 5:10] = True
    np.testing.assert_array_equal(check_mask(ok, w, h), ok)
    np.testing.assert_array_equal(check_mask(ok.astype(np.uint8) * 255, w, h), ok)
    np.testing.assert_array_equal(check_mask(Image.fromarray(ok), w, h), ok)
    np.testing.assert_array_equal(check_mask((5, 5, 10, 10), w, h), ok)
    with pytest.raises(ValueError, match=r"mask_src is 30x40 \(W x H\) but its image is 40x30"):
        check_mask(ok.T, w, h, "mask_src")
    with pytest.raises(ValueError, match="mask_tgt: the box .* inside the 40x30 image"):
        check_mask((30, 5, 45, 10), w, h, "mask_tgt")  # beyond the right edge
    with pytest.raises(ValueError, match="inside the 40x30 image"):
        check_mask((-3, 5, 10, 10), w, h)
    with pytest.raises(ValueError, match="selects no pixel"):
        check_mask(np.zeros((h, w)), w, h)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        check_mask(np.full((h, w), np.nan), w, h)


def test_swap_refuses_bad_masks_by_name(matcher):
    src, tgt, box_s, box_t = _pair()
    with pytest.raises(ValueError, match="mask_tgt is 128x128"):
        corr.swap(src, tgt, mask_src=box_s, mask_tgt=np.ones((T, T), bool), refine=False,
                  matcher=matcher)  # fmt: skip
    with pytest.raises(ValueError, match="mask_src: the box"):
        corr.swap(src, tgt, mask_src=(100, 100, 140, 120), mask_tgt=box_t, refine=False,
                  matcher=matcher)  # fmt: skip
    # an instance smaller than a feature cell: the feature resolution's limit, said so
    tiny = (30, 30, 34, 34)
    with pytest.raises(ValueError, match="mask_src: .* too small for the feature resolution"):
        corr.swap(src, tgt, mask_src=tiny, mask_tgt=box_t, refine=False, matcher=matcher)
    with pytest.raises(ValueError, match="category"):
        corr.swap(src, tgt, mask_src=box_s, mask_tgt=box_t, matcher=matcher)  # refine=True


def test_masks_from_cosegmentation_find_the_shared_instance(matcher):
    pytest.importorskip("sklearn")
    src, tgt, box_s, box_t = _pair(background="flat")
    out = corr.swap(src, tgt, refine=False, matcher=matcher, n_parts=4)
    assert out.masks_from == "cosegmentation" and out.config["n_parts"] == 4
    want_s = check_mask(box_s, T, T)
    want_t = check_mask(box_t, T, 96)
    np.testing.assert_array_equal(out.mask_src, want_s)
    np.testing.assert_array_equal(out.mask_tgt, want_t)
    # a given mask is kept; only the missing one is found
    half = want_t.copy()
    half[:, : TGT_XY[0] + S // 2] = False
    out2 = corr.swap(src, tgt, mask_tgt=half, refine=False, matcher=matcher)
    np.testing.assert_array_equal(out2.mask_tgt, half)
    np.testing.assert_array_equal(out2.mask_src, want_s)
    assert not out2.mask[~half].any()


def test_corr_swap_is_callable_as_the_package_too(matcher):
    import importlib

    package = importlib.import_module("corr.swap")
    src, tgt, box_s, box_t = _pair()
    a = package(src, tgt, mask_src=box_s, mask_tgt=box_t, refine=False, matcher=matcher)
    b = corr.swap(src, tgt, mask_src=box_s, mask_tgt=box_t, refine=False, matcher=matcher)
    np.testing.assert_array_equal(a.initial, b.initial)


def test_points_outside_the_mask_snap_to_its_nearest_pixel():
    from corr.dense import snap_into_mask

    mask = np.zeros((20, 30), bool)
    mask[5:10, 10:20] = True
    pts = np.array([[12.0, 7.0], [2.0, 7.0], [15.0, 18.6], [40.0, -3.0]])
    out = snap_into_mask(pts, mask)
    np.testing.assert_array_equal(out, [[12, 7], [10, 7], [15, 9], [19, 5]])
    assert out.dtype == np.float64 and pts[1, 0] == 2.0  # a copy


def test_one_blob_keeps_the_largest_region_with_its_holes_filled():
    from corr.swap.masks import one_blob

    mask = np.zeros((30, 30), bool)
    mask[5:20, 5:20] = True
    mask[10:12, 10:12] = False  # a hole
    mask[25:28, 25:28] = True  # a speck
    mask[0:3, 5:20] = True  # another, on the edge
    want = np.zeros_like(mask)
    want[5:20, 5:20] = True
    np.testing.assert_array_equal(one_blob(mask), want)


def test_an_error_that_is_not_the_masks_is_not_blamed_on_mask_src():
    src, tgt, box_s, box_t = _pair()
    pixel = corr.Matcher([GreenCells()], method="pixel", device="cpu")
    with pytest.raises(ValueError) as info:
        corr.swap(src, tgt, mask_src=box_s, mask_tgt=box_t, refine=False, matcher=pixel)
    assert "method 'nn' or 'softargmax'" in str(info.value)
    assert not str(info.value).startswith("mask_src")
