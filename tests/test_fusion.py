import pytest
import torch

from corr.fusion import build_descriptors, co_pca, fuse, fusion_weights, l2_normalize, stack_pyramid


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
