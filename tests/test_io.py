"""Image loading: 16-bit images are scaled, not clipped; non-finite pixels are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from corr.io import load_image


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    gray = (np.arange(64 * 32).reshape(32, 64) * 32).astype(np.uint16)  # 0 .. 65504
    path = tmp_path / "g16.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode == "I;16"
    img = load_image(path)
    want = np.round(gray / 257.0).astype(np.uint8)
    assert img.dtype == np.uint8 and img.shape == (32, 64, 3)
    assert np.array_equal(img[..., 0], want) and np.array_equal(img[..., 2], want)
    # PIL's own convert("RGB") clips: nearly everything would be white
    assert (np.asarray(Image.open(path).convert("RGB")) == 255).mean() > 0.9
    assert np.array_equal(load_image(Image.open(path)), img)


def test_uint16_arrays_and_tensors_are_scaled():
    a = np.array([[[0, 257, 65535]]], dtype=np.uint16)
    assert load_image(a).tolist() == [[[0, 1, 255]]]
    t = torch.from_numpy(a.astype(np.int32)).permute(2, 0, 1)
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        load_image(t)  # int32 is ambiguous: refused, not cast


def test_non_finite_pixels_are_refused_by_name():
    a = np.full((4, 4, 3), 0.5)
    a[1, 2, 0] = np.nan
    a[3, 3, 1] = np.inf
    with pytest.raises(ValueError, match="src: 2 pixel value"):
        load_image(a, name="src")
