"""The public result contract: MatchOutput / DenseOutput, tensors in and out, sparse mutual
matches, the Matcher as an nn.Module, devices and corr.clear_cache()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import corr
from corr import devices
from corr.extractors import ModuleExtractor
from corr.outputs import DenseOutput, MatchOutput


def _ext(size: int = 64) -> ModuleExtractor:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 5, 2, 2), nn.ReLU(), nn.Conv2d(16, 24, 5, 2, 2))
    return ModuleExtractor(net, input_size=size, name="toy")


def _image(w: int = 96, h: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.NEAREST))


def test_match_output_is_a_dataclass_that_reads_like_a_dict():
    m = corr.Matcher([_ext()], device="cpu")
    img = _image()
    out = m.match(img, img, [[10.0, 20.0], [np.nan, np.nan]])
    assert isinstance(out, MatchOutput)
    assert out["keypoints1"] is out.keypoints1
    assert list(out) == ["keypoints0", "keypoints1", "confidence"]  # flip unset: not a key
    assert "flip" not in out and dict(out).keys() == {"keypoints0", "keypoints1", "confidence"}
    assert np.isnan(out.keypoints1[1]).all() and np.isnan(out.confidence[1])
    assert -1 <= out.confidence[0] <= 1
    k0, k1, conf = out.to_tuple()
    assert k1 is out.keypoints1
    with pytest.raises(KeyError):
        out["flip"]


def test_tensor_points_in_and_tensors_out():
    m = corr.Matcher([_ext()], device="cpu")
    img = _image()
    pts = np.array([[10.0, 20.0], [70.0, 40.0]])
    ref = m.match(img, img, pts)
    out = m.match(img, img, torch.tensor(pts, dtype=torch.float32), return_tensors="pt")
    assert isinstance(out.keypoints1, torch.Tensor) and out.keypoints1.device == m.device
    assert out.keypoints1.dtype == torch.float32
    np.testing.assert_allclose(out.keypoints1.numpy(), ref.keypoints1, atol=1e-4)
    with pytest.raises(ValueError, match="return_tensors"):
        m.match(img, img, pts, return_tensors="tf")


def test_dense_returns_absolute_coordinates_and_displacement():
    img = _image(w=96, h=48)
    m = corr.Matcher([_ext()], device="cpu", method="nn")
    d = m.dense(img, img)
    assert isinstance(d, DenseOutput)
    np.testing.assert_allclose(d.flow, d.coords1 - d.points0)
    # matched to itself: on the content, every cell finds itself (distinct random blocks)
    v = d.valid
    np.testing.assert_allclose(d.coords1[v], d.points0[v], atol=1e-6)
    assert np.abs(d.flow[v]).max() < 1e-6


def test_dense_upsampled_to_the_source_image():
    src, tgt = _image(w=96, h=48), _image(w=80, h=60, seed=1)
    m = corr.Matcher([_ext()], device="cpu")
    grid = m.dense(src, tgt)
    up = m.dense(src, tgt, upsample=True)
    assert up.coords1.shape == (48, 96, 2) and up.valid.shape == (48, 96)
    assert up.valid.all()  # every pixel of the source is image content
    ys, xs = np.mgrid[0:48, 0:96]
    np.testing.assert_array_equal(up.points0[..., 0], xs)
    np.testing.assert_array_equal(up.points0[..., 1], ys)
    np.testing.assert_allclose(up.flow, up.coords1 - up.points0)
    # at a source pixel that is exactly a cell centre, the upsampled map equals the cell's value
    g = grid.coords1.shape[0]  # 16 cells over the 64 px frame; 96 px wide -> 1.5 px per frame px
    cy, cx = (
        5,
        7,
    )  # a content cell; its centre in the frame: ((7 + .5) * 4, (5 + .5) * 4) = (30, 22)
    px, py = grid.points0[cy, cx]
    assert (px, py) == pytest.approx((30 * 1.5, (22 - 16) * 1.5))  # 32 px tall, 16 px pad
    np.testing.assert_allclose(up.coords1[int(py), int(px)], grid.coords1[cy, cx], atol=1e-4)
    assert up.confidence[int(py), int(px)] == pytest.approx(grid.confidence[cy, cx], abs=1e-5)
    assert g == 16


def test_match_sparse_keeps_mutual_nearest_neighbours_best_first():
    src, tgt = _image(seed=2), _image(seed=3)
    m = corr.Matcher([_ext()], device="cpu")
    both = m.match_sparse(src, tgt, mutual=False)
    mutual = m.match_sparse(src, tgt)
    assert len(mutual.keypoints0) < len(both.keypoints0)
    assert (np.diff(mutual.confidence) <= 0).all()  # sorted, most similar first
    # a mutual match is a match from both sides: matching its target back lands on its source
    back = m.match_sparse(tgt, src)
    pairs = {
        tuple(np.round(a, 6)) + tuple(np.round(b, 6))
        for a, b in zip(back.keypoints0, back.keypoints1, strict=True)
    }
    for a, b in zip(mutual.keypoints0, mutual.keypoints1, strict=True):
        assert tuple(np.round(b, 6)) + tuple(np.round(a, 6)) in pairs
    top = m.match_sparse(src, tgt, max_matches=3)
    np.testing.assert_array_equal(top.keypoints0, mutual.keypoints0[:3])
    with pytest.raises(ValueError, match="max_matches"):
        m.match_sparse(src, tgt, max_matches=0)
    self_matches = m.match_sparse(src, src)
    np.testing.assert_allclose(self_matches.keypoints0, self_matches.keypoints1)


def test_matcher_is_an_nn_module_that_moves_and_casts():
    m = corr.Matcher("tiny", pretrained=False, device="cpu")
    assert isinstance(m, nn.Module)
    assert {p.dtype for p in m.parameters()} == {torch.float32}
    assert m.to("cpu") is m and m.device == torch.device("cpu")
    sd = m.extractors[0]
    before = sd.config()["dtype"]
    m.to(torch.bfloat16)
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    assert sd.dtype == torch.bfloat16 and before == "fp32" and sd.config()["dtype"] == "bf16"
    m.float()
    img = _image()
    out = m(img, img, [[10.0, 20.0]])  # calling the module is match()
    assert isinstance(out, MatchOutput)


def test_an_extractor_you_placed_stays_where_you_put_it(monkeypatch):
    ext = _ext()
    moved = []
    real_to = ext.to
    monkeypatch.setattr(ext, "to", lambda *a, **k: moved.append((a, k)) or real_to(*a, **k))
    m = corr.Matcher([ext])  # device "auto": yours is not moved
    assert moved == [] and m.device == ext.device
    corr.Matcher([ext], device="cpu")  # an explicit device moves it
    assert moved == [(("cpu",), {})] or moved == [((torch.device("cpu"),), {})]


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("cuda")


def test_unavailable_devices_are_refused_by_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda:1'.*no CUDA device"):
        devices.resolve_device("cuda:1")
    with pytest.raises(ValueError, match="'mps'.*not available"):
        devices.resolve_device("mps")
    with pytest.raises(ValueError, match="'gpu0' is not a device name"):
        devices.resolve_device("gpu0")


def test_clear_cache_releases_the_hidden_matcher(monkeypatch):
    import gc
    import weakref

    from corr import api

    built = []

    class Counted(corr.Matcher):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            built.append(weakref.ref(self))

    monkeypatch.setattr(api, "Matcher", Counted)
    img, ext = _image(), _ext()
    corr.match(img, img, [[10.0, 20.0]], extractors=[ext], device="cpu")
    corr.match(img, img, [[5.0, 5.0]], extractors=[ext], device="cpu")
    assert len(built) == 1 and built[0]() is not None  # kept between calls with one set of options
    corr.clear_cache()
    gc.collect()
    assert built[0]() is None  # released
    corr.match(img, img, [[10.0, 20.0]], extractors=[ext], device="cpu")
    assert len(built) == 2
