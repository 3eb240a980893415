"""Batched extraction: same features as one by one, cached images never decoded again, bad
images named or skipped, out-of-memory batches split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import corr.extraction as extraction
import corr.features
import corr.matcher
from corr.extraction import BadImageError, ImageItem, run_adaptive
from corr.matcher import Matcher

ASSETS = Path(__file__).resolve().parents[1] / "corr" / "samples"
TINY = ["sd-tiny", "dinov2-tiny"]


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = [ASSETS / "jaguar.jpg", ASSETS / "gazelle.jpg"]
    for i, (w, h) in enumerate([(90, 60), (50, 120)]):
        p = tmp_path / f"noise{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _features(m: Matcher, path, mirrored=False):
    return m.features(path, mirrored=mirrored).maps


def test_batched_extraction_equals_one_by_one(images, tmp_path):
    batched = Matcher(TINY, pretrained=False, cache_dir=tmp_path / "a", memory_cache=0)
    report = batched.extract(images, batch_size=3, progress=False)
    assert (report.n_images, report.computed, report.cached) == (4, 4, 0)
    single = Matcher(TINY, pretrained=False, cache_dir=tmp_path / "b", memory_cache=0)
    for p in images:
        for a, b in zip(_features(batched, p), _features(single, p), strict=True):
            assert a.keys() == b.keys()
            for k in a:
                torch.testing.assert_close(a[k], b[k], rtol=2e-3, atol=2e-3)  # fp16 rounding
    # mirrored sources (flip alignment) go through the same path
    batched.extract(images[:2], mirrored=True, batch_size=2, num_workers=1, progress=False)
    flipped = np.ascontiguousarray(np.asarray(Image.open(images[0]).convert("RGB"))[:, ::-1])
    got = _features(batched, images[0], mirrored=True)
    want = single.features(flipped).maps
    for a, b in zip(got, want, strict=True):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=2e-3, atol=2e-3)


def test_cached_images_are_not_decoded_again(images, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    Matcher(TINY, pretrained=False, cache_dir=cache).extract(images, batch_size=2, progress=False)

    def no_decode(*a, **k):
        raise AssertionError("a cached image was decoded")

    monkeypatch.setattr(extraction, "load_image", no_decode)
    monkeypatch.setattr(corr.features, "load_image", no_decode)
    fresh = Matcher(TINY, pretrained=False, cache_dir=cache)  # a new process would see the same
    report = fresh.extract(images, batch_size=2, progress=False)
    assert (report.cached, report.computed) == (4, 0)
    res = fresh.match(images[0], images[1], [[10.0, 10.0]])
    assert np.isfinite(res["keypoints1"]).all()
    # a changed file (new mtime / size) is not trusted: it misses and would be decoded
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images[2])
    assert fresh.cache.lookup_path(images[2]) is None


def test_bad_image_is_named_or_skipped_and_the_batch_survives(images, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    m = Matcher(TINY, pretrained=False, cache_dir=tmp_path / "c")
    with pytest.raises(BadImageError, match="(?s)broken.jpg: cannot read image file.*--skip-bad"):
        m.extract([images[0], bad, images[1]], batch_size=3, progress=False)
    report = m.extract([images[0], bad, images[1]], batch_size=3, skip_bad=True, progress=False)
    assert [b["image"] for b in report.bad] == [str(bad)] and report.computed == 2
    assert m.cache.lookup_path(images[1]) is not None


class _OOMAbove(torch.nn.Module):
    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.calls = limit, []

    def forward(self, pixels, category=None):
        self.calls.append(pixels.shape[0])
        if pixels.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return {"f": pixels.mean(1, keepdim=True) + torch.arange(pixels.shape[0]).view(-1, 1, 1, 1)}


def test_out_of_memory_splits_the_batch_then_says_what_to_do():
    ext = _OOMAbove(limit=2)
    x = torch.zeros(5, 3, 4, 4)
    out = run_adaptive(ext, x, None)["f"]
    assert ext.calls == [5, 2, 3, 1, 2]  # 5 -> 2 + 3 -> 3 splits into 1 + 2
    assert out.shape[0] == 5
    with pytest.raises(MemoryError, match="does not fit in memory.*bf16"):
        run_adaptive(_OOMAbove(limit=0), torch.zeros(1, 3, 4, 4), None)


def test_arrays_are_extracted_too(tmp_path):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 255, (40 + 10 * i, 60, 3), dtype=np.uint8) for i in range(3)]
    m = Matcher(TINY, pretrained=False, memory_cache=8)
    report = m.extract([*arrays, arrays[0]], batch_size=2, progress=False)
    assert (report.n_images, report.computed) == (3, 3)  # the repeated array counts once
    for a in arrays:
        before = m.cache.misses
        m.features(a)
        assert m.cache.misses == before  # served from the cache


def test_item_names_and_argument_checks(tmp_path):
    assert ImageItem("a.jpg", mirrored=True).name == "a.jpg (mirrored)"
    m = Matcher(TINY, pretrained=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        m.extract([np.zeros((8, 8, 3), np.uint8)], batch_size=0, progress=False)
    with pytest.raises(ValueError, match="2 images but 1 categories"):
        m.extract([np.zeros((8, 8, 3), np.uint8)] * 2, categories=["a"], progress=False)


def test_a_partly_cached_file_is_looked_up_once_and_completed(images, tmp_path):
    cache = tmp_path / "cache"
    Matcher(["dinov2-tiny"], pretrained=False, cache_dir=cache).features(images[0])
    both = Matcher(TINY, pretrained=False, cache_dir=cache, memory_cache=0)
    both.features(images[0])  # the path index knows the file; only SD is missing
    assert (both.cache.hits, both.cache.misses) == (1, 1)  # one lookup per extractor, not two
    again = Matcher(TINY, pretrained=False, cache_dir=cache, memory_cache=0)
    again.features(images[0])
    assert (again.cache.hits, again.cache.misses) == (2, 0)
