import pytest
import torch

from corr.fusion import (
    build_descriptors,
    build_descriptors_many,
    co_pca,
    co_pca_many,
    fuse,
    fusion_weights,
    l2_normalize,
    stack_pyramid,
)


def _maps(seed, c=12, h=5, w=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, h, w, generator=g)


def test_co_pca_invariants():
    a, b = _maps(0), _maps(1) + 3.0
    pa, pb = co_pca(a, b, 4)
    assert pa.shape == (4, 5, 5) and pb.shape == (4, 5, 5)
    stack = torch.cat([pa.reshape(4, -1), pb.reshape(4, -1)], dim=1).double()
    # joint projections are centred and decorrelated, with decreasing variance
    assert torch.allclose(stack.mean(1), torch.zeros(4, dtype=torch.double), atol=1e-5)
    cov = stack @ stack.T / (stack.shape[1] - 1)
    off = cov - torch.diag(torch.diag(cov))
    assert off.abs().max() < 1e-4
    var = torch.diag(cov)
    assert (var[:-1] >= var[1:] - 1e-6).all()
    # full rank keeps all pairwise distances (a rotation of the centred data)
    fa, fb = co_pca(a, b, 12)
    x = torch.cat([a.reshape(12, -1), b.reshape(12, -1)], 1).T
    y = torch.cat([fa.reshape(12, -1), fb.reshape(12, -1)], 1).T
    dx = (x[:, None] - x[None]).norm(dim=-1)
    dy = (y[:, None] - y[None]).norm(dim=-1)
    assert torch.allclose(dx, dy, atol=1e-3)


def test_co_pca_is_fitted_jointly_not_per_image():
    a, b = _maps(0), _maps(1)
    pa, _ = co_pca(a, b, 3)
    pa2, _ = co_pca(a, _maps(2), 3)
    assert not torch.allclose(pa, pa2)


def test_co_pca_lowrank_agrees_with_exact_up_to_tolerance():
    # a clear spectrum: two strong directions plus small noise
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(16, 2, generator=g)
    a = (basis @ (torch.randn(2, 64, generator=g) * torch.tensor([[5.0], [2.0]]))).reshape(16, 8, 8)
    b = (basis @ (torch.randn(2, 64, generator=g) * torch.tensor([[5.0], [2.0]]))).reshape(16, 8, 8)
    a, b = a + 0.01 * _maps(1, 16, 8, 8), b + 0.01 * _maps(2, 16, 8, 8)
    ea, _ = co_pca(a, b, 2, method="eigh")
    la, _ = co_pca(a, b, 2, method="lowrank", seed=3)
    la2, _ = co_pca(a, b, 2, method="lowrank", seed=3)
    assert torch.equal(la, la2)  # deterministic by seed
    assert torch.allclose(ea.abs(), la.abs(), atol=1e-2)


def test_stack_pyramid_orders_fine_first_and_upsamples_progressively():
    l2, l5, l8 = torch.ones(2, 2, 2), torch.full((3, 4, 4), 2.0), torch.full((1, 8, 8), 3.0)
    out = stack_pyramid([l2, l5, l8])
    assert out.shape == (6, 8, 8)
    assert (out[0] == 3).all() and (out[1:4] == 2).all() and (out[4:] == 1).all()
    assert stack_pyramid([l8], grid=16).shape == (1, 16, 16)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_fuse_alpha(alpha):
    sd, dino = _maps(0, c=6), _maps(1, c=4)
    f = fuse([sd, dino], fusion_weights(2, alpha, None))
    if alpha == 1.0:
        assert torch.allclose(f, l2_normalize(sd))
    elif alpha == 0.0:
        assert torch.allclose(f, l2_normalize(dino))
    else:
        assert f.shape[0] == 10
        assert torch.allclose(f[:6], 0.5 * l2_normalize(sd)) and torch.allclose(
            f[6:], 0.5 * l2_normalize(dino)
        )
        # each group contributes equally to every location's norm
        assert torch.allclose(f.norm(dim=0), torch.full((5, 5), 0.5**0.5), atol=1e-6)


def test_fusion_weights_validation():
    assert fusion_weights(1, 0.3, None) == [1.0]
    assert fusion_weights(2, 0.25, None) == [0.25, 0.75]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fusion_weights(2, 1.5, None)
    with pytest.raises(ValueError, match="2 entries"):
        fusion_weights(3, None, [1, 2])


def test_build_descriptors_copca_and_concat():
    src = [
        {"sd2": _maps(0, c=20, h=2, w=2), "sd5": _maps(1, c=20, h=4, w=4)},
        {"dino": _maps(2, c=8, h=4, w=4)},
    ]
    tgt = [
        {"sd2": _maps(3, c=20, h=2, w=2), "sd5": _maps(4, c=20, h=4, w=4)},
        {"dino": _maps(5, c=8, h=4, w=4)},
    ]
    ds, dt = build_descriptors(src, tgt, [True, False], [0.5, 0.5], grid=4, pca_dim=3)
    assert ds.shape == dt.shape == (3 + 3 + 8, 4, 4)
    cs, _ = build_descriptors(src, tgt, [True, False], [1.0, 1.0], grid=4, mode="concat")
    assert cs.shape[0] == 20 + 20 + 8
    assert torch.allclose(cs.norm(dim=0), torch.ones(4, 4), atol=1e-5)


# ---------------------------------------------------------------- N images (co-segmentation)


@pytest.mark.parametrize(
    "c, method, dtype",
    [
        (12, "eigh", torch.float32),  # 50 rows >= 12 channels: covariance
        (64, "eigh", torch.float32),  # 50 rows < 64 channels: Gram matrix
        (64, "eigh", torch.float64),
        (12, "lowrank", torch.float32),
    ],
)
def test_co_pca_is_co_pca_many_of_two_bit_for_bit(c, method, dtype):
    a, b = _maps(0, c=c), _maps(1, c=c) + 2.0
    pair = co_pca(a, b, 4, seed=5, method=method, dtype=dtype)
    many = co_pca_many([a, b], 4, seed=5, method=method, dtype=dtype)
    assert len(many) == 2
    for x, y in zip(pair, many, strict=True):
        assert x.dtype == y.dtype == torch.float32 and torch.equal(x, y)


def test_co_pca_many_fits_one_basis_on_all_maps():
    maps = [_maps(0, c=10, h=4, w=4), _maps(1, c=10, h=6, w=5) + 1.0, _maps(2, c=10, h=3, w=3)]
    out = co_pca_many(maps, 3)
    assert [tuple(p.shape) for p in out] == [(3, 4, 4), (3, 6, 5), (3, 3, 3)]
    stack = torch.cat([p.reshape(3, -1) for p in out], dim=1).double()
    assert torch.allclose(stack.mean(1), torch.zeros(3, dtype=torch.double), atol=1e-5)
    cov = stack @ stack.T / (stack.shape[1] - 1)
    assert (cov - torch.diag(torch.diag(cov))).abs().max() < 1e-4
    # the same basis as PCA of all rows at once, to the sign convention
    rows = torch.cat([m.reshape(10, -1).T for m in maps]).double()
    rows = rows - rows.mean(0)
    _, _, v = torch.linalg.svd(rows, full_matrices=False)
    ref = rows @ v[:3].T
    assert torch.allclose(stack.T.abs(), ref.abs(), atol=1e-4)
    # the order of the maps does not matter (beyond float rounding)
    rev = co_pca_many(maps[::-1], 3)[::-1]
    for x, y in zip(out, rev, strict=True):
        assert torch.allclose(x, y, atol=1e-5)
    # one map: plain PCA of that map
    (one,) = co_pca_many(maps[:1], 2)
    assert one.shape == (2, 4, 4)


def test_co_pca_many_validation():
    with pytest.raises(ValueError, match="at least one"):
        co_pca_many([], 2)
    with pytest.raises(ValueError, match="one C"):
        co_pca_many([_maps(0, c=4), _maps(1, c=5), _maps(2, c=4)], 2)
    with pytest.raises(ValueError, match="'eigh' or 'lowrank'"):
        co_pca_many([_maps(0)], 2, method="svd")


def _image_maps(seed):
    return [
        {"sd2": _maps(seed, c=20, h=2, w=2), "sd5": _maps(seed + 1, c=20, h=4, w=4)},
        {"dino": _maps(seed + 2, c=8, h=4, w=4)},
    ]


@pytest.mark.parametrize("mode, pca_dim", [("copca", 3), ("copca", None), ("concat", 3)])
def test_build_descriptors_is_build_descriptors_many_of_two_bit_for_bit(mode, pca_dim):
    src, tgt = _image_maps(0), _image_maps(10)
    kw = dict(pca_dim=pca_dim, mode=mode, pca_method="eigh", seed=2)
    pair = build_descriptors(src, tgt, [True, False], [0.3, 0.7], 6, **kw)
    many = build_descriptors_many([src, tgt], [True, False], [0.3, 0.7], 6, **kw)
    for x, y in zip(pair, many, strict=True):
        assert x.shape == (3 + 3 + 8 if pca_dim and mode == "copca" else 48, 6, 6)
        assert torch.equal(x, y)


def test_build_descriptors_many_shares_the_co_pca_of_all_images():
    imgs = [_image_maps(0), _image_maps(10), _image_maps(20)]
    descs = build_descriptors_many(imgs, [True, False], [0.5, 0.5], grid=4, pca_dim=3)
    assert [tuple(d.shape) for d in descs] == [(14, 4, 4)] * 3
    # the SD group of every image is its map projected on the basis fitted on all three
    sd2 = co_pca_many([im[0]["sd2"] for im in imgs], 3)
    sd5 = co_pca_many([im[0]["sd5"] for im in imgs], 3)
    for d, im, p2, p5 in zip(descs, imgs, sd2, sd5, strict=True):
        assert torch.allclose(d[:6], 0.5 * l2_normalize(stack_pyramid([p2, p5], 4)))
        assert torch.allclose(d[6:], 0.5 * l2_normalize(im[1]["dino"]))
    # fitted jointly: not the pair's descriptors of the same image
    pair, _ = build_descriptors(imgs[0], imgs[1], [True, False], [0.5, 0.5], grid=4, pca_dim=3)
    assert not torch.allclose(descs[0], pair)
    # concat mode: no PCA, unit norm
    raw = build_descriptors_many(imgs, [True, False], [1.0, 1.0], grid=4, mode="concat")
    assert all(torch.allclose(d.norm(dim=0), torch.ones(4, 4), atol=1e-5) for d in raw)


def test_build_descriptors_many_validation():
    a, b = _image_maps(0), _image_maps(10)
    with pytest.raises(ValueError, match="at least one image"):
        build_descriptors_many([], [True, False], [0.5, 0.5], 4)
    with pytest.raises(ValueError, match="fusion mode"):
        build_descriptors_many([a], [True, False], [0.5, 0.5], 4, mode="sum")
    with pytest.raises(ValueError, match="one map dict per extractor"):
        build_descriptors_many([a, b[:1]], [True, False], [0.5, 0.5], 4)
    with pytest.raises(ValueError, match="reduce flags"):
        build_descriptors_many([a, b], [True], [0.5, 0.5], 4)
    b[0] = {"sd2": b[0]["sd2"]}
    with pytest.raises(ValueError, match="image 1's maps of extractor 0 differ"):
        build_descriptors_many([a, b], [True, False], [0.5, 0.5], 4)
    with pytest.raises(ValueError, match="source and target maps differ"):
        build_descriptors(a, b, [True, False], [0.5, 0.5], 4)
