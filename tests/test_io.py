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


def test_grayscale_and_rgba_arrays_tensors_and_files_become_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    assert np.array_equal(load_image(gray), rgb)  # (H, W)
    assert np.array_equal(load_image(gray[:, :, None]), rgb)  # (H, W, 1)
    rgba = np.dstack([rgb[:, :, 0], rgb[:, :, 1] // 2, rgb[:, :, 2] // 4, np.zeros_like(gray)])
    assert np.array_equal(load_image(rgba), rgba[:, :, :3])  # alpha dropped, not blended
    assert np.array_equal(load_image(torch.from_numpy(gray)[None]), rgb)  # (1, H, W) tensor
    chw = torch.from_numpy(rgba[:, :, :3]).permute(2, 0, 1)
    assert np.array_equal(load_image(chw[None]), rgba[:, :, :3])  # (1, 3, H, W)
    assert np.array_equal(load_image(Image.fromarray(gray, mode="L")), rgb)  # PIL "L"
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    assert np.array_equal(load_image(tmp_path / "g.png"), rgb)  # grayscale file
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert np.array_equal(load_image(str(tmp_path / "a.png")), rgba[:, :, :3])


def test_float_arrays_are_rounded_to_8_bits():
    a = np.array([[0.0, 1.0, 0.5, 0.2, 0.502]])  # 255 * v = 0, 255, 127.5, 51, 128.01
    assert load_image(a)[..., 0].tolist() == [[0, 255, 128, 51, 128]]
    t = torch.tensor([[[0.2]], [[0.6]], [[1.0]]], dtype=torch.float32)  # (3, 1, 1)
    assert load_image(t).tolist() == [[[51, 153, 255]]]


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((4, 4, 2), np.uint8), ValueError, r"src: an array image must be .*\(4, 4, 2\)"),
        (np.zeros((2, 4, 4, 3), np.uint8), ValueError, "an array image must be"),
        (np.full((4, 4), 1.5), ValueError, r"src: float images must lie in \[0, 1\]"),
        (np.full((4, 4), -0.1), ValueError, r"float images must lie in \[0, 1\]"),
        (np.ones((4, 4), bool), ValueError, "uint8, uint16 or float in \\[0, 1\\], got bool"),
        (np.zeros((4, 4), np.int64), ValueError, "got int64"),
        (np.zeros((0, 5), np.uint8), ValueError, r"src: the image is empty \(5x0\)"),
        (torch.zeros(2, 4, 4), ValueError, r"a tensor image must be \(3, H, W\).*\(2, 4, 4\)"),
        (torch.zeros(2, 3, 4, 4), ValueError, r"a tensor image must be .*\(2, 3, 4, 4\)"),
        ([[0, 1], [1, 0]], TypeError, "src: expected a path, PIL image, numpy array or tensor"),
        (Image.new("F", (4, 4)), ValueError, "src: a 32-bit float image"),
        (Image.fromarray(np.full((4, 4), -5, np.int32)), ValueError, "pixels outside 0..65535"),
    ],
)
def test_bad_array_and_image_inputs_are_named(image, error, match):
    with pytest.raises(error, match=match):
        load_image(image, name="src")


def test_atomic_writes_fsync_unless_told_not_to(tmp_path, monkeypatch):
    import os

    from corr.io import atomic_write_json, atomic_write_text

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert len(synced) == 1
    atomic_write_text(tmp_path / "b.txt", "b", durable=False)
    assert len(synced) == 1  # the caller syncs once before its completion marker
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
    assert (tmp_path / "b.txt").read_text() == "b" and not list(tmp_path.glob(".*.tmp"))


def test_an_animated_image_gives_its_first_frame_and_says_so(tmp_path, caplog):
    import logging

    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200, 90)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with caplog.at_level(logging.WARNING, logger="corr"):
        first = load_image(path, name="src")
        again = load_image(path, name="src")
    assert (first == 10).all() and (again == 10).all()
    assert caplog.text.count(f"src: {path} has 3 frames") == 1  # once per file
    assert "only the first frame is used" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="corr"):
        load_image(Image.open(path), name="tgt")
        load_image(frames[1], name="still")
    assert "tgt: the PIL image has 3 frames" in caplog.text and "still" not in caplog.text
