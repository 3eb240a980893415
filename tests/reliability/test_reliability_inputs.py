"""Issue 14.1, 14.2, 14.5, 14.6 and the image cases of 7b, end to end through ``corr.Matcher``
and the keypoint-transfer demo: 16-bit images are scaled, non-finite pixels refused, oversized
or too thin images refused by name before decoding, EXIF orientation applied only on request
(and then every coordinate is in the frame a viewer sees)."""

from __future__ import annotations

import importlib.util
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import corr.io
from corr.cache import image_key
from corr.io import load_image
from corr.matcher import Matcher

# every test here runs the real MobileNetV2 stand-in (skipped, with the reason, without it)
pytestmark = pytest.mark.usefixtures("real_mobilenet")
MOBILENET = "corr.contrib.mobilenet:mobilenetv2"
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher([MOBILENET], device="cpu")


def _photo(h: int = 40, w: int = 60) -> np.ndarray:
    return RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)


def _png_claiming(path, width: int, height: int) -> None:
    """A PNG whose header says ``width x height`` but whose pixel data is cut off: refusing it
    by its header is the only way to not fail on the data (nothing may be decoded)."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


def test_16bit_png_gives_the_features_of_its_8bit_scaling(matcher, tmp_path):
    gray = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(gray).save(path)
    want = np.repeat(np.round(gray / 257.0).astype(np.uint8)[..., None], 3, axis=2)
    f = matcher.features(path)
    assert f.key == image_key(want) and (f.width, f.height) == (64, 48)  # same pixels exactly
    assert matcher.features(gray.astype(np.uint16)).key == f.key  # a uint16 array: the same


def test_non_finite_pixels_are_refused_by_name(matcher):
    bad = _photo() / 255.0
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="src: 1 pixel value\\(s\\) are NaN or infinite"):
        matcher.match(bad, _photo(), [[5.0, 5.0]])


@pytest.mark.parametrize("side", [12000, 20000])  # 144 MP; 400 MP (PIL's own bomb error)
def test_oversized_image_is_refused_by_its_header(matcher, tmp_path, side):
    big = tmp_path / "big.png"
    _png_claiming(big, side, side)
    msg = f"src: cannot read image file {big}: .*{side * side // 10**6} megapixels, above the limit of 100 megapixels"
    with pytest.raises(ValueError, match=msg):
        matcher.match(big, _photo(), [[5.0, 5.0]])


def test_the_limit_is_a_documented_constant(monkeypatch, tmp_path):
    assert corr.io.MAX_IMAGE_PIXELS == 100_000_000 and corr.io.MAX_ASPECT_RATIO == 100
    path = tmp_path / "a.jpg"
    Image.fromarray(_photo(100, 200)).save(path)
    monkeypatch.setattr(corr.io, "MAX_IMAGE_PIXELS", 19_999)
    with pytest.raises(
        ValueError, match="200x100 = 0.02 megapixels, above the limit of 0.019999 megapixels"
    ):
        load_image(path)
    monkeypatch.setattr(corr.io, "MAX_IMAGE_PIXELS", 20_000)
    assert load_image(path).shape == (100, 200, 3)


def test_too_thin_images_are_refused_and_the_limit_itself_works(matcher, tmp_path):
    with pytest.raises(ValueError, match="tgt: 50000x1 has an aspect ratio above 100:1"):
        matcher.match(_photo(), np.zeros((1, 50000, 3), np.uint8), [[5.0, 5.0]])
    thin = tmp_path / "thin.png"
    Image.fromarray(np.zeros((1, 50000, 3), np.uint8)).save(thin)
    with pytest.raises(ValueError, match=f"cannot read image file {thin}: 50000x1 has an aspect"):
        load_image(thin)
    res = matcher.match(_photo(), _photo(4, 400), [[5.0, 5.0]])  # 100:1 is accepted
    assert np.isfinite(res["keypoints1"]).all() and res["keypoints1"][0, 1] <= 3


def test_exif_orientation_is_applied_only_on_request(tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[10, 50] = 255  # a marker at (x=50, y=10) of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif)
    assert np.array_equal(load_image(path), stored)  # default: as stored
    shown = load_image(path, exif_transpose=True)
    assert shown.shape == (60, 40, 3)
    ys, xs = np.nonzero(shown[..., 0])
    assert (xs.tolist(), ys.tolist()) == ([40 - 1 - 10], [50])  # where a viewer sees it


def test_exif_transpose_matcher_works_in_the_frame_the_user_sees(tmp_path):
    stored = _photo(40, 60)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif)
    cache = tmp_path / "cache"
    plain = Matcher([MOBILENET], device="cpu", cache_dir=cache)
    shown = Matcher([MOBILENET], device="cpu", cache_dir=cache, exif_transpose=True)
    assert "exif_transpose" not in plain.config() and shown.config()["exif_transpose"] is True
    # the same file, the same cache and path index: each matcher gets its own frame
    assert (plain.features(path).width, plain.features(path).height) == (60, 40)
    assert (shown.features(path).width, shown.features(path).height) == (40, 60)
    assert (plain.features(path).width, plain.features(path).height) == (60, 40)
    res = shown.match(path, path, [[35.0, 55.0]])  # valid only in the displayed 40x60 frame
    assert (res["keypoints1"] <= [39, 59]).all()
    with pytest.raises(ValueError, match="outside the source image \\(60x40\\)"):
        plain.match(path, path, [[35.0, 55.0]])


def _demo():
    spec = importlib.util.spec_from_file_location(
        "_demo_kt_reliability", corr.io.Path(__file__).parents[2] / "demos/keypoint_transfer.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_refuses_oversized_images_and_applies_exif_on_request(tmp_path, capsys):
    demo = _demo()
    src, tgt, big = tmp_path / "src.png", tmp_path / "tgt.png", tmp_path / "big.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photo(40, 60)).save(src, exif=exif)
    Image.fromarray(_photo(50, 50)).save(tgt)
    _png_claiming(big, 12000, 12000)
    fig = tmp_path / "fig.png"
    base = ["--extractor", MOBILENET, "--out", str(fig), "--points", "35,55"]
    assert demo.main([str(big), str(tgt), *base]) == 2
    err = capsys.readouterr().err
    assert f"SRC {big}: cannot read image file {big}: 12000x12000 = 144 megapixels" in err
    assert "Traceback" not in err and not fig.exists()
    assert demo.main([str(src), str(tgt), *base]) == 2  # (35, 55) is outside the stored 60x40
    assert "lies outside the source image" in capsys.readouterr().err
    assert demo.main([str(src), str(tgt), *base, "--exif-transpose"]) == 0
    report = json.loads(fig.with_suffix(".json").read_text())
    assert report["exif_transpose"] is True
    assert (report["src"]["width"], report["src"]["height"]) == (40, 60)
