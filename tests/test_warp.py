"""Matcher.warp: the source image warped into the target's frame through the dense matches."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import corr
from corr.outputs import WarpOutput

T = 128  # the fake extractor's input size: square test images of this side are not resized
CELL = 8  # its cell: a 16 x 16 grid


class CellPixels(corr.Extractor):
    """Each cell's feature is its own ``CELL x CELL`` pixels (space-to-depth, centred at 0).

    On random-noise images every cell is distinct, and a shift by whole cells shifts the
    features exactly: nearest-neighbour matching then recovers the shift exactly.
    """

    input_size = T

    def extract(self, pixels: torch.Tensor, category: str | None = None) -> dict:
        return {"px": F.pixel_unshuffle(pixels - 0.5, CELL)}

    def config(self) -> dict:
        return {"class": "CellPixels", "cell": CELL}


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _shifted(src: np.ndarray, d: int, fill: np.ndarray) -> np.ndarray:
    """``src`` moved ``d`` pixels right and down; the uncovered band shows ``fill``."""
    tgt = fill.copy()
    tgt[d:, d:] = src[:-d, :-d]
    return tgt


def test_warp_of_a_shifted_copy_reproduces_it_exactly():
    k = 2  # cells
    d = k * CELL
    src = _noise(T, T, 0)
    tgt = _shifted(src, d, _noise(T, T, 1))  # the band: other noise, matching nothing
    m = corr.Matcher([CellPixels()], method="nn", device="cpu")
    out = m.warp(src, tgt, min_confidence=0.5)
    assert isinstance(out, WarpOutput) and list(out) == ["warped", "valid", "coords", "confidence"]
    assert out.warped.shape == (T, T, 3) and out.warped.dtype == np.uint8
    assert out.valid.shape == (T, T) and out.valid.dtype == bool
    assert out.coords.shape == (T, T, 2) and out.confidence.shape == (T, T)
    # inside the shifted copy, one cell away from its edges (there the coordinate field is
    # interpolated between a band cell's arbitrary match and a true one, and at the image's
    # far edges it is held at the last cell centre's value): target pixel (x, y) samples
    # source pixel (x - d, y - d) exactly, so the warp is the target, pixel for pixel
    inner = (slice(d + CELL, T - CELL),) * 2
    yy, xx = np.mgrid[:T, :T]
    np.testing.assert_allclose(out.coords[inner][..., 0], (xx - d)[inner], atol=1e-3)
    np.testing.assert_allclose(out.coords[inner][..., 1], (yy - d)[inner], atol=1e-3)
    assert out.valid[inner].all()
    diff = np.abs(out.warped.astype(int) - tgt.astype(int))
    assert diff[inner].max() <= 1
    # the band matches nothing (cosine similarity ~0.1 < 0.5): invalid, and black
    band = np.zeros((T, T), bool)
    band[: d - CELL // 2] = True
    band[:, : d - CELL // 2] = True
    assert not out.valid[band].any()
    assert out.valid.mean() > 0.7  # (T - d - CELL / 2)^2 / T^2 = 0.71 of the image at most
    assert (out.warped[~out.valid] == 0).all()
    # without a confidence threshold every match lands inside the source: all valid
    assert m.warp(src, tgt).valid.all()


def test_matches_outside_the_source_image_are_invalid():
    # a 128 x 96 source is letterboxed with 16 black rows above and below; the target is that
    # letterbox as a picture. Without exclude_padding its black rows match the source's
    # padding, above or below the source image: invalid
    src = _noise(96, T, 2)
    tgt = np.zeros((T, T, 3), np.uint8)
    tgt[16:112] = src
    m = corr.Matcher([CellPixels()], method="nn", exclude_padding=False, device="cpu")
    out = m.warp(src, tgt)
    assert out.warped.shape == (T, T, 3)
    x, y = out.coords[..., 0], out.coords[..., 1]
    outside = (x < 0) | (x > T - 1) | (y < 0) | (y > 95)
    assert outside[:12].all()  # the black rows up to the centre of the second cell row
    assert not out.valid[outside].any() and (out.warped[outside] == 0).all()
    # the content is the source moved 16 px down (an offset of two whole cells)
    inner = (slice(16 + CELL, 112 - CELL), slice(CELL, T - CELL))
    assert out.valid[inner].all()
    assert np.abs(out.warped[inner].astype(int) - tgt[inner].astype(int)).max() <= 1


def test_real_mobilenet_warp_reproduces_a_shifted_photo(minireal, real_mobilenet):
    spec, size, cell = real_mobilenet, 224, 8  # MobileNetV2 at 224: its finest map, 28 x 28
    path = minireal / "SPair-71k" / "JPEGImages" / "atrw" / "atrw_000061.jpg"
    with Image.open(path) as im:  # the central square, at the input size: no resize inside
        s = min(im.size)
        x0, y0 = (im.width - s) // 2, (im.height - s) // 2
        box = (x0, y0, x0 + s, y0 + s)
        src = np.asarray(
            im.convert("RGB").crop(box).resize((size, size), Image.Resampling.BILINEAR)
        )
    d = 2 * cell  # 16 px: also a whole number of the stride-16 map's cells
    tgt = _shifted(src, d, np.full_like(src, 127))
    m = corr.Matcher([spec], device="cpu", extractor_options={spec: {"input_size": size}})
    out = m.warp(src, tgt)  # the default window soft-argmax
    assert out.warped.shape == (size, size, 3) and out.valid.all()
    inner = (slice(d + cell, size - cell),) * 2
    yy, xx = np.mgrid[:size, :size]
    err_px = np.hypot(out.coords[..., 0] - (xx - d), out.coords[..., 1] - (yy - d))[inner]
    grey = np.abs(out.warped.astype(int) - tgt.astype(int)).max(-1)[inner]
    # Measured (torch 2.13, CPU): 93% of the inner pixels sample within 0.5 px of the true
    # source pixel (median error 0.005 px; the rest are tiger stripes and grass that repeat),
    # and 95% of them are within 8 grey levels of the target. Sampling one pixel off gives
    # 43% within 8 levels, the unwarped source 6%: 85% on both keeps a margin of about 8
    # points over the measurement and stays far above a wrong convention.
    assert (err_px <= 0.5).mean() > 0.85
    assert (grey <= 8).mean() > 0.85


def _tiny_matcher(**kw) -> corr.Matcher:
    return corr.Matcher([CellPixels()], device="cpu", **kw)


def test_min_confidence_tensors_and_errors(tmp_path):
    src = _noise(T, T, 3)
    tgt = _shifted(src, 2 * CELL, _noise(T, T, 4))
    m = _tiny_matcher(method="nn")
    plain = m.warp(src, tgt)
    strict = m.warp(src, tgt, min_confidence=0.5)
    assert np.array_equal(strict.valid, plain.valid & (plain.confidence >= 0.5))
    assert strict.valid.sum() < plain.valid.sum()
    assert np.array_equal(strict.warped[strict.valid], plain.warped[strict.valid])
    none = m.warp(src, tgt, min_confidence=1.5)
    assert not none.valid.any() and not none.warped.any()
    pt = m.warp(src, tgt, return_tensors="pt")
    assert isinstance(pt.warped, torch.Tensor) and pt.warped.dtype == torch.uint8
    assert pt.valid.dtype == torch.bool and pt.coords.dtype == torch.float32
    assert torch.equal(pt.warped, torch.from_numpy(plain.warped))
    assert tuple(pt.confidence.shape) == (T, T)
    with pytest.raises(ValueError, match="return_tensors"):
        m.warp(src, tgt, return_tensors="tf")
    with pytest.raises(ValueError, match="method 'nn' or 'softargmax'"):
        _tiny_matcher(method="pixel").warp(src, tgt)
    with pytest.raises(FileNotFoundError, match="tgt: no such image file"):
        m.warp(src, tmp_path / "missing.png")
    # a path and the same pixels as an array give the same warp; non-square target
    Image.fromarray(src).save(tmp_path / "src.png")
    wide = _noise(40, 90, 5)
    a, b = m.warp(tmp_path / "src.png", wide), m.warp(src, wide)
    assert a.warped.shape == (40, 90, 3) and np.array_equal(a.warped, b.warped)


def test_missing_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    img = _noise(T, T, 6)
    with pytest.raises(ImportError, match=r'pip install "semcorr\[warp\]"'):
        _tiny_matcher(method="nn").warp(img, img)
