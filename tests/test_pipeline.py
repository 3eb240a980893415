"""The Matcher / match API on a small deterministic custom extractor."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import corr
from corr.extractors import ModuleExtractor


class CountingConv(nn.Module):
    """A fixed random conv net (stride 4) that counts its calls."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 5, 2, 2), nn.ReLU(), nn.Conv2d(16, 24, 5, 2, 2))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def _ext(size=64):
    return ModuleExtractor(CountingConv(), input_size=size, name="toy")


def _image(w=90, h=60, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 6, w // 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST))


def test_all_input_types_give_the_same_result(tmp_path):
    img = _image()
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    m = corr.Matcher([_ext()], device="cpu")
    pts = np.array([[10.0, 20.0], [80.0, 5.0]])
    ref = m.match(img, img, pts)
    for src in (
        str(path),
        path,
        Image.fromarray(img),
        torch.from_numpy(img.copy()).permute(2, 0, 1),
        img.astype(np.float32) / 255,
    ):
        out = m.match(src, img, pts)
        assert np.allclose(out["keypoints1"], ref["keypoints1"])
    assert set(ref) == {"keypoints0", "keypoints1", "confidence"}
    assert ref["keypoints1"].shape == (2, 2) and ref["confidence"].shape == (2,)


def test_self_match_returns_points_in_original_pixels():
    img = np.random.default_rng(5).integers(
        0, 255, (120, 300, 3), dtype=np.uint8
    )  # every cell distinct
    m = corr.Matcher([_ext(64)], method="nn", device="cpu")
    pts = np.array([[150.0, 60.0], [12.0, 100.0], [290.0, 3.0]])
    out = m.match(img, img, pts)
    assert np.array_equal(out["keypoints0"], pts)
    # a cell is 4 letterbox px = 4 * 300 / 64 original px: the match is the query's own cell centre
    cell = 4 * 300 / 64
    assert np.all(np.abs(out["keypoints1"] - pts) <= cell / 2 + 1e-6)
    assert np.allclose(out["confidence"], 1.0, atol=1e-5)


def test_points_none_and_dense_cover_the_image_content_only():
    img = _image(w=100, h=50)
    m = corr.Matcher([_ext(64)], device="cpu")
    out = m.match(img, img)
    k0 = out["keypoints0"]
    assert len(k0) == 16 * 8  # 16 x 16 grid; content covers 8 rows
    assert (k0[:, 0] >= 0).all() and (k0[:, 0] <= 99).all() and (k0[:, 1] <= 49).all()
    d = m.dense(img, img)
    assert d["flow"].shape == (16, 16, 2) and d["valid"].sum() == 16 * 8
    assert (d["coords1"][..., 1] <= 49).all()  # never into the padding


def test_nan_points_stay_nan_and_bad_points_are_named():
    img = _image()
    m = corr.Matcher([_ext()], device="cpu")
    out = m.match(img, img, np.array([[np.nan, np.nan], [5.0, 5.0]]))
    assert np.isnan(out["keypoints1"][0]).all() and np.isfinite(out["keypoints1"][1]).all()
    with pytest.raises(ValueError, match=r"points\[1\].*outside the source image \(90x60\)"):
        m.match(img, img, [[1, 1], [95, 1]])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        m.match(img, img, [1, 2, 3])
    with pytest.raises(FileNotFoundError, match="src: no such image file"):
        m.match("/nonexistent.jpg", img, [[1, 1]])


def test_features_are_cached_in_memory_and_on_disk(tmp_path):
    ext = _ext()
    img_a, img_b = _image(seed=1), _image(seed=2)
    m = corr.Matcher([ext], cache_dir=tmp_path, device="cpu")
    m.match(img_a, img_b, [[3, 3]])
    m.match(img_a, img_b, [[4, 4]])
    m.match(img_b, img_a, [[4, 4]])
    assert ext.module.calls == 2  # each image extracted once
    files = list(tmp_path.rglob("*.safetensors"))
    assert len(files) == 2
    # a new matcher on the same cache folder extracts nothing
    ext2 = _ext()
    m2 = corr.Matcher([ext2], cache_dir=tmp_path, memory_cache=0, device="cpu")
    r1 = m.match(img_a, img_b, [[30, 30]])
    r2 = m2.match(img_a, img_b, [[30, 30]])
    assert ext2.module.calls == 0
    assert np.array_equal(r1["keypoints1"], r2["keypoints1"])  # fresh and cached features agree


def test_cache_separates_different_weights(tmp_path):
    a, b = _ext(), _ext()
    with torch.no_grad():
        b.module.net[0].weight.mul_(2)
    img = _image()
    corr.Matcher([a], cache_dir=tmp_path, device="cpu").match(img, img, [[1, 1]])
    corr.Matcher([b], cache_dir=tmp_path, device="cpu").match(img, img, [[1, 1]])
    assert b.module.calls == 1
    assert len({p.parent.parent for p in tmp_path.rglob("*.safetensors")}) == 2


def test_zero_weight_extractor_is_not_run():
    a, b = _ext(), _ext(32)
    m = corr.Matcher([a, b], fuse=1.0, device="cpu")
    m.match(_image(), _image(seed=3), [[2, 2]])
    assert a.module.calls == 2 and b.module.calls == 0
    assert m.frame == 64


def test_match_function_reuses_its_matcher():
    ext = _ext()
    img = _image()
    corr.match(img, img, [[1, 1]], extractors=[ext], device="cpu")
    corr.match(img, img, [[2, 2]], extractors=[ext], device="cpu")
    assert ext.module.calls == 1


def test_unknown_extractor_and_bad_spec_errors():
    with pytest.raises(KeyError, match="unknown extractor 'nope'.*registered"):
        corr.Matcher(["nope"])
    with pytest.raises(ValueError, match="package.module:factory"):
        corr.create_extractor(":x")
    with pytest.raises(ImportError, match="cannot import module"):
        corr.create_extractor("no_such_module_xyz:factory")


def test_atomic_writes_have_normal_permissions_and_replace_whole_files(tmp_path):
    import os

    from corr.io import atomic_write_json

    target = tmp_path / "sub" / "r.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text().strip().endswith("}") and '"a": 2' in target.read_text()
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]  # no temp files left


class CategoryEcho(corr.Extractor):
    """Features that depend on the category, like SD with a ``{category}`` prompt."""

    input_size = 32
    uses_category = True

    def __init__(self):
        super().__init__()
        self.calls = []

    def extract(self, pixels, category=None):
        self.calls.append(category)
        torch.manual_seed(len(category or ""))
        return {"f": torch.randn(1, 8, 4, 4) + pixels.mean()}

    def config(self):
        return {"class": "CategoryEcho"}


def test_category_dependent_features_are_cached_per_category():
    ext = CategoryEcho()
    m = corr.Matcher([ext], device="cpu")
    img = _image()
    m.match(img, img, [[1, 1]], category="cat")
    m.match(img, img, [[1, 1]], category="horse")
    m.match(img, img, [[1, 1]], category="cat")
    assert ext.calls == ["cat", "horse"]  # never the cat's features for the horse
    m.match(img, _image(seed=9), [[1, 1]], category=("cat", "zebra"))  # per-image categories
    assert ext.calls[-1] == "zebra"


def test_sd_prompt_with_category_declares_it():
    sd = corr.create_extractor("sd-tiny", pretrained=False, prompt="a photo of a {category}")
    assert sd.uses_category
    assert not corr.create_extractor("sd-tiny", pretrained=False).uses_category


def test_points_on_the_image_border_are_valid():
    # every pixel random, so every cell is distinct and a self-match finds the query's own cell
    img = np.random.default_rng(5).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    m = corr.Matcher([_ext(64)], method="nn", device="cpu")
    out = m.match(img, img, [[90.0, 60.0], [0.0, 0.0]])  # continuous frame [0, W] x [0, H]
    # by hand: 90x60 -> 64 x round(42.67) = 64 x 43 at offset (0, 10); 16 x 16 cells of 4 px.
    # (90, 60) -> (64, 52.67): cell (16 -> clipped to 15, 13), centre (62, 54) -> original
    # ((62 - 0) * 90 / 64, (54 - 10) * 90 / 64) = (87.1875, 61.875), y clipped to H - 1 = 59.
    # (0, 0) -> (0, 10): cell (0, 2), centre (2, 10) -> (2.8125, 0).
    np.testing.assert_allclose(out["keypoints1"], [[87.1875, 59.0], [2.8125, 0.0]], atol=1e-9)
    np.testing.assert_allclose(out["confidence"], [1.0, 1.0], atol=1e-5)
    with pytest.raises(ValueError, match=r"points\[0\]"):
        m.match(img, img, [[90.5, 10.0]])


def test_compiled_extractors_give_the_eager_features():
    from corr.matcher import Matcher

    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    eager = Matcher(["dinov2-tiny"], pretrained=False).features(img).maps[0]["dino"]
    compiled = Matcher(["dinov2-tiny"], pretrained=False, compile=True)
    ext = compiled.extractors[0]
    assert getattr(ext.extract, "_torchdynamo_orig_callable", None) is not None  # dynamo wrapper
    got = compiled.features(img).maps[0]["dino"]
    torch.testing.assert_close(got, eager, rtol=2e-3, atol=2e-3)  # fp16-rounded either way


def test_bad_window_is_refused_when_the_matcher_is_built():
    from corr.matcher import Matcher

    with pytest.raises(ValueError, match="window must be >= 0"):
        Matcher(["dinov2-tiny"], pretrained=False, window=-1)
    with pytest.raises(ValueError, match="temperature > 0"):
        Matcher(["dinov2-tiny"], pretrained=False, temperature=0)


def test_matcher_dtype_reaches_every_network_and_keys_the_cache(tmp_path):
    from corr.matcher import Matcher

    img = np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    kw = dict(
        pretrained=False,
        device="cpu",
        cache_dir=tmp_path,
        extractor_options={"sd-tiny": {"input_size": 64}, "dinov2-tiny": {"input_size": 56}},
    )
    full = Matcher("tiny", **kw)
    half = Matcher("tiny", dtype="bf16", **kw)
    assert [type(e).__name__ for e in half.extractors] == ["SDExtractor", "DinoExtractor"]
    for ext in half.extractors:
        assert {p.dtype for p in ext.parameters() if p.is_floating_point()} == {torch.bfloat16}
        assert ext.config()["dtype"] == "bf16"
    for ext in full.extractors:
        assert {p.dtype for p in ext.parameters() if p.is_floating_point()} == {torch.float32}
        assert ext.config()["dtype"] == "fp32"
    a, b = full.features(img), half.features(img)
    for maps32, maps16 in zip(a.maps, b.maps, strict=True):
        assert sorted(maps32) == sorted(maps16)
        for name in maps32:
            x, y = maps32[name], maps16[name]
            assert x.shape == y.shape and y.dtype == torch.float32  # maps come out float32
            rel = float((x - y).norm() / x.norm())
            assert 0 < rel < 0.1, (name, rel)  # bf16 arithmetic: close, but not the same numbers
    # one cache configuration folder per extractor and dtype: 2 extractors x 2 dtypes
    assert len({p.parent.parent for p in tmp_path.rglob("*.safetensors")}) == 4
